"""The retraining policy (pure): triggers, cooldown, evidence and the promote/retire decision."""

from __future__ import annotations

import math
from typing import Any

import pytest

from raymlops.config import RetrainConfig
from raymlops.loop.policy import Evidence, RetrainPolicy, Trigger, decide, evidence_from


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def alert(kind: str, key: str | None = None, ts: float = 1000.0, severity: str = "warning", **kw: Any) -> dict:
    return {"kind": kind, "key": key or kind, "severity": severity, "message": f"{kind} happened", "ts": ts,
            "value": 0.6, "threshold": 0.5, "window": 3, "slice": kw.get("slice", "all"), "details": {}}


def test_only_configured_kinds_trigger_and_groups_expand() -> None:
    policy = RetrainPolicy(RetrainConfig(triggers=["dataset_drift"]), clock=Clock())
    assert policy.pick([alert("slice_drift", "slice_drift:x1:region=2"), alert("anomaly")]) is None
    t = policy.pick([alert("dataset_drift")])
    assert t is not None and t.kind == "dataset_drift"
    assert RetrainConfig(triggers=["drift"]).trigger_kinds() == {
        "dataset_drift", "feature_drift", "slice_drift", "prediction_drift"}


def test_critical_alert_is_picked_first_and_each_alert_only_once() -> None:
    policy = RetrainPolicy(RetrainConfig(triggers=["drift"], cooldown_s=0), clock=Clock())
    alerts = [alert("feature_drift", "feature_drift:x2:all", ts=999.0),
              alert("dataset_drift", ts=1000.0, severity="critical")]
    assert policy.pick(alerts).kind == "dataset_drift"  # type: ignore[union-attr]
    assert policy.pick(alerts) is None  # the same alerts again: already considered
    assert policy.pick([*alerts, alert("dataset_drift", ts=1005.0, severity="critical")]).ts == 1005.0  # type: ignore[union-attr]


def test_cooldown_refuses_a_second_cycle_until_it_has_passed() -> None:
    clock = Clock()
    policy = RetrainPolicy(RetrainConfig(cooldown_s=300), clock=clock)
    assert policy.pick([alert("dataset_drift", ts=1000.0)]) is not None
    policy.started()
    clock.t = 1200.0
    assert policy.cooling_down()
    assert policy.pick([alert("dataset_drift", ts=1200.0)]) is None
    assert [t.ts for t in policy.suppressed] == [1200.0]
    clock.t = 1301.0
    assert not policy.cooling_down()
    assert policy.pick([alert("performance", ts=1301.0)]).kind == "performance"  # type: ignore[union-attr]


def test_alerts_older_than_the_watcher_are_history() -> None:
    policy = RetrainPolicy(RetrainConfig(), clock=Clock(), since=1000.0)
    assert policy.pick([alert("dataset_drift", ts=999.0)]) is None
    assert policy.pick([alert("dataset_drift", ts=1000.5)]) is not None


def test_trigger_reason_names_the_alert_or_the_person() -> None:
    t = Trigger.from_alert(alert("dataset_drift"))
    assert t.reason == "alert dataset_drift: dataset_drift happened"
    assert Trigger.manual("new labels arrived", clock=Clock()).reason == "manual: new labels arrived"
    assert t.to_dict()["key"] == "dataset_drift"


def evidence(**kw: Any) -> Evidence:
    base: dict[str, Any] = {"challenger": "m:v2", "champion": "m:v1", "rows": 500, "agreement": 0.8, "errors": 0,
                            "metric": "roc_auc", "champion_score": 0.7, "challenger_score": 0.9}
    return Evidence(**(base | kw))


def test_decide_promotes_when_every_rule_passes() -> None:
    d = decide(evidence(), RetrainConfig(shadow_rows=200))
    assert d.promote and not d.failed
    assert {c.rule for c in d.checks} == {"shadow_rows", "max_errors", "min_agreement", "beat_champion"}
    assert d.summary() == "every promotion rule passed"


