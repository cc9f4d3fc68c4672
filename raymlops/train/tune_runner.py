"""Ray Tune adapter: one trial per candidate configuration, data shared via the object store."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from raymlops.data.split import holdout_mask
from raymlops.exceptions import StepFailed
from raymlops.train.evaluate import classification_metrics
from raymlops.train.search import build_estimator


@dataclass(frozen=True)
class TrialRecord:
    trial_id: str
    config: dict[str, Any]
    metric: float | None
    seconds: float
    error: str | None


@dataclass(frozen=True)
class TuneSummary:
    metric: str
    mode: str
    trials: tuple[TrialRecord, ...]
    best: TrialRecord
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "mode": self.mode,
            "seconds": self.seconds,
            "best": self.best.__dict__,
            "trials": [t.__dict__ for t in self.trials],
        }


def _trial(config: dict[str, Any], X: np.ndarray | None = None, y: np.ndarray | None = None) -> None:
    from ray import tune

    assert X is not None and y is not None
    start = time.perf_counter()
    val = holdout_mask(len(y), config["validation_fraction"], config["seed"] + 1)
    model = build_estimator(config["trial"], config["seed"])
    model.fit(X[~val], y[~val])
    scores = classification_metrics(model, X[val], y[val])
    scores["fit_seconds"] = time.perf_counter() - start
    tune.report({k: v for k, v in scores.items() if k != "rows"})


def run_search(
    trials: list[dict[str, Any]],
    X: np.ndarray,
    y: np.ndarray,
    *,
    metric: str,
    mode: str,
    seed: int,
    validation_fraction: float,
    max_concurrent: int,
    cpus_per_trial: float,
    storage_path: str,
    name: str,
) -> TuneSummary:
    """Run every trial with Ray Tune; the arrays travel once through the object store."""
    from ray import tune

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    logging.getLogger("ray.train").setLevel(logging.CRITICAL)
    trainable = tune.with_resources(tune.with_parameters(_trial, X=X, y=y), {"cpu": cpus_per_trial})
    tuner = tune.Tuner(
        trainable,
        param_space={
            "trial": tune.grid_search(trials),
            "seed": seed,
            "validation_fraction": validation_fraction,
        },
        tune_config=tune.TuneConfig(metric=metric, mode=mode, max_concurrent_trials=max_concurrent),
        run_config=tune.RunConfig(
            name=name,
            storage_path=storage_path,
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=1),
        ),
    )
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        grid = tuner.fit()
    seconds = time.perf_counter() - t0
    records = []
    for i in range(len(grid)):
        result = grid[i]
        m = result.metrics or {}
        records.append(
            TrialRecord(
                trial_id=str(m.get("trial_id", result.path.rsplit("/", 1)[-1])),
                config=result.config["trial"] if result.config else {},
                metric=float(m[metric]) if metric in m else None,
                seconds=float(m.get("time_total_s", 0.0)),
                error=None if result.error is None else f"{type(result.error).__name__}: {result.error}",
            )
        )
    ok = [r for r in records if r.metric is not None]
    if not ok:
        first = next((r.error for r in records if r.error), "no trial reported a metric")
        raise StepFailed("train", f"every trial failed; first error: {first}")
    # ties break on the trial's position in the grid, so the choice is deterministic
    order = {id(r): i for i, r in enumerate(records)}
    sign = -1.0 if mode == "max" else 1.0
    best = min(ok, key=lambda r: (sign * float(r.metric or 0.0), order[id(r)]))
    records.sort(key=lambda r: (r.config.get("candidate", 0), str(r.config.get("params"))))
    return TuneSummary(metric=metric, mode=mode, trials=tuple(records), best=best, seconds=seconds)
