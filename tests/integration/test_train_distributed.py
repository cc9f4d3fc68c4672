"""strategy: distributed on the session's Ray: Ray Train's XGBoost / LightGBM trainers over the
snapshot, through evaluate, gate and registry; the serving loader loads the native model;
``reproduce`` gives identical predictions; Tune with ASHA over boosting rounds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from raymlops import Store, run_pipeline
from raymlops.config import PipelineConfig
from raymlops.registry import get_model, load_model
from raymlops.registry.reproduce import reproduce

pytestmark = pytest.mark.integration


def _distributed(quickstart: PipelineConfig, **train: Any) -> PipelineConfig:
    cfg = quickstart.model_copy(update={"serve": quickstart.serve.model_copy(update={"enabled": False})})
    return cfg.model_copy(update={"train": cfg.train.model_validate(
        {"strategy": "distributed", "num_workers": 2, "num_boost_round": 20, "checkpoint_every": 5, **train})})


def _live_placement_groups() -> set[str]:
    from ray.util import placement_group_table

    return {pg for pg, info in placement_group_table().items() if info["state"] != "REMOVED"}


def _assert_released(before: set[str]) -> None:
    """Every worker group the run reserved is released once it returns (on a shared cluster a
    leaked placement group keeps its CPUs until the driver exits)."""
    import time

    deadline = time.monotonic() + 10
    while (left := _live_placement_groups() - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"placement groups still held after the run: {left}"


def _serving_load(store: Store, version: Any) -> Any:
    """The model as a Serve replica loads it (``raymlops.registry.spec.ModelSpec.load``)."""
    from raymlops.registry.spec import ModelSpec

    return ModelSpec.of(version, store.artifacts.root_uri).load()


def test_xgboost_on_two_workers_registers_a_model_that_serves_and_reproduces(
    ray_session: None, quickstart: PipelineConfig, tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    cfg = _distributed(quickstart, framework="xgboost", early_stopping_rounds=5,
                       params={"max_depth": 3, "eta": 0.3})
    before = _live_placement_groups()
    result = run_pipeline(cfg, home=str(home), progress=lambda _: None)
    _assert_released(before)
    assert result.status == "succeeded" and result.gate == "passed", result.gate_reasons
    store = Store.open(home)
    version = get_model(store, result.model or "")
    assert version.status == "registered" and result.metrics["roc_auc"] >= 0.95

    # lineage: the engine and its version, the workers, the rounds used
    training = version.record["lineage"]["training"]
    assert training["framework"] == "xgboost" and training["framework_version"]
    assert training["num_workers"] == 2 and training["trainer"].endswith("XGBoostTrainer")
    assert 1 <= training["rounds_used"] <= training["rounds"] <= 20
    assert version.record["lineage"]["packages"]["xgboost"] == training["framework_version"]
    best = version.record["tune"]["best"]
    assert best["metrics"]["rows"] > 0 and best["node_id"]

    # the native UBJSON file is stored next to the artifact, with its sha256, and loads in XGBoost alone
    native = version.record["native"]
    data = store.artifacts.read_bytes(native["key"])
    import hashlib

    import xgboost

    assert native["key"].endswith("model.ubj") and hashlib.sha256(data).hexdigest() == native["sha256"]
    booster = xgboost.Booster()
    booster.load_model(bytearray(data))
    assert booster.num_boosted_rounds() == training["rounds"]

    # the registry and the serving loader load it; it predicts the holdout as evaluated
    from raymlops.train.prepare import split_snapshot

    features = [f["name"] for f in version.signature["inputs"]]
    _, _, Xho, yho = split_snapshot(store, version.snapshot_id, features, cfg)
    model, served = load_model(store, version), _serving_load(store, version)
    assert np.array_equal(model.predict_proba(Xho), served.predict_proba(Xho))
    assert float((served.predict(Xho) == yho).mean()) == pytest.approx(result.metrics["accuracy"])
    assert version.signature["classes"] == [0, 1]

    # the recorded validation roc_auc is the model's AUC on all the validation rows (XGBoost alone
    # averages each worker's shard: every worker gets all of them for roc_auc)
    from sklearn.metrics import roc_auc_score

    from raymlops.data.schema import column_array, table_columns
    from raymlops.data.snapshot_read import read_snapshot
    from raymlops.data.split import holdout_mask
    from raymlops.train.boost_data import VALIDATION_SALT

    _, table = read_snapshot(store, version.snapshot_id)
    X, y = table_columns(table, features), column_array(table.column(cfg.data.target))
    valid = holdout_mask(len(y), cfg.train.validation_fraction, cfg.seed ^ VALIDATION_SALT) & ~holdout_mask(
        len(y), cfg.data.holdout_fraction, cfg.seed)
    assert best["metric"] == pytest.approx(roc_auc_score(y[valid], model.predict_proba(X[valid])[:, 1]), abs=1e-6)

    # same snapshot, seed and workers: the same trees
    again = reproduce(store, version.id)
    assert again.predictions_equal and again.max_probability_diff == 0.0, again.differences
    assert again.identical


def test_lightgbm_trains_and_registers(ray_session: None, quickstart: PipelineConfig, tmp_path: Path) -> None:
    home = tmp_path / "home"
    cfg = _distributed(quickstart, framework="lightgbm", metric="log_loss", num_boost_round=60,
                       early_stopping_rounds=3, params={"num_leaves": 7, "learning_rate": 0.5})
    result = run_pipeline(cfg, home=str(home), progress=lambda _: None)
    assert result.status == "succeeded" and result.gate == "passed", result.gate_reasons
    store = Store.open(home)
    version = get_model(store, result.model or "")
    assert version.record["native"]["key"].endswith("model.txt")
    training = version.record["lineage"]["training"]
    assert training["framework"] == "lightgbm" and training["num_workers"] == 2
    # early stopping: the rounds trained are the best one's and the patience after it (LightGBM
    # leaves its booster at the best round; that is the model kept)
    assert training["rounds"] == training["rounds_used"] + 3 < 60, training
    model = _serving_load(store, version)
    assert model.predict_proba(np.zeros((3, len(version.signature["inputs"])))).shape == (3, 2)
    # on this one-node private Ray no Ray Train run started a preemption watcher (a process that
    # watches for node drains nothing here makes); the controller shows the list holds Train's actors
    import ray._private.state

    classes = {actor.get("ActorClassName") for actor in ray._private.state.actors().values()}
    assert "TrainController" in classes and "PreemptionWatcher" not in classes, classes


def test_tune_with_asha_over_boosting_rounds(ray_session: None, quickstart: PipelineConfig, tmp_path: Path) -> None:
    home = tmp_path / "home"
    # one worker of one CPU per trial, so the two trials run at once on two CPUs (the worker group of
    # two is the subject of the XGBoost test above; each worker is a process that imports XGBoost)
    cfg = _distributed(quickstart, framework="xgboost", num_workers=1, num_boost_round=12, num_samples=2,
                       params={"max_depth": 2, "eta": {"loguniform": [0.005, 0.5]}},
                       scheduler={"type": "asha", "grace_period": 3, "reduction_factor": 2})
    before = _live_placement_groups()
    result = run_pipeline(cfg, home=str(home), progress=lambda _: None)
    assert result.status == "succeeded", result.error
    _assert_released(before)  # also for the trials ASHA stopped and the one that ran to the end
    summary = get_model(Store.open(home), result.model or "").record["tune"]
    assert summary["strategy"] == "distributed" and summary["scheduler"] == "asha" and len(summary["trials"]) == 2
    assert all(t["error"] is None and t["epochs_planned"] == 12 for t in summary["trials"]), summary["trials"]
    best = summary["best"]
    assert best["metric"] == max(t["metric"] for t in summary["trials"])
    # one trial ran every round; the best is the best last report, as Ray Tune's get_best_result
    # (scope "last") takes it: a trial ASHA stopped at round 3 may have reported more than the
    # other's round 12 (a fresh clone's run did), and then it is the best, with its rounds
    assert any(t["epochs"] == 12 and not t["stopped_early"] for t in summary["trials"]), summary["trials"]
    assert best["stopped_early"] == (best["epochs"] < 12)


def test_a_regression_on_text_labels_is_refused_before_any_worker(ray_session: None, quickstart: PipelineConfig,
                                                                  tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    from raymlops.exceptions import ValidationError

    rows = 200
    data = tmp_path / "labels.csv"
    pcsv.write_csv(pa.table({"x": np.arange(rows, dtype=float), "label": ["yes", "no"] * (rows // 2)}), data)
    cfg = _distributed(quickstart, framework="xgboost", metric="rmse")
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"source": str(data), "target": "label"})})
    with pytest.raises(ValidationError, match=r"data.target 'label': the target holds text or booleans \('no', 'yes'"):
        run_pipeline(cfg, home=str(tmp_path / "home"), progress=lambda _: None)


def test_roc_auc_on_validation_rows_of_one_class_is_refused_before_any_worker(
        ray_session: None, quickstart: PipelineConfig, tmp_path: Path) -> None:
    """XGBoost trained to the end and then failed ("no trial reported a metric"); LightGBM recorded
    roc_auc 1.0 and registered the model."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from raymlops.data.split import holdout_mask
    from raymlops.exceptions import ValidationError
    from raymlops.train.boost_data import VALIDATION_SALT

    n, seed = 200, quickstart.seed
    holdout = holdout_mask(n, quickstart.data.holdout_fraction, seed)
    valid = holdout_mask(n, 0.25, seed ^ VALIDATION_SALT) & ~holdout
    y = np.zeros(n, dtype=np.int64)
    y[np.flatnonzero(~holdout & ~valid)[:8]] = 1  # positives only among the training rows and the holdout
    y[np.flatnonzero(holdout)[:3]] = 1
    x = np.random.default_rng(0).normal(size=n) + 3 * y
    pq.write_table(pa.table({"x": x, "target": y}), tmp_path / "one.parquet")
    cfg = _distributed(quickstart, framework="lightgbm", validation_fraction=0.25)
    cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"source": str(tmp_path / "one.parquet")})})
    with pytest.raises(ValidationError, match=r"the validation rows \(\d+ of the \d+ training rows\) lack class 1, "
                                              r"so train.metric 'roc_auc' is undefined"):
        run_pipeline(cfg, home=str(tmp_path / "home"), progress=lambda _: None)


