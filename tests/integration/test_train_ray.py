"""Training on the session's Ray: ASHA early stopping, retries, determinism, regression, data-parallel."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression

from raymlops.config import GateConfig, TrainConfig, load_config
from raymlops.data.split import holdout_mask
from raymlops.train import evaluate_model, fit, gate

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SGD = "sklearn.linear_model.SGDClassifier"


def _train(**kw: Any) -> TrainConfig:
    return TrainConfig.model_validate(kw)


def _classification(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(n_samples=n, n_features=20, n_informative=5, n_redundant=5, flip_y=0.02,
                               random_state=seed)
    return X, y


def test_asha_stops_weak_incremental_trials_early(ray_session: None, tmp_path: Path) -> None:
    X, y = _classification(3000)
    config = _train(
        metric="log_loss", epochs=8, max_concurrent_trials=2,
        scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2},
        candidates=[{"estimator": SGD, "scale": True,
                     "params": {"loss": "log_loss", "alpha": [1e-4, 1e-3, 1e-2, 0.3, 1.0, 3.0, 10.0, 30.0]}}],
    )
    model, summary = fit(config, X, y, seed=0, storage_path=str(tmp_path), name="asha")
    assert summary.scheduler == "asha" and summary.mode == "min" and len(summary.trials) == 8
    assert all(t.error is None and t.epochs_planned == 8 for t in summary.trials)
    stopped = [t for t in summary.trials if t.stopped_early]
    assert stopped, [(t.config["params"]["alpha"], t.epochs) for t in summary.trials]
    assert all(t.epochs < 8 for t in stopped)
    assert summary.best.epochs == 8 and not summary.best.stopped_early
    assert summary.best.config["params"]["alpha"] <= 1e-2
    # every trial's config, metric and time are recorded, in search order
    assert [t.config["params"]["alpha"] for t in summary.trials] == [1e-4, 1e-3, 1e-2, 0.3, 1.0, 3.0, 10.0, 30.0]
    assert all(t.metric is not None and t.seconds > 0 and t.node_id for t in summary.trials)
    assert summary.best.metric == min(t.metric for t in summary.trials if t.metric is not None)
    assert hasattr(model, "predict_proba") and model[-1].alpha == summary.best.config["params"]["alpha"]


def test_max_concurrent_trials_one_fits_one_trial_at_a_time_in_one_process(ray_session: None, tmp_path: Path
                                                                           ) -> None:
    """train.max_concurrent_trials: 1 ran two trials at once on two CPUs (Tune ignores TuneConfig's
    limit when it is given its own search algorithm), in two trial processes."""
    X, y = _classification(300)
    log = tmp_path / "fits.log"
    config = _train(metric="accuracy", max_concurrent_trials=1, candidates=[
        {"estimator": "tests.integration.flaky_estimator.LogsFitsClassifier",
         "params": {"log": str(log), "delay_s": 0.5, "C": [0.1, 1.0, 10.0]}}])
    _, summary = fit(config, X, y, seed=0, storage_path=str(tmp_path), name="one")
    assert len(summary.trials) == 3 and all(t.error is None for t in summary.trials)
    lines = [line.split() for line in log.read_text().splitlines()]
    # (the best is fitted again on all training rows, here, after the search)
    fits = sorted((float(start), float(end), pid) for pid, start, end in lines if int(pid) != os.getpid())
    assert len(fits) == 3, lines
    assert all(later[0] >= earlier[1] for earlier, later in zip(fits[:-1], fits[1:], strict=True)), fits  # in turn
    assert len({pid for _, _, pid in fits}) == 1, fits  # the one trial actor was reused


def test_a_trial_that_dies_is_retried_and_the_run_completes(ray_session: None, tmp_path: Path) -> None:
    X, y = _classification(600)
    marker = tmp_path / "failed-once"
    config = _train(
        metric="accuracy", max_failures=1,
        candidates=[
            {"estimator": "tests.integration.flaky_estimator.FailsOnceClassifier", "params": {"marker": str(marker)}},
            {"estimator": "sklearn.naive_bayes.GaussianNB"},
        ],
    )
    _, summary = fit(config, X, y, seed=0, storage_path=str(tmp_path), name="retry")
    flaky, nb = summary.trials
    assert marker.exists()  # the first attempt did fail
    assert flaky.error is None and flaky.metric is not None and flaky.failures == 1
    assert nb.error is None and nb.failures == 0
    # without retries the same failure is recorded and the other trial still wins
    marker.unlink()
    _, summary = fit(config.model_copy(update={"max_failures": 0}), X, y, seed=0, storage_path=str(tmp_path),
                     name="no-retry")
    flaky, nb = summary.trials
    assert flaky.metric is None and "injected failure" in (flaky.error or "")
    assert summary.best.config["estimator"] == "sklearn.naive_bayes.GaussianNB"


def test_same_seed_same_trials_choice_and_predictions(ray_session: None, tmp_path: Path) -> None:
    X, y = _classification(1000, seed=3)
    config = _train(
        num_samples=2, epochs=3, cv_folds=2,
        candidates=[
            {"estimator": SGD, "scale": True, "params": {"loss": "log_loss", "alpha": {"loguniform": [1e-5, 1e-1]}}},
            {"estimator": "sklearn.ensemble.GradientBoostingClassifier",
             "params": {"n_estimators": 20, "learning_rate": {"uniform": [0.05, 0.3]}}},
        ],
    )
    runs = [fit(config, X, y, seed=11, storage_path=str(tmp_path), name=f"det-{i}") for i in range(2)]
    (m1, s1), (m2, s2) = runs
    assert len(s1.trials) == 4
    assert [t.config for t in s1.trials] == [t.config for t in s2.trials]
    assert [t.metric for t in s1.trials] == [t.metric for t in s2.trials]
    assert s1.best.config == s2.best.config
    np.testing.assert_array_equal(m1.predict_proba(X), m2.predict_proba(X))
    assert len({t.config["params"].get("alpha") for t in s1.trials if t.config["candidate"] == 0}) == 2  # sampled


def test_regression_task_end_to_end_with_slices_and_gate(ray_session: None, tmp_path: Path) -> None:
    X, y = make_regression(n_samples=1200, n_features=8, noise=10.0, random_state=4)
    hold = holdout_mask(len(y), 0.25, 4)
    config = _train(
        task="regression", metric="rmse", epochs=4,
        candidates=[
            {"estimator": "sklearn.linear_model.Ridge", "params": {"alpha": [0.1, 100.0]}},
            {"estimator": "sklearn.linear_model.SGDRegressor", "scale": True, "params": {"alpha": 1e-4}},
        ],
    )
    assert config.mode == "min"
    model, summary = fit(config, X[~hold], y[~hold], seed=4, storage_path=str(tmp_path), name="reg")
    assert len(summary.trials) == 3 and {"r2", "mae", "rmse"} <= set(summary.best.metrics)
    assert summary.best.metric == min(t.metric for t in summary.trials if t.metric is not None)
    assert [t.epochs_planned for t in summary.trials] == [1, 1, 4]  # SGD reports per epoch
    sign = np.where(X[hold, 0] > 0, "pos", "neg")
    evaluation = evaluate_model(model, X[hold], y[hold], "regression", {"x0": sign})
    assert evaluation.metrics["r2"] > 0.9 and evaluation.fairness_measure == "mae"
    assert {s.value for s in evaluation.slices} == {"neg", "pos"}
    cfg = GateConfig.model_validate(
        {"slices": ["x0"], "fairness_gap_max": 100.0,
         "rules": ["r2 >= 0.9", {"metric": "rmse", "min_relative_change": 0.0}, {"metric": "mae", "slice_max": 50}]},
        context={"task": "regression"},
    )
    verdict = gate(cfg, evaluation, {"rmse": evaluation.metrics["rmse"] * 1.5})
    assert verdict.passed, verdict.reasons
    assert not gate(cfg, evaluation, {"rmse": evaluation.metrics["rmse"] * 0.5}).passed


def test_quickstart_training_is_four_trials(ray_session: None, tmp_path: Path) -> None:
    from sklearn.datasets import load_breast_cancer

    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    X, y = load_breast_cancer(return_X_y=True)
    model, summary = fit(cfg.train, X, y, seed=cfg.seed, storage_path=str(tmp_path), name="qs")
    assert len(summary.trials) == 4 and all(t.epochs == t.epochs_planned == 1 for t in summary.trials)
    assert summary.best.metric is not None and summary.best.metric >= 0.95
    assert model.predict(X[:5]).shape == (5,)


_CTRL_C_SCRIPT = r"""
import logging, os, signal, sys, tempfile, threading, time
from sklearn.datasets import make_classification
from raymlops.exceptions import Terminated, raise_terminated
from raymlops.ray_session import ensure_ray
from raymlops.train.tune_runner import run_search

