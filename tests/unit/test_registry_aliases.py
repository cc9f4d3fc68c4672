"""Aliases, promote/rollback, artifact verification and lineage (no Ray)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from raymlops import NotFound, Store, ValidationError
from raymlops.audit import records, verify
from raymlops.cli import main
from raymlops.registry import registry as reg
from raymlops.registry.trace import format_lineage, lineage_of


def _register(store: Store, passed: bool = True, reason: str = "test") -> reg.ModelVersion:
    X = np.array([[0.0], [1.0], [2.0], [3.0]])
    model = LogisticRegression().fit(X, [0, 0, 1, 1])
    gate = {"status": "passed" if passed else "rejected", "reasons": [] if passed else ["roc_auc >= 0.99 failed"]}
    return reg.register_model(
        store, "m", model, snapshot_id="ab" * 32, signature={"inputs": [{"name": "x"}]}, metrics={"roc_auc": 0.9},
        gate=gate, lineage={"config_hash": "c" * 64, "code": {"package_version": "0"}, "seed": 1, "run_id": "r"},
        reason=reason,
    )


def test_promote_and_rollback_move_the_alias_and_audit_every_move(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    v1 = _register(store)
    v2 = _register(store)
    assert reg.get_model(store, "m@champion").id == v2.id == "m:v2"
    back = reg.rollback(store, "m", reason="v2 misbehaves")
    assert back.id == v1.id
    assert reg.get_model(store, "m@champion").id == "m:v1"
    reg.promote(store, "m:v2", reason="fixed upstream")
    assert reg.get_model(store, "m@champion").id == "m:v2"
    reg.promote(store, "m:v1", alias="stable", reason="pin")
    assert reg.aliases_of(store, "m:v1") == ["stable"]
    history = reg.alias_history(store, "m")
    assert [(h["alias"], h["from_model"], h["to_model"]) for h in history] == [
        ("champion", None, "m:v1"), ("champion", "m:v1", "m:v2"), ("champion", "m:v2", "m:v1"),
        ("champion", "m:v1", "m:v2"), ("stable", None, "m:v1"),
    ]
    moves = [r for r in records(store.metadata) if r.action in ("alias.moved", "alias.rolled_back")]
    assert [r.record["reason"] for r in moves][-3:] == ["v2 misbehaves", "fixed upstream", "pin"]
    assert moves[-3].record["ids"] == {"model": "m:v1", "alias": "champion", "previous": "m:v2"}
    assert verify(store.metadata)[0]


def test_the_registry_rows_are_bound_to_the_audit_log(tmp_path: Path) -> None:
    """A champion alias, a registered model's metrics or status changed in SQLite, or the record of a
    rollback removed with the head row fixed: `audit verify` said the chain was valid (and `doctor` all
    was well) while `models list` showed the change."""
    import json
    import shutil
    import sqlite3

    from raymlops.audit import HEAD_KEY

    store = Store.open(tmp_path / "home")
    _register(store)
    _register(store)
    reg.rollback(store, "m", reason="v2 misbehaves")  # champion: v1
    assert verify(store.metadata)[0]

    def tampered(*statements: str) -> tuple[bool, str]:
        copy = tmp_path / f"copy{len(list(tmp_path.iterdir()))}"
        shutil.copytree(tmp_path / "home", copy)
        conn = sqlite3.connect(copy / "metadata.db", isolation_level=None)
        for sql in statements:
            conn.execute(sql)
        conn.close()
        return verify(Store.open(copy).metadata)

    ok, message = tampered("UPDATE aliases SET model_id = 'm:v2' WHERE alias = 'champion'")
    assert not ok and message.startswith("alias m@champion: names m:v2, but its last recorded move"), message
    ok, message = tampered("UPDATE models SET record_json = replace(record_json, '0.9', '0.5') WHERE id = 'm:v1'")
    assert not ok and message.startswith("model m:v1: its registry row differs") and "(record)" in message, message
    ok, message = tampered("UPDATE models SET status = 'rejected', artifact_sha256 = 'x' WHERE id = 'm:v2'")
    assert not ok and "(status, artifact)" in message, message
    # the rollback's record removed and the head row pointed at the record before it
    with store.metadata.read() as conn:
        seq, digest = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1 OFFSET 1").fetchone()
    ok, message = tampered("DELETE FROM audit WHERE seq = (SELECT MAX(seq) FROM audit)",
                           f"UPDATE meta SET value = '{json.dumps({'seq': seq, 'hash': digest})}' "
                           f"WHERE key = '{HEAD_KEY}'")
    assert not ok and message.startswith("alias m@champion: names m:v1, but its last recorded move") \
        and "later moves were removed" in message, message
    ok, message = tampered("INSERT INTO aliases(name, alias, model_id, updated_at) VALUES ('m', 'prod', 'm:v2', 0)")
    assert not ok and message == "alias m@prod: names m:v2, but the audit log has no move of it: set outside raymlops"


def test_rejected_version_cannot_become_champion_and_first_version_cannot_roll_back(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    _register(store)
    rejected = _register(store, passed=False)
    assert rejected.status == "rejected"
    with pytest.raises(ValidationError, match="rejected by the gate"):
        reg.promote(store, rejected.id)
    assert reg.get_model(store, "m@champion").id == "m:v1"
    with pytest.raises(ValidationError, match="no earlier version"):
        reg.rollback(store, "m")
    with pytest.raises(NotFound):
        reg.rollback(store, "m", alias="nope")
    with pytest.raises(ValidationError, match="alias"):
        reg.promote(store, "m:v1", alias="bad alias!")


def test_verify_model_and_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store.open(tmp_path)
    v1 = _register(store)
    assert reg.verify_model(store, v1.id) == []
    assert main(["models", "verify", v1.id, "--home", str(tmp_path)]) == 0
    path = Path(store.artifacts.path(v1.artifact_key))
    path.write_bytes(path.read_bytes() + b"tampered")
    assert "changed" in reg.verify_model(store, v1.id)[0]
    capsys.readouterr()
    assert main(["models", "verify", v1.id, "--home", str(tmp_path)]) == 1
    assert "changed" in capsys.readouterr().out
    path.unlink()
    assert "missing" in reg.verify_model(store, v1.id)[0]
    assert main(["models", "verify", "m:v9", "--home", str(tmp_path)]) == 2
    assert main(["models", "rollback", "m", "--home", str(tmp_path)]) == 2
    assert "no earlier version" in capsys.readouterr().err


def test_lineage_names_code_config_data_and_model(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    v1 = _register(store)
    info = lineage_of(store, "m@champion")
    assert info["model"]["id"] == v1.id and info["model"]["aliases"] == ["champion"]
    assert info["config_hash"] == "c" * 64 and info["seed"] == 1
    assert info["data"]["snapshot_id"] == "ab" * 32
    assert "not found" in info["data"]["problem"]  # the snapshot was never created in this store
    assert info["deployments"] == []
    text = format_lineage(info)
    assert "raymlops 0" in text and "deployed never" in text and "m:v1" in text


def test_lineage_names_every_route_a_version_served_and_how(tmp_path: Path) -> None:
    """A version served as a challenger, then promoted, is deployed (lineage listed only the
    deployment.created records: a version that reached a route by promotion read 'deployed never')."""
    from raymlops import audit

    store = Store.open(tmp_path)
    v1, v2 = _register(store), _register(store)

    def table(champion: str, challenger: str | None = None, mode: str | None = None) -> dict[str, object]:
        return {"champion": champion, "challenger": challenger, "mode": mode}

    with store.metadata.transaction() as conn:
        audit.append(conn, "deployment.created", {"deployment": "r", "model": v1.id}, "run",
                     {"endpoint": "http://127.0.0.1:8000/r"})
        audit.append(conn, "deployment.traffic_changed", {"deployment": "r", "model": v2.id}, "shadow",
                     {"before": table(v1.id), "after": table(v1.id, v2.id, "shadow")})
        audit.append(conn, "deployment.sampling_changed", {"deployment": "r"}, "sample",
                     {"before": table(v1.id, v2.id, "shadow"), "after": table(v1.id, v2.id, "shadow")})
        audit.append(conn, "deployment.promoted", {"deployment": "r", "model": v2.id}, "better",
                     {"before": table(v1.id, v2.id, "shadow"), "after": table(v2.id)})
    served = [(d["role"], d["action"], d["endpoint"]) for d in lineage_of(store, v2.id)["deployments"]]
    assert served == [("challenger (shadow)", "deployment.traffic_changed", "http://127.0.0.1:8000/r"),
                      ("champion", "deployment.promoted", "http://127.0.0.1:8000/r")]
    # v1: created as champion; staying champion while a challenger came is no new deployment; the
    # promotion of v2 ended it
    (v1_served,) = lineage_of(store, v1.id)["deployments"]
    assert v1_served["action"] == "deployment.created" and v1_served["ended"]["action"] == "deployment.promoted"
    assert lineage_of(store, v2.id)["deployments"][0]["ended"]["action"] == "deployment.promoted"  # shadow ended
    text = format_lineage(lineage_of(store, v2.id))
    assert "deployed r at http://127.0.0.1:8000/r as champion (deployment.promoted, " in text and "; serving" in text
    with store.metadata.transaction() as conn:  # the run is over and nothing keeps serving
        audit.append(conn, "deployment.deleted", {"deployment": "r", "model": v2.id}, "the run is over", {})
    ended = lineage_of(store, v2.id)["deployments"][-1]["ended"]
    assert ended["action"] == "deployment.deleted"
    assert "(deployment.deleted)" in format_lineage(lineage_of(store, v2.id))


def test_promoting_the_current_target_changes_nothing_and_rollback_still_goes_back(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A promote run twice recorded a move of v2 to v2, and rollback then 'rolled back' to v2 for
    good: v1 was out of reach. Now the second promote moves and records nothing (CLI: says so), and
    rollback passes over such a row where an older home has one."""
    store = Store.open(tmp_path)
    _register(store)
    _register(store)  # the gate moved champion v1 -> v2
    before = len(reg.alias_history(store, "m")), len(records(store.metadata))
    assert reg.promote(store, "m:v2", reason="again").id == "m:v2"
    assert (len(reg.alias_history(store, "m")), len(records(store.metadata))) == before
    assert main(["--home", str(tmp_path), "models", "promote", "m:v2"]) == 0
    assert capsys.readouterr().out == "m@champion is already m:v2: nothing changed\n"
    assert (len(reg.alias_history(store, "m")), len(records(store.metadata))) == before
    # an older raymlops recorded the self-move: rollback goes to v1 all the same
    with store.metadata.transaction() as conn:
        conn.execute("INSERT INTO alias_history(name, alias, from_model, to_model, ts, reason) "
                     "VALUES ('m', 'champion', 'm:v2', 'm:v2', 0, 're-promote')")
    assert reg.rollback(store, "m", reason="back").id == "m:v1"
    assert reg.get_model(store, "m@champion").id == "m:v1"
    assert verify(store.metadata)[0]


@pytest.mark.parametrize("damage", ["missing", "changed"])
def test_a_version_whose_artifact_is_gone_or_changed_cannot_become_champion(
        tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The alias moved (exit 0) to a version every replica would then refuse to load."""
    from raymlops import IntegrityError

    store = Store.open(tmp_path)
    v1 = _register(store)
    v2 = _register(store)
    path = Path(store.artifacts.root_uri) / v1.artifact_key
    if damage == "missing":
        path.unlink()
    else:
        path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(IntegrityError, match=f"{v1.id} cannot become champion"):
        reg.rollback(store, "m")
    with pytest.raises(IntegrityError, match=f"{v1.id} cannot become champion"):
        reg.promote(store, v1.id)
    assert main(["--home", str(tmp_path), "models", "promote", v1.id]) == 1
    assert "cannot become champion" in capsys.readouterr().err
    assert reg.get_model(store, "m@champion").id == v2.id  # nothing moved
    reg.promote(store, v1.id, alias="archive")  # another alias serves nothing: it may point there
