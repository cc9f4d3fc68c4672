"""Steps on real Ray: built-in steps called alone from Python (snapshot on a fresh store, then
train → register from that snapshot id), and a user step (``steps:``) in a run, reading the
rows, recorded, audited and reused from the cache on the next run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from sklearn.datasets import load_breast_cancer

from raymlops import Store, parse_config, run_pipeline
from raymlops.audit import records
from raymlops.data.snapshot import list_snapshots
from raymlops.pipeline import (
    EvaluateStep,
    GateStep,
    RegisterStep,
    RunContext,
    SchemaIn,
    SchemaStep,
    SnapshotIn,
    SnapshotStep,
    TrainIn,
    TrainStep,
)
from raymlops.pipeline.history import get_run
from raymlops.pipeline.model_steps import EvaluateIn, GateIn, RegisterIn
from raymlops.registry import list_models

from .conftest import ROOT

pytestmark = pytest.mark.integration


def quick(**extra: object) -> dict:
    cfg = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    cfg["serve"]["enabled"] = False
    cfg["train"]["candidates"] = [{"estimator": "sklearn.linear_model.LogisticRegression", "scale": True,
                                   "params": {"C": 1.0, "max_iter": 2000}}]
    return cfg | extra


def test_snapshot_then_train_from_its_id_step_by_step(ray_session: None, tmp_path: Path) -> None:
    import ray

    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [c.replace(" ", "_") for c in frame.columns]
    cfg = parse_config(quick())
    ctx = RunContext.open(cfg, home=tmp_path / "home", progress=lambda _: None)
    assert list_snapshots(ctx.store) == []

    snap = SnapshotStep().run(ctx, SnapshotIn(ray.data.from_pandas(frame)))
    assert snap.snapshot.rows == 569 and snap.snapshot.new and ctx.step.outputs["snapshot"] == snap.snapshot.id
    assert [s["id"] for s in list_snapshots(Store.open(tmp_path / "home"))] == [snap.snapshot.id]

    first = ctx.run_id
    # a later session: a new context, only the snapshot id carried over
    with RunContext.open(cfg, home=tmp_path / "home", progress=lambda _: None) as ctx:
        _train_and_register(ctx, snap)
    # each context is a run in the record, as the audit records of its steps name it: the one closed
    # by its with block succeeded, the one never closed is abandoned once its process is gone
    store = Store.open(tmp_path / "home")
    for rec in records(store.metadata):
        run = rec.record["ids"].get("run")
        if run is not None:
            assert get_run(store.metadata, run)["run"] == run
    second = get_run(store.metadata, ctx.run_id)
    assert second["status"] == "succeeded" and second["standalone"] and second["config_hash"] == cfg.config_hash()
    assert get_run(store.metadata, first)["status"] == "running"  # this process still runs


def _train_and_register(ctx: RunContext, snap: Any) -> None:
    features = SchemaStep().run(ctx, SchemaIn(schema=snap.snapshot.schema)).features
    assert len(features) == 30 and "target" not in features
    train = TrainStep().run(ctx, TrainIn(snap.snapshot.id, features))
    assert train.model is not None and train.summary.best.metric > 0.9 and ctx.step.outputs["trials"] == 1
    evaluated = EvaluateStep().run(ctx, EvaluateIn(train))
    gate = GateStep().run(ctx, GateIn(train, evaluated))
    model = RegisterStep().run(ctx, RegisterIn(train, evaluated, gate))
    assert gate.passed and model.passed and model.version.id == "breast-cancer:v1"
    assert model.version.record["lineage"]["snapshot_id"] == snap.snapshot.id
    assert [v.id for v in list_models(ctx.store)] == ["breast-cancer:v1"]
    actions = [r.action for r in records(ctx.store.metadata)]
    assert actions == ["snapshot.created", "model.trained", "model.registered", "alias.moved"]


def test_a_user_step_after_validate_runs_records_and_is_reused(ray_session: None, tmp_path: Path) -> None:
    home = str(tmp_path / "home")
    cfg = parse_config(quick(steps=[{"after": "validate", "name": "enough-rows",
                                     "call": "tests.integration.userfns:check_rows", "with": {"min_rows": 500},
                                     "cache": True}]))
    lines: list[str] = []
    first = run_pipeline(cfg, home=home, progress=lines.append).to_dict()
    names = [s["name"] for s in first["steps"]]
    assert names[:5] == ["ingest", "schema", "validate", "enough-rows", "snapshot"] and len(names) == 13
    step = first["steps"][3]
    assert step["status"] == "ran" and step["outputs"] == {
        "rows": 569, "train_rows": step["outputs"]["train_rows"], "holdout_rows": 569 - step["outputs"]["train_rows"],
        "features": 30, "writeable": False}
    assert "[4/13] enough-rows ..." in lines and "[13/13] monitor skipped (serve.enabled is false)" in lines
    # the first version: no earlier champion a live route could serve (tests/unit/test_user_steps.py: the note)
    assert not any(line.startswith("note: breast-cancer@champion") for line in lines), lines
    assert "[11/13] deploy skipped (serve.enabled is false)" in lines
    store = Store.open(home)
    record = get_run(store.metadata, first["run"])
    assert record["steps"][3]["name"] == "enough-rows" and record["steps"][3]["cache_key"]
    assert [r.record["ids"]["step"] for r in records(store.metadata, action="step.ran")] == ["enough-rows"]

    lines.clear()
    again = run_pipeline(cfg, home=home, progress=lines.append).to_dict()
    assert [s["status"] for s in again["steps"]][:10] == ["cached"] * 5 + ["skipped"] + ["cached"] * 4
    assert not [line for line in lines if line.startswith("note:")], lines  # nothing moved: nothing to say
    assert again["steps"][3]["outputs"] == step["outputs"]
    assert len(records(store.metadata, action="step.ran")) == 1

    # other features, same data: schema runs on the cached snapshot's schema, the model is trained again
    fewer = parse_config(quick(steps=cfg.model_dump(mode="json")["steps"]) | {
        "data": quick()["data"] | {"features": ["mean_radius", "mean_texture", "mean_area"]}})
    third = run_pipeline(fewer, home=home, progress=lines.append).to_dict()
    assert [s["status"] for s in third["steps"]][:7] == ["cached", "ran", "cached", "ran", "cached", "skipped", "ran"]
    assert third["steps"][1]["outputs"]["features"] == ["mean_radius", "mean_texture", "mean_area"]
    assert third["steps"][3]["outputs"]["features"] == 3 and third["snapshot"] == first["snapshot"]
    # and says why it trains again: what differs from the newest version's inputs
    assert third["steps"][6]["outputs"]["why"] == "since breast-cancer:v1: the features changed", third["steps"][6]
    assert "train: a new model, since breast-cancer:v1: the features changed" in lines
    assert "why" not in first["steps"][7]["outputs"]  # the first model: nothing before it


def test_sigterm_during_a_run_is_an_interruption(ray_session: None, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """docker stop, a Kubernetes eviction, `timeout`: SIGTERM is recorded as Ctrl-C is (interrupted,
    the step it stopped in) and `raymlops run` exits 143 (it was a failed run, "Fix the cause", exit 1)."""
    import signal

    from raymlops.cli import main

    config = tmp_path / "term.yaml"
    config.write_text(yaml.safe_dump(quick(steps=[{"after": "validate", "name": "stop-me",
                                                    "call": "tests.integration.userfns:sigterm_self"}])))
    before = signal.getsignal(signal.SIGTERM)
    try:
        assert main(["--home", str(tmp_path / "home"), "run", str(config), "--no-progress"]) == 143
    finally:
        signal.signal(signal.SIGTERM, before)
    assert capsys.readouterr().err.strip().splitlines()[-1] == "terminated"
    run = get_run(Store.open(tmp_path / "home").metadata, "latest")
    assert run["status"] == "interrupted" and run["error"]["step"] == "stop-me", run["error"]
    assert [s["status"] for s in run["steps"] if s["name"] == "stop-me"] == ["interrupted"]
