"""The quickstart end to end through the Python API, on the session's Ray, with real HTTP."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from raymlops import Store, load_config, run_pipeline, stop_serving
from raymlops.audit import records, verify
from raymlops.data.snapshot import list_snapshots
from raymlops.registry import get_model, list_models
from raymlops.serve.deploy import http_json

from .conftest import ROOT, free_port, quickstart_data

pytestmark = pytest.mark.integration


def test_quickstart_serves_monitors_and_records(ray_session: None, quickstart, tmp_path: Path) -> None:
    home = tmp_path / "home"
    metrics_port = free_port()
    quickstart = quickstart.model_copy(update={
        "monitor": quickstart.monitor.model_copy(update={"metrics_port": metrics_port}),
        "train": load_config(ROOT / "configs" / "quickstart.yaml").train})  # as shipped: two trials at once
    try:
        result = run_pipeline(quickstart, home=str(home), keep_serving=True, progress=lambda _: None)
        out = result.to_dict()
        assert out["gate"] == "passed"
        assert out["model"] == "breast-cancer:v1"
        assert out["endpoint"] == f"http://127.0.0.1:{quickstart.serve.port}/breast-cancer"
        assert [s["name"] for s in out["steps"]] == [
            "ingest", "schema", "validate", "snapshot", "data_drift", "train", "evaluate", "gate", "register",
            "deploy", "smoke", "monitor",
        ]
        # a first run has nothing to compare its data with
        assert {s["name"]: s["status"] for s in out["steps"]}["data_drift"] == "skipped"
        assert all(s["status"] == "ran" for s in out["steps"] if s["name"] != "data_drift")
        assert out["model_metrics"]["roc_auc"] >= 0.95

        endpoint = out["endpoint"]
        status, meta = http_json("GET", f"{endpoint}/metadata")
        assert status == 200 and meta["model_version"] == "breast-cancer:v1"
        assert meta["lineage"]["snapshot_id"] == out["snapshot"]
        status, body = http_json("POST", f"{endpoint}/predict", meta["input_example"])
        assert status == 200
        assert body["model_version"] == "breast-cancer:v1"
        assert body["predictions"][0] in (0, 1) and len(body["probabilities"][0]) == 2
        status, health = http_json("GET", f"{endpoint}/health")
        assert status == 200 and health["status"] == "ok"

        # client mistakes are 4xx naming the field, and the server keeps serving afterwards
        bad = dict(meta["input_example"]["instances"][0])
        bad["mean_radius"] = "big"
        status, err = http_json("POST", f"{endpoint}/predict", {"instances": [bad]})
        assert status == 422 and "mean_radius" in err["message"]
        status, _ = http_json("POST", f"{endpoint}/predict", meta["input_example"])
        assert status == 200

        # the monitor's Prometheus endpoint is in the result, on loopback, and parses
        assert out["metrics"] == f"http://127.0.0.1:{metrics_port}/metrics"
        with urllib.request.urlopen(out["metrics"], timeout=10) as resp:
            families = {f.name: f for f in text_string_to_metric_families(resp.read().decode())}
        assert any(name.startswith("raymlops_") for name in families)
        # per-feature drift series from the first rows on (the smoke rows; no window has closed yet)
        series = [x for x in families["raymlops_drift_long_term_p_value"].samples if x.labels["slice"] == "all"]
        assert len(series) == 30 and all(0.0 <= x.value <= 1.0 for x in series)

        # the monitor saw the smoke rows and reports drift summary with p-values
        assert out["drift"]["rows"] == 117
        assert len(out["drift"]["features"]) == 30
        assert all(0.0 <= f["p_value"] <= 1.0 for f in out["drift"]["features"])

        # shifted traffic through HTTP is found by the monitor actor
        import ray

        from raymlops.monitor.names import monitor_name
        from raymlops.ray_session import NAMESPACE

        rng = np.random.default_rng(0)
        example = meta["input_example"]["instances"][0]
        for _ in range(10):
            rows = [{k: float(v) * (2.0 + rng.random()) for k, v in example.items()} for _ in range(50)]
            status, _ = http_json("POST", f"{endpoint}/predict", {"instances": rows})
            assert status == 200
        monitor = ray.get_actor(monitor_name("breast-cancer"), namespace=NAMESPACE)
        deadline = time.monotonic() + 30  # served rows reach the monitor asynchronously, in batches
        while ray.get(monitor.rows.remote()) < 117 + 500 and time.monotonic() < deadline:
            time.sleep(0.2)
        summary = ray.get(monitor.summary.remote())
        assert summary["rows"] >= 117 + 500
        assert summary["dataset_drift"] is True
        assert len(summary["drifted_features"]) > 15
    finally:
        stop_serving(quickstart, shutdown=False)  # Serve stays up for the session's next tests

    store = Store.open(home)
    version = get_model(store, "breast-cancer@champion")
    assert version.id == "breast-cancer:v1"
    lineage = version.record["lineage"]
    assert lineage["snapshot_id"] == out["snapshot"]
    assert lineage["config_hash"] == quickstart.config_hash()
    assert lineage["seed"] == 42
    assert lineage["packages"]["ray"] and lineage["packages"]["scikit-learn"]
    assert "git_commit" in lineage["code"] or "package_version" in lineage["code"]
    assert len(version.record["tune"]["trials"]) == 4
    ok, message = verify(store.metadata)
    assert ok, message
    actions = [r.action for r in records(store.metadata)]
    assert actions[:5] == ["snapshot.created", "model.trained", "model.registered", "alias.moved",
                           "deployment.created"]
    assert all(a.startswith("alert.") for a in actions[5:])  # the drifted traffic's alerts, if any


def test_second_run_reuses_snapshot_and_rejected_model_is_not_deployed(
    ray_session: None, quickstart, trained_quickstart: tuple[Path, dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    home, first = str(trained_quickstart[0]), trained_quickstart[1]  # the quickstart run with serving off
    assert first["endpoint"] is None
    assert [s["status"] for s in first["steps"]][-3:] == ["skipped"] * 3

    gate = quickstart.gate.model_validate({**quickstart.gate.model_dump(), "rules": ["roc_auc >= 0.99999"]})
    strict = quickstart.model_copy(update={"gate": gate})  # the rule parsed, as a config file's is
    second = run_pipeline(strict, home=home, progress=lambda _: None).to_dict()
    assert second["snapshot"] == first["snapshot"]
    snap_step = next(s for s in second["steps"] if s["name"] == "snapshot")
    assert snap_step["status"] == "cached"
    assert len(list_snapshots(Store.open(home))) == 1
    assert second["gate"] == "rejected" and second["endpoint"] is None
    assert second["model"] == "breast-cancer:v2"
    assert [s["status"] for s in second["steps"]][-3:] == ["skipped"] * 3
    store = Store.open(home)
    rejected = get_model(store, "breast-cancer:v2")
    assert rejected.status == "rejected"
    assert "roc_auc >= 0.99999" in rejected.record["gate"]["reasons"][0]

    # the CLI: a rejection is a run that succeeded (exit 0, with a note), or with --fail-on-reject a
    # failed CI step (exit 1); the run is recorded succeeded either way
    import yaml

    from raymlops.cli import main
    from raymlops.pipeline.history import list_runs

    data = quickstart_data()
    data["gate"]["rules"] = ["roc_auc >= 0.99999"]
    data["serve"]["enabled"] = False
    config = Path(home).parent / "strict.yaml"
    config.write_text(yaml.safe_dump(data))
    assert main(["run", str(config), "--home", home]) == 0
    capsys.readouterr()
    assert main(["run", str(config), "--home", home, "--fail-on-reject"]) == 1
    assert "(the gate rejected the model: --fail-on-reject, exit 1)" in capsys.readouterr().out  # not "succeeded" alone
    assert [r["status"] for r in list_runs(store.metadata)[:2]] == ["succeeded", "succeeded"]
    assert get_model(store, "breast-cancer@champion").id == "breast-cancer:v1"


def test_unchanged_reruns_under_a_champion_relative_rule_reuse_the_model(
    ray_session: None, quickstart, trained_quickstart: tuple[Path, dict[str, Any]]
) -> None:
    """The README's gate rule against the champion: the first run judges against v1 and registers
    v2; unchanged re-runs reuse v2 (each one retrained and registered an identical new version,
    judged against the last one's copy, so its cache key never came round again)."""
    home = str(trained_quickstart[0])
    rules = ["roc_auc >= 0.9", {"metric": "roc_auc", "min_absolute_change": 0.0, "min_relative_change": 0.0}]
    gate = quickstart.gate.model_validate({**quickstart.gate.model_dump(), "rules": rules})
    cfg = quickstart.model_copy(update={"gate": gate, "serve": quickstart.serve.model_copy(update={"enabled": False})})
    first = run_pipeline(cfg, home=home, progress=lambda _: None).to_dict()
    assert first["model"] == "breast-cancer:v2" and first["gate"] == "passed"
    for _ in range(2):
        again = run_pipeline(cfg, home=home, progress=lambda _: None).to_dict()
        steps = {s["name"]: s["status"] for s in again["steps"]}
        assert again["model"] == "breast-cancer:v2" and steps["train"] == steps["register"] == "cached", steps
    store = Store.open(home)
    assert [v.id for v in list_models(store)] == ["breast-cancer:v1", "breast-cancer:v2"]
    assert get_model(store, "breast-cancer@champion").id == "breast-cancer:v2"


def test_the_same_rows_from_another_file_reuse_the_model(
    ray_session: None, quickstart, trained_quickstart: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """Only data.source differed (the rows exported to Parquet, a file moved): the snapshot was reused
    and the model trained again, registered as a new version and made champion."""
    import pyarrow.parquet as pq

    from raymlops.data.snapshot_read import read_snapshot

    home, first = str(trained_quickstart[0]), trained_quickstart[1]
    _, table = read_snapshot(Store.open(home), first["snapshot"])
    pq.write_table(table, tmp_path / "exported.parquet")
    data = quickstart.data.model_copy(update={"source": str(tmp_path / "exported.parquet"), "format": "parquet"})
    cfg = quickstart.model_copy(update={"data": data, "serve": quickstart.serve.model_copy(update={"enabled": False})})
    again = run_pipeline(cfg, home=home, progress=lambda _: None)
    steps = {s.name: s.status for s in again.steps}
    assert again.snapshot == first["snapshot"] and steps["snapshot"] == "cached", steps
    assert again.model == first["model"] and steps["train"] == steps["register"] == "cached", steps
    assert [v.id for v in list_models(Store.open(home))] == [first["model"]]


def test_a_reused_model_the_champion_alias_has_left_is_not_deployed(
    ray_session: None, quickstart, trained_quickstart: tuple[Path, dict[str, Any]]
) -> None:
    """The champion was moved by hand to v2; an unchanged re-run reuses v1 and deployed it, so the
    route served v1 while the registry said v2. It deploys nothing and says which is champion."""
    from raymlops.registry import load_model, register_model
    from raymlops.registry.registry import promote

    home, first = trained_quickstart
    store = Store.open(home)
    v1 = get_model(store, first["model"])
    v2 = register_model(store, v1.name, load_model(store, v1), snapshot_id=v1.snapshot_id, signature=v1.signature,
                        metrics=v1.metrics, gate={"status": "passed", "reasons": []}, lineage=v1.lineage, alias=None)
    promote(store, v2.id, reason="by hand")
    again = run_pipeline(quickstart, home=str(home), progress=lambda _: None)  # serving on, as configured
    steps = {s.name: s for s in again.steps}
    assert again.model == v1.id and steps["register"].status == "cached"
    assert steps["deploy"].status == "skipped" and again.endpoint is None
    assert f"{v1.name}@champion is {v2.id}" in steps["deploy"].detail, steps["deploy"].detail
    assert get_model(store, f"{v1.name}@champion").id == v2.id