signal.signal(signal.SIGTERM, raise_terminated)  # as `raymlops run` does
ensure_ray()
print("SIGTERM handler kept:", signal.getsignal(signal.SIGTERM) is raise_terminated, flush=True)
X, y = make_classification(n_samples=300, n_features=5, random_state=0)
common = dict(metric="roc_auc", mode="max", seed=0, validation_fraction=0.2, max_concurrent=1, cpus_per_trial=1)
before = signal.getsignal(signal.SIGINT)
run_search([{"estimator": "sklearn.linear_model.LogisticRegression", "params": {}}], X, y,
           storage_path=tempfile.mkdtemp(), name="ends", **common)
print("restored after a search:", signal.getsignal(signal.SIGINT) is before, flush=True)
sent = threading.Event()

def send(signum):  # once Tune's handler is in place, mid-fit
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if getattr(signal.getsignal(signal.SIGINT), "__name__", "") == "signal_interrupt_tune_run":
            time.sleep(1.0)
            sent.set()
            os.kill(os.getpid(), signum)
            return
        time.sleep(0.02)

for signum, name in ((signal.SIGINT, "stopped"), (signal.SIGTERM, "terminated")):
    sent.clear()
    threading.Thread(target=send, args=(signum,), daemon=True).start()
    try:
        run_search([{"estimator": "tests.reliability.slow_estimator.SlowClassifier", "params": {"delay_s": 8.0}}],
                   X, y, storage_path=tempfile.mkdtemp(), name=name, **common)
        print("returned", flush=True)
    except KeyboardInterrupt as exc:
        print("terminated:" if isinstance(exc, Terminated) else "interrupted:", exc, flush=True)
    print("sent:", sent.is_set(), "restored after", name, signal.getsignal(signal.SIGINT) is before, flush=True)