def test_a_positive_label_that_is_no_class_is_refused_before_any_worker(
        ray_session: None, quickstart: PipelineConfig, tmp_path: Path) -> None:
    """Not at evaluate, after the whole distributed training."""
    from raymlops.exceptions import ValidationError

    cfg = _distributed(quickstart, framework="xgboost", positive_label=7)
    before = _live_placement_groups()
    with pytest.raises(ValidationError, match=r"train.positive_label: 7 is not a class of the target \(its classes: "
                                              r"0, 1\)"):
        run_pipeline(cfg, home=str(tmp_path / "home"), progress=lambda _: None)
    assert _live_placement_groups() == before  # no worker group was reserved


def test_sigterm_during_ray_train_ends_the_run_exit_143(tmp_path: Path) -> None:
    """SIGTERM mid-training to the `raymlops run` process (`docker stop`, `kill`, `timeout
    --foreground`): raymlops' exception left Ray Train's controller and workers training, and the
    exit hung 60 s on Ray's shutdown, then Ray ended the process with exit 1 and no `terminated`.
    Now Ray Train's run is aborted as on Ctrl-C: exit 143, `terminated`, the train step recorded
    interrupted, nothing of its Ray left. (A SIGTERM to the whole process group also reaches the
    private Ray's own processes; that case is handled, but Ray's core worker may end the process
    first when its raylet goes: not asserted here, see the README.)"""
    import signal
    import subprocess
    import sys
    import time

    import yaml

    from raymlops.pipeline.history import get_run
    from tests.reliability.faults import ROOT, clean_env

    from .conftest import quickstart_data

    cfg = quickstart_data()
    cfg["serve"]["enabled"] = False
    cfg["train"] = {"strategy": "distributed", "framework": "xgboost", "num_workers": 2, "cpus_per_worker": 1,
                    "num_boost_round": 100_000, "checkpoint_every": 100, "early_stopping_rounds": 100_000,
                    "params": {"max_depth": 6, "eta": 0.001}}
    config = tmp_path / "long.yaml"
    config.write_text(yaml.safe_dump(cfg))
    home = tmp_path / "home"
    proc = subprocess.Popen([sys.executable, "-m", "raymlops.cli", "--home", str(home), "run", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(), cwd=ROOT,
                            start_new_session=True)  # its own process group: its Ray's processes are in it
    assert proc.stderr is not None
    seen: list[str] = []
    for line in proc.stderr:  # Ray Train's workers are up a few seconds after the step starts
        seen.append(line)
        if "[6/12] train ..." in line:
            break
    time.sleep(8)
    if proc.poll() is not None:  # it ended by itself: say how
        raise AssertionError("".join(seen) + proc.communicate()[1][-3000:])
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=120)[1]
    took = time.monotonic() - sent
    err = "".join(seen) + rest
    assert proc.returncode == 143 and err.strip().splitlines()[-1] == "terminated", err[-3000:]
    assert took < 30, (took, err[-2000:])  # (60 s and more before)
    assert "Failed to connect to GCS" not in err and "train interrupted after" in err, err[-3000:]
    run = get_run(Store.open(home).metadata, "latest")
    assert run["status"] == "interrupted"
    assert [s["status"] for s in run["steps"] if s["name"] == "train"] == ["interrupted"]
    deadline = time.monotonic() + 15  # the private Ray's processes are in the run's process group
    while (left := _group_members(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, left


def _group_members(pgid: int) -> list[str]:
    """Command lines of the live (not zombie) processes of process group ``pgid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                fields = stat[stat.rfind(")") + 2:].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    out.append((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200])
            except (OSError, ValueError, IndexError):
                continue
    return out
