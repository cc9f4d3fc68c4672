"""``raymlops demo`` end to end (on the session's Ray, with a smaller traffic size): the slice
alert, then the dataset alert, the retraining cycle, promotion, and the new version answering."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raymlops.cli import main
from raymlops.loop.demo_data import DRIFT_SLICE

pytestmark = pytest.mark.usefixtures("ray_session")


def test_demo_runs_the_closed_loop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ray import serve

    home = tmp_path / "demo-home"
    assert main(["demo", "--rows", "400", "--json", "--home", str(home)]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    stages = captured.err
    for n in range(1, 7):
        assert f"== {n}/6 " in stages

    phases = summary["phases"]
    assert not [a for a in phases["normal"]["alerts"] if a["kind"] in ("dataset_drift", "slice_drift")]
    slice_alerts = [a for a in phases["slice"]["alerts"] if a["kind"] == "slice_drift"]
    assert slice_alerts and {a["slice"] for a in slice_alerts} == {f"region={DRIFT_SLICE}"}
    # the demo's monitor uses dataset_rule: share (most features must drift): one slice is not global
    assert not [a for a in phases["slice"]["alerts"] if a["kind"] == "dataset_drift"]
    dataset_alerts = [a for a in phases["global"]["alerts"] if a["kind"] == "dataset_drift"]
    assert dataset_alerts and all("rule share" in a["message"] for a in dataset_alerts), dataset_alerts

    cycle = summary["cycle"]
    assert cycle["trigger"]["kind"] == "dataset_drift" and cycle["status"] == "promoted"
    assert summary["champion_before"] == "demo:v1" and summary["champion_after"] == "demo:v2" == cycle["challenger"]
    assert [s["stage"] for s in cycle["stages"]] == ["train", "shadow", "compare", "differential", "promote",
                                                     "rebaseline"]
    assert cycle["decision"]["promote"] and cycle["evidence"]["rows"] >= 200
    assert summary["traffic_during_cycle"]["failed"] == 0
    assert set(summary["after"]["answered_by"]) == {"demo:v2"}  # Serve answers with the new version
    assert not [a for a in summary["after"]["alerts"] if a["kind"] == "dataset_drift"]

    actions = [r["action"] for r in summary["audit"]]
    assert actions[0] == "alert.dataset_drift"
    for action in ("retrain.triggered", "retrain.trained", "deployment.traffic_changed", "retrain.evaluated",
                   "alias.moved", "deployment.promoted", "monitor.rebaselined", "retrain.promoted"):
        assert action in actions
    assert all(r["reason"] == cycle["reason"] for r in summary["audit"][1:])
    assert (home / "metadata.sqlite").exists() or any(home.iterdir())  # --home given: kept

    # cleaned up: the demo's Serve app is gone
    assert "demo" not in serve.status().applications