@pytest.mark.parametrize(("change", "rule"), [
    ({"rows": 150}, "shadow_rows"),
    ({"errors": 1}, "max_errors"),
    ({"agreement": 0.3}, "min_agreement"),
    ({"agreement": None}, "min_agreement"),
    ({"challenger_score": 0.6}, "beat_champion"),
    ({"champion_score": None}, "beat_champion"),
    ({"challenger_score": math.nan}, "beat_champion"),
])
def test_decide_retires_naming_the_rule_that_failed(change: dict[str, Any], rule: str) -> None:
    d = decide(evidence(**change), RetrainConfig(shadow_rows=200))
    assert not d.promote
    assert [c.rule for c in d.failed] == [rule]
    assert d.failed[0].detail in d.summary()


def test_optional_rules_distance_alerts_margin_and_lower_is_better() -> None:
    cfg = RetrainConfig.model_validate({"promote": {"max_prediction_distance": 0.2, "allow_differential_alerts": False,
                                                    "min_improvement": 0.05}})
    good = evidence(prediction_distance=0.1)
    assert decide(good, cfg).promote
    assert [c.rule for c in decide(evidence(prediction_distance=None), cfg).failed] == ["max_prediction_distance"]
    assert [c.rule for c in decide(evidence(prediction_distance=0.25), cfg).failed] == ["max_prediction_distance"]
    alerts = evidence(prediction_distance=0.1, differential_alerts=("differential:agreement",))
    assert [c.rule for c in decide(alerts, cfg).failed] == ["differential_alerts"]
    small = evidence(prediction_distance=0.1, challenger_score=0.72)  # better, but by less than 0.05
    assert [c.rule for c in decide(small, cfg).failed] == ["beat_champion"]
    loss = evidence(metric="log_loss", champion_score=0.5, challenger_score=0.4)
    assert decide(loss, RetrainConfig()).promote
    assert not decide(evidence(metric="log_loss", champion_score=0.4, challenger_score=0.5), RetrainConfig()).promote
    assert decide(evidence(challenger_score=0.1), RetrainConfig.model_validate({"promote": {"beat_champion": False}}))\
        .promote


def test_evidence_sums_the_challengers_shadow_rows_since_the_switch() -> None:
    log = [
        {"ts": 5.0, "challenger": "m:v2", "rows": 10, "agreement": 0.0},  # before this cycle
        {"ts": 11.0, "challenger": "m:v2", "rows": 10, "agreement": 1.0},
        {"ts": 12.0, "challenger": "m:v2", "rows": 30, "agreement": 0.5},
        {"ts": 12.5, "challenger": "m:v3", "rows": 50, "agreement": 0.0},  # another challenger
        {"ts": 13.0, "challenger": "m:v2", "error": "ValueError: boom"},
    ]
    status = {"differential": {"pairs": 7, "last_window": {
        "pairs": 40, "challengers": {"m:v2": {"prediction_distance": 0.12, "rows": 40}}}},
        "alerts": {"recent": [{"kind": "differential", "key": "differential:agreement", "ts": 12.0},
                              {"kind": "differential", "key": "differential:agreement", "ts": 12.2},
                              {"kind": "differential", "key": "old", "ts": 1.0},
                              {"kind": "dataset_drift", "key": "dataset_drift", "ts": 12.0}]}}
    e = evidence_from("m:v2", "m:v1", log, status, since=10.0, metric="roc_auc", champion_score=0.7,
                      challenger_score=0.8, waited_s=3)
    assert e.rows == 40 and e.errors == 1
    assert e.agreement == pytest.approx((10 * 1.0 + 30 * 0.5) / 40)
    assert e.prediction_distance == pytest.approx(0.12)
    assert e.monitor_pairs == 47
    assert e.differential_alerts == ("differential:agreement",)
    assert e.to_dict()["differential_alerts"] == ["differential:agreement"]
    empty = evidence_from("m:v2", "m:v1", [], None)
    assert empty.rows == 0 and empty.agreement is None and empty.prediction_distance is None