"""


def test_ctrl_c_and_sigterm_during_tune_are_interruptions_and_the_handler_is_put_back(tmp_path: Path) -> None:
    """Ray Tune catches SIGINT while it runs: Ctrl-C stopped the trials and the search went on as if
    they had finished without a metric ("every trial failed"). And after a search that ended by
    itself Tune's handler stayed installed, so the next Ctrl-C only logged a warning. In a process
    of its own: a Ctrl-C that reached the test process outside Tune would end the test session."""
    import subprocess
    import sys

    from tests.reliability.faults import ROOT, clean_env

    proc = subprocess.run([sys.executable, "-c", _CTRL_C_SCRIPT], capture_output=True, text=True, env=clean_env(),
                          cwd=ROOT, timeout=240)
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "restored after a search: True" in out, out
    assert "interrupted: Ray Tune was stopped by SIGINT" in out, out
    assert "sent: True restored after stopped True" in out, out
    # SIGTERM (docker stop, `timeout`) once Ray is up: ray.init had replaced raymlops' handler with
    # its own (exit 1, and a native stack dump), so the run was a failure, not an interruption
    assert "SIGTERM handler kept: True" in out, out
    assert "terminated: Ray Tune was stopped by SIGTERM" in out, out
    assert "sent: True restored after terminated True" in out, out
    assert "SIGTERM received" not in proc.stderr, proc.stderr[-3000:]


@pytest.mark.parametrize(("train", "words"), [
    ({"cpus_per_trial": 64}, "train.cpus_per_trial: 64 CPUs each, but the largest node of this Ray has"),
    ({"strategy": "distributed", "framework": "xgboost", "num_workers": 40, "cpus_per_worker": 1, "candidates": []},
     "train.num_workers x train.cpus_per_worker: 40 x 1 CPUs, but this Ray has"),
])
def test_more_cpus_than_the_private_ray_has_is_refused_not_a_wait_forever(
        ray_session: None, quickstart: Any, tmp_path: Path, train: dict[str, Any], words: str) -> None:
    from raymlops import Store, run_pipeline
    from raymlops.exceptions import ConfigError
    from raymlops.pipeline.history import list_runs

    cfg = quickstart.model_copy(update={"serve": quickstart.serve.model_copy(update={"enabled": False})})
    cfg = cfg.model_copy(update={"train": cfg.train.model_validate(cfg.train.model_dump(by_alias=True) | train)})
    with pytest.raises(ConfigError) as info:  # at once: no trial is started to wait
        run_pipeline(cfg, home=str(tmp_path / "home"), progress=lambda _: None)
    assert info.value.exit_code == 2 and words in str(info.value) and "private local Ray" in str(info.value)
    (run,) = list_runs(Store.open(tmp_path / "home").metadata)
    assert run["status"] == "failed" and run["failed_step"] == "train"
