"""The one call the pipeline makes to train from arrays: a Ray Tune search over the candidates.

    model, summary = fit(config.train, X_train, y_train, seed=config.seed,
                         storage_path=str(store.home / "tune"), name=f"{config.name}-{run_id}")

``strategy: tune`` expands the candidates' search spaces (:func:`raymlops.train.search.expand`),
runs every trial with Ray Tune, picks the best trial deterministically and refits it on all the
given training rows (an incremental learner for as many epochs as the best trial trained).

``strategy: distributed`` (Ray Train's XGBoost / LightGBM trainers) reads the snapshot itself:
see :func:`raymlops.train.distributed.fit_distributed`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from raymlops.config import TrainConfig
from raymlops.exceptions import ConfigError
from raymlops.train.incremental import fit_epochs, plan_for
from raymlops.train.search import build_estimator, check_trials, expand
from raymlops.train.tune_runner import TrialRecord, TuneSummary, run_search


def fit(
    config: TrainConfig, X: np.ndarray, y: np.ndarray, *, seed: int, storage_path: str, name: str,
    progress: bool = False, callbacks: list[Any] | None = None, categorical: list[int] | None = None,
) -> tuple[Any, TuneSummary]:
    """Train on ``(X, y)`` as ``config`` says; returns the fitted model and the run's summary.
    ``progress``: Ray Tune's own progress table on stderr. ``callbacks``: Ray Tune callbacks
    (e.g. the MLflow logger of ``tracking:``), for ``strategy: tune``. ``categorical``: the
    columns of ``X`` that are string features' codes (every trial one-hot encodes them; the
    trials' recorded configs say so, so a refit or ``reproduce`` builds the same pipeline).

    Needs a connected Ray (``raymlops.ray_session.ensure_ray``)."""
    if config.strategy == "distributed":
        raise ConfigError("train.strategy: 'distributed' trains from a snapshot's Ray Datasets, not from arrays: "
                          "use raymlops.train.distributed.fit_distributed (the pipeline and reproduce do)")
    trials = expand(config.candidates, num_samples=config.num_samples, seed=seed)
    if categorical:
        trials = [t | {"categorical": list(categorical)} for t in trials]
    if config.task == "classification" and not _indices(y):  # XGBoost's classifier takes labels 0..k-1 only
        trials = [t | {"encode_labels": True} if str(t["estimator"]).startswith("xgboost.") else t for t in trials]
    check_trials(trials, config.task, config.metric)
    summary = run_search(
        trials, X, y,
        metric=config.metric, mode=config.mode, seed=seed, validation_fraction=config.validation_fraction,
        max_concurrent=config.max_concurrent_trials, cpus_per_trial=config.cpus_per_trial,
        storage_path=storage_path, name=name, task=config.task, cv_folds=config.cv_folds,
        epochs=config.epochs, scheduler=config.scheduler, max_failures=config.max_failures, progress=progress,
        callbacks=callbacks, positive=config.positive_label,
    )
    grow = config.scheduler.type == "asha"
    return refit(summary.best, X, y, seed=seed, epochs=config.max_epochs, grow=grow), summary


def _indices(y: np.ndarray) -> bool:
    """Whether the labels are exactly the integers ``0..k-1``."""
    values = np.unique(np.asarray(y))
    if values.dtype.kind not in "iuf":
        return False
    return bool(np.array_equal(values, np.arange(values.size)))


def refit(best: TrialRecord, X: np.ndarray, y: np.ndarray, *, seed: int, epochs: int, grow: bool = True) -> Any:
    """The best trial's configuration trained on all of ``(X, y)``, as long as the trial trained
    (``epochs`` and ``grow`` as the trials had them)."""
    model = build_estimator(best.config, seed)
    plan = plan_for(model, best.config.get("incremental"), epochs, grow=grow)
    return fit_epochs(model, plan, X, y, best.epochs or plan.epochs)
