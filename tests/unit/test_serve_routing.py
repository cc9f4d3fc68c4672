"""The traffic table (raymlops.serve.routing): validation, changes, canary split, stickiness."""

from __future__ import annotations

import random
from typing import Any

import pytest

from raymlops.exceptions import ValidationError
from raymlops.registry.spec import ModelSpec
from raymlops.serve.routing import TrafficTable, key_fraction


def spec(model_id: str, features: tuple[str, ...] = ("a", "b")) -> ModelSpec:
    return ModelSpec(model_id=model_id, artifact_root="/x", artifact_key="k", artifact_sha256="0" * 64,
                     signature={"inputs": [{"name": f} for f in features]})


def test_champion_only_serves_everything() -> None:
    t = TrafficTable(spec("m:v1"))
    assert t.summary()["shares"] == {"m:v1": 1.0}
    assert not any(t.canary_for(str(i)) for i in range(100))


def test_canary_share_is_close_to_the_weight_with_and_without_a_key() -> None:
    t = TrafficTable(spec("m:v1")).with_challenger(spec("m:v2"), "canary", 0.1)
    rng = random.Random(0)
    random_share = sum(t.canary_for(None, rng) for _ in range(20_000)) / 20_000
    keyed_share = sum(t.canary_for(f"customer-{i}") for i in range(20_000)) / 20_000
    assert abs(random_share - 0.1) < 0.01 and abs(keyed_share - 0.1) < 0.01
    assert t.summary()["shares"] == {"m:v1": 0.9, "m:v2": 0.1}


def test_a_key_always_sees_the_same_model() -> None:
    t = TrafficTable(spec("m:v1")).with_challenger(spec("m:v2"), "canary", 0.5, key="customer")
    first = {k: t.canary_for(k) for k in map(str, range(200))}
    assert all(t.canary_for(k) == v for k, v in first.items())
    assert 0.35 < sum(first.values()) / 200 < 0.65


def test_key_fraction_is_uniform_stable_and_salted() -> None:
    values = [key_fraction(str(i), "m:v2") for i in range(5000)]
    assert all(0.0 <= v < 1.0 for v in values)
    assert abs(sum(values) / len(values) - 0.5) < 0.02
    assert key_fraction("42", "m:v2") == key_fraction("42", "m:v2")
    assert key_fraction("42", "m:v2") != key_fraction("42", "m:v3")


def test_weights_zero_and_one() -> None:
    base = TrafficTable(spec("m:v1"))
    assert not any(base.with_challenger(spec("m:v2"), "canary", 0.0).canary_for(str(i)) for i in range(50))
    assert all(base.with_challenger(spec("m:v2"), "canary", 1.0).canary_for(str(i)) for i in range(50))


def test_shadow_never_routes_to_the_challenger() -> None:
    t = TrafficTable(spec("m:v1")).with_challenger(spec("m:v2"), "shadow")
    assert t.weight == 0.0 and t.summary()["shares"] == {"m:v1": 1.0}
    assert not any(t.canary_for(str(i)) for i in range(100))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"challenger": spec("m:v2"), "mode": "blue-green"}, "mode must be one of"),
        ({"challenger": spec("m:v2"), "mode": "canary", "weight": 1.5}, "weight must be within"),
        ({"challenger": spec("m:v1"), "mode": "canary", "weight": 0.1}, "already the champion"),
        ({"challenger": spec("m:v2", ("a", "z")), "mode": "canary", "weight": 0.1}, "other inputs"),
        ({"challenger": spec("m:v2"), "mode": "shadow", "weight": 0.2}, "shadow mode takes no weight"),
        ({"mode": "canary", "weight": 0.1}, "need a challenger"),
        ({"challenger": {"model_id": "m:v2"}, "mode": "canary"}, "challenger must be a ModelSpec"),
    ],
)
def test_invalid_tables_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        TrafficTable(spec("m:v1"), **kwargs)


def test_challenger_may_list_the_same_features_in_another_order() -> None:
    t = TrafficTable(spec("m:v1", ("a", "b"))).with_challenger(spec("m:v2", ("b", "a")), "canary", 0.2)
    assert t.challenger is not None and t.challenger.model_id == "m:v2"


def test_promoting_the_challenger_retires_it_and_roundtrips() -> None:
    t = TrafficTable(spec("m:v1"), epoch=7).with_challenger(spec("m:v2"), "canary", 0.3, key="k")
    promoted = t.with_champion(spec("m:v2"))
    assert promoted.champion.model_id == "m:v2" and promoted.challenger is None and promoted.epoch == 7
    other = t.with_champion(spec("m:v3"))
    assert other.champion.model_id == "m:v3" and other.challenger is not None and other.weight == 0.3
    assert TrafficTable.from_dict(t.to_dict()) == t
    assert t.with_challenger(None).challenger is None


def test_the_routing_key_stays_the_routes_after_the_canary_ends_is_promoted_or_rolled_back() -> None:
    """Clients of a sticky canary send the key field in every row; it is no feature, and a table
    without a key refused it (422 unknown_feature): every request after a promotion failed."""
    t = TrafficTable(spec("m:v1"), epoch=7).with_challenger(spec("m:v2"), "canary", 0.3, key="customer_id")
    for after in (t.with_champion(spec("m:v2")), t.with_challenger(None), t.with_champion(spec("m:v3"))):
        assert after.key == "customer_id" and after.summary()["key"] == "customer_id"
        assert TrafficTable.from_dict(after.to_dict()) == after
    assert not t.with_champion(spec("m:v2")).canary_for("c-1")  # no challenger: the key routes nothing
    again = t.with_challenger(None).with_challenger(spec("m:v4"), "canary", 0.5)
    assert again.key == "customer_id"  # a later canary is sticky by the route's key
    assert t.with_challenger(spec("m:v4"), "canary", 0.5, key="account").key == "account"


def test_a_live_sample_rate_survives_every_routing_change_and_roundtrips() -> None:
    t = TrafficTable(champion=spec("m:v1"), epoch=3).with_sample_rate(0.25)
    assert t.summary()["sample_rate"] == 0.25 and "sample_rate" not in TrafficTable(champion=spec("m:v1")).summary()
    canary = t.with_challenger(spec("m:v2"), "canary", 0.1)
    promoted = canary.with_champion(spec("m:v2"))
    retired = canary.with_challenger(None)
    assert [x.sample_rate for x in (canary, promoted, retired)] == [0.25, 0.25, 0.25]
    assert TrafficTable.from_dict(promoted.to_dict()) == promoted
    assert t.with_sample_rate(None).sample_rate is None
    with pytest.raises(ValidationError, match="sample_rate must be within"):
        t.with_sample_rate(1.5)
    old = {k: v for k, v in t.to_dict().items() if k != "sample_rate"}  # a table from before the field existed
    assert TrafficTable.from_dict(old).sample_rate is None


def test_a_stored_table_names_the_missing_or_mistyped_field_of_a_model_spec() -> None:
    t = TrafficTable(spec("m:v1")).with_challenger(spec("m:v2"), "canary", 0.1).to_dict()
    assert t["champion"] == spec("m:v1").to_dict() and t["champion"]["metrics"] == {}  # plain data on the wire
    del t["challenger"]["artifact_sha256"]
    with pytest.raises(ValidationError, match="traffic table: challenger: missing field 'artifact_sha256'"):
        TrafficTable.from_dict(t)
    t["challenger"] = spec("m:v2").to_dict() | {"signature": "a,b"}
    with pytest.raises(ValidationError, match="challenger: field 'signature': expected dict, found str"):
        TrafficTable.from_dict(t)
