"""`reproduce`: re-training from the recorded snapshot, config and seeds gives the same model."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from raymlops import Store
from raymlops.cli import main
from raymlops.registry.reproduce import reproduce

pytestmark = pytest.mark.integration


def test_reproduce_identical_then_seed_and_data_changes_are_named(
    ray_session: None, trained_quickstart: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    home, result = trained_quickstart  # the quickstart run with serving off
    store = Store.open(home)
    model, snapshot = result["model"], result["snapshot"]

    same = reproduce(store, model)
    assert same.identical, same.differences
    assert same.predictions_equal and same.max_probability_diff == 0.0
    # scikit-learn's pipelines are deterministic: every fitted parameter and array is the same (the
    # pickle's bytes may not be, in a test process that unpickled models before: registry.digest)
    assert same.model_equal
    assert not [d for d in same.differences if d.startswith(("data", "seed", "predictions", "chosen"))]

    other_seed = reproduce(store, model, seed=7)
    assert not other_seed.identical
    assert "seed: recorded 42, now 7" in other_seed.differences
    assert not other_seed.artifact_hash_equal and not other_seed.model_equal

    snap_files = [k for k, _ in store.artifacts.list_files(f"snapshots/{snapshot}/data")]
    path = Path(store.artifacts.path(snap_files[0]))
    path.write_bytes(path.read_bytes()[:-4] + b"XXXX")
    capsys.readouterr()
    assert main(["reproduce", str(model), "--home", str(home)]) == 1
    out = capsys.readouterr().out
    assert "NOT identical" in out and "data: snapshot" in out and "changed" in out
    assert "not re-trained" in out and "predictions equal" not in out  # it said "predictions equal: False"
    # every check is in the audit log, with its result (the web UI's model page lists them)
    from raymlops import audit

    records = [r for r in audit.records(store.metadata, action="model.", id=str(model))
               if r.action.startswith("model.reproduc")]
    assert [r.action for r in records] == ["model.reproduced", "model.reproduce_differs", "model.reproduce_differs"]
    assert records[0].record["how"]["predictions_equal"] is True and records[0].record["reason"] == "identical"
    assert "seed: recorded 42, now 7" in records[1].record["reason"]
    assert "data: snapshot" in records[2].record["reason"]
    assert audit.verify(store.metadata)[0]


def test_a_changed_model_file_is_said_before_any_training_and_audited(
    ray_session: None, trained_quickstart: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    """reproduce re-trained (15 s) and then failed on the registered file's hash, unaudited."""
    from raymlops import audit
    from raymlops.registry import get_model

    home, result = trained_quickstart
    store = Store.open(home)
    version = get_model(store, result["model"])
    # the lineage holds the estimators' code, which reproduce compares
    assert set(version.lineage["estimator_code"]) == {c["estimator"] for c in version.lineage["config"]["train"]
                                                      ["candidates"]}
    path = Path(store.artifacts.path(version.artifact_key))
    path.write_bytes(path.read_bytes() + b"x")
    t0 = time.monotonic()
    assert main(["reproduce", version.id, "--home", str(home)]) == 1
    out = capsys.readouterr().out
    assert "not re-trained" in out and "artifact: the registered model file failed its check" in out, out
    assert time.monotonic() - t0 < 10  # no Tune search ran
    last = audit.records(store.metadata, action="model.reproduce_differs")[-1]
    assert "artifact" in last.record["reason"] and audit.verify(store.metadata)[0]


def test_a_champion_moved_by_hand_moves_the_route_monitor_to_its_training_rows(
    ray_session: None, trained_quickstart: tuple[Path, dict[str, Any]]
) -> None:
    """`models promote` / `rollback` on a live route changed the served model but left the monitor
    on the previous champion's training rows (only the closed loop moved it): v1's traffic was
    judged against v2's rows. What they call now (`follow_live` -> `rebaseline_route`)."""
    import ray

    from raymlops import audit
    from raymlops.data.snapshot import snapshot_info
    from raymlops.data.snapshot_read import read_snapshot
    from raymlops.monitor.lifecycle import start_monitor, stop_monitor
    from raymlops.monitor.names import monitor_name
    from raymlops.pipeline.serve_steps import rebaseline_route, training_reference
    from raymlops.ray_session import NAMESPACE
    from raymlops.registry import get_model, load_model, register_model
    from raymlops.registry.reproduce import recorded_config

    home, result = trained_quickstart
    store = Store.open(home)
    v1 = get_model(store, result["model"])
    # v2: the same data, recorded with 5 monitor bins instead of 10, so its reference differs
    config = dict(v1.lineage["config"])
    config["monitor"] = {**config.get("monitor", {}), "n_bins": 5}
    v2 = register_model(store, v1.name, load_model(store, v1), snapshot_id=v1.snapshot_id,
                        signature=v1.signature, metrics=v1.metrics, gate={"status": "passed", "reasons": []},
                        lineage={**v1.lineage, "config": config}, alias=None)

    def reference_of(version: Any) -> Any:
        _, table = read_snapshot(store, version.snapshot_id)
        return training_reference(table, list(version.features), recorded_config(version.lineage, version.id),
                                  snapshot_info(store, version.snapshot_id).schema)

    import json
    import time

    from tests.unit.test_webhooks import Receiver, _subscribe

    receiver = Receiver()  # subscribed to every event: the move is sent, as retraining's is
    _subscribe(home, receiver.url)
    route = "moved-by-hand"
    start_monitor(route, reference_of(v1), {"seed": 0}, NAMESPACE, detached=False,
                  artifact_root=store.artifacts.root_uri)  # as the deploy step starts it
    try:
        said = rebaseline_route(store, route, v2.id, reason="promoted by hand")
        assert said == f"the monitor of /{route} now compares traffic with the training rows of {v2.id}"
        actor = ray.get_actor(monitor_name(route), namespace=NAMESPACE)
        held = ray.get(actor.__ray_call__.remote(lambda self: self.reference.digest))
        assert held == reference_of(v2).digest != reference_of(v1).digest
        moved = [r for r in audit.records(store.metadata, action="monitor.rebaselined")]
        assert [(r.record["ids"]["model"], r.record["ids"]["deployment"]) for r in moved] == [(v2.id, route)]
        deadline = time.monotonic() + 10
        while not receiver.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        sent = [json.loads(r["body"]) for r in receiver.requests]
        assert [(e["type"], e["data"]["model"], e["data"]["deployment"], e["data"]["reason"]) for e in sent] == [
            ("monitor.rebaselined", v2.id, route, "promoted by hand")]
    finally:
        stop_monitor(route, NAMESPACE)
        receiver.close()
    assert rebaseline_route(store, route, v1.id) == f"/{route} has no running monitor"
