"""``raymlops status`` without a cluster: never starts or contacts Ray (ray.init is forbidden in
unit tests), and still shows aliases, alerts and recent audit records."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raymlops import audit
from raymlops.cli import main
from raymlops.store.home import Store


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    store = Store.open(tmp_path)
    with store.metadata.transaction() as conn:
        # the model and alias below, recorded as the registry records them (a version without its record is a
        # removed record; an alias without a recorded move was set outside raymlops)
        audit.append(conn, "model.registered", {"model": "q:v1", "snapshot": "s"}, "pipeline q run 1",
                     clock=lambda: 999.0)
        audit.append(conn, "alias.moved", {"model": "q:v1", "alias": "champion"}, "gate passed", clock=lambda: 999.5)
        audit.append(conn, "snapshot.created", {"snapshot": "ab" * 32}, "pipeline q run 1", clock=lambda: 1000.0)
        audit.append(conn, "alert.raised", {"alert": "drift-1", "deployment": "q"}, "dataset drift in 20 of 30",
                     clock=lambda: 1001.0)
        conn.execute("INSERT INTO models(id, name, version, created_at, status, snapshot_id, artifact_key,"
                     " artifact_sha256, record_json) VALUES ('q:v1', 'q', 1, 0, 'registered', 's', 'k', 'h', '{}')")

        conn.execute("INSERT INTO aliases(name, alias, model_id, updated_at) VALUES ('q', 'champion', 'q:v1', 0)")
    return tmp_path


def test_status_without_a_cluster(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "none contacted (set RAY_ADDRESS or pass --address)" in out
    assert "deployments  unknown (no cluster)" in out
    assert "q@champion -> q:v1" in out
    alerts = out[out.index("\nalerts"):out.index("\naudit")]
    assert "alert.raised" in alerts and "dataset drift in 20 of 30" in alerts
    assert "audit chain valid (4 records" in out and "snapshot.created" in out


def test_status_json(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--home", str(home), "--json", "--recent", "1"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["cluster"] == {"connected": False, "address": None}
    assert report["deployments"] == []
    assert report["aliases"] == [{"name": "q", "alias": "champion", "model": "q:v1", "updated_at": 0}]
    assert [a["ids"]["alert"] for a in report["alerts"]] == ["drift-1"]
    assert report["audit"]["ok"] is True
    assert [r["action"] for r in report["audit"]["recent"]] == ["alert.raised"]


def test_status_shows_a_broken_chain(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import sqlite3

    conn = sqlite3.connect(home / "metadata.db", isolation_level=None)
    conn.execute("UPDATE audit SET record_json = replace(record_json, 'drift', 'nothing') WHERE seq = 4")
    conn.close()
    assert main(["status", "--home", str(home)]) == 0
    assert "CHAIN BROKEN: audit record 4" in capsys.readouterr().out


def test_status_names_a_running_retraining_cycle(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from raymlops.store import leases
    from raymlops.store.home import Store

    md = Store.open(home).metadata
    assert main(["status", "--home", str(home)]) == 0
    assert "retraining   no cycle running" in capsys.readouterr().out
    leases.acquire(md, "retrain:fraud", "ana@host-1:4242:ab12cd", ttl_s=60)
    leases.acquire(md, "something-else", "x", ttl_s=60)
    leases.acquire(md, "retrain:old", "gone@h:1", ttl_s=-1)  # expired: no longer running
    assert main(["status", "--home", str(home)]) == 0
    assert "/fraud: a cycle held by ana@host-1:4242:ab12cd since" in capsys.readouterr().out
    assert main(["status", "--home", str(home), "--json"]) == 0
    assert [(r["route"], r["holder"]) for r in json.loads(capsys.readouterr().out)["retraining"]] == [
        ("fraud", "ana@host-1:4242:ab12cd")]


def test_serve_status_enums_are_shown_by_name() -> None:
    """``raymlops status`` showed ``ApplicationStatus.RUNNING``; it shows ``RUNNING``."""
    from ray.serve.schema import ApplicationStatus, DeploymentStatus

    from raymlops.cli.status_cmd import _plain

    assert _plain(ApplicationStatus.RUNNING) == "RUNNING" and _plain(DeploymentStatus.HEALTHY) == "HEALTHY"
    assert _plain("RUNNING") == "RUNNING" and _plain(None) is None
