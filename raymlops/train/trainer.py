"""The one call the pipeline makes to train: search (Ray Tune) or data-parallel (Ray actors).

    model, summary = fit(config.train, X_train, y_train, seed=config.seed,
                         storage_path=str(store.home / "tune"), name=f"{config.name}-{run_id}")

``strategy: tune`` expands the candidates' search spaces (:func:`raymlops.train.search.expand`),
runs every trial with Ray Tune, picks the best trial deterministically and refits it on all the
given training rows (an incremental learner for as many epochs as the best trial trained).

``strategy: distributed`` (Ray Train's XGBoost / LightGBM trainers) reads the snapshot itself:
see :func:`raymlops.train.distributed.fit_distributed`.

``strategy: data_parallel`` trains the one candidate data-parallel
(:mod:`raymlops.train.data_parallel`) on the rows outside a seeded validation split of
``validation_fraction``, scoring every epoch on the validation rows. The model is not refitted
on all the rows: at the scale this strategy is for, a second pass would double the cost.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from raymlops.config import TrainConfig
from raymlops.exceptions import ConfigError
from raymlops.train.evaluate import task_metrics
from raymlops.train.incremental import fit_epochs, plan_for
from raymlops.train.objective import validation_folds
from raymlops.train.search import build_estimator, check_trials, expand
from raymlops.train.tune_runner import TrialRecord, TuneSummary, run_search, summarize


def fit(
    config: TrainConfig, X: np.ndarray, y: np.ndarray, *, seed: int, storage_path: str, name: str,
    progress: bool = False,
) -> tuple[Any, TuneSummary]:
    """Train on ``(X, y)`` as ``config`` says; returns the fitted model and the run's summary.
    ``progress``: Ray Tune's own progress table on stderr.

    Needs a connected Ray (``raymlops.ray_session.ensure_ray``)."""
    if config.strategy == "distributed":
        raise ConfigError("train.strategy: 'distributed' trains from a snapshot's Ray Datasets, not from arrays: "
                          "use raymlops.train.distributed.fit_distributed (the pipeline and reproduce do)")
    if config.strategy == "data_parallel":
        return _fit_data_parallel(config, X, y, seed=seed)
    trials = expand(config.candidates, num_samples=config.num_samples, seed=seed)
    check_trials(trials, config.task, config.metric)
    summary = run_search(
        trials, X, y,
        metric=config.metric, mode=config.mode, seed=seed, validation_fraction=config.validation_fraction,
        max_concurrent=config.max_concurrent_trials, cpus_per_trial=config.cpus_per_trial,
        storage_path=storage_path, name=name, task=config.task, cv_folds=config.cv_folds,
        epochs=config.epochs, scheduler=config.scheduler, max_failures=config.max_failures, progress=progress,
    )
    grow = config.scheduler.type == "asha"
    return refit(summary.best, X, y, seed=seed, epochs=config.max_epochs, grow=grow), summary


def refit(best: TrialRecord, X: np.ndarray, y: np.ndarray, *, seed: int, epochs: int, grow: bool = True) -> Any:
    """The best trial's configuration trained on all of ``(X, y)``, as long as the trial trained
    (``epochs`` and ``grow`` as the trials had them)."""
    model = build_estimator(best.config, seed)
    plan = plan_for(model, best.config.get("incremental"), epochs, grow=grow)
    return fit_epochs(model, plan, X, y, best.epochs or plan.epochs)


def _fit_data_parallel(config: TrainConfig, X: np.ndarray, y: np.ndarray, *, seed: int) -> tuple[Any, TuneSummary]:
    from raymlops.train.data_parallel import arrays_to_dataset, train_data_parallel

    trial = expand(config.candidates, seed=seed)[0]
    check_trials([trial], config.task, config.metric)
    ((tr, va),) = validation_folds(y, config.task, seed, config.validation_fraction, None)
    estimator = build_estimator({**trial, "scale": False}, seed)
    ds, features, label = arrays_to_dataset(X[tr], y[tr])
    classes = np.unique(y) if config.task == "classification" else None

    def on_epoch(epoch: int, model: Any) -> dict[str, float]:
        scores = task_metrics(config.task, model, X[va], y[va])
        scores.pop("rows", None)
        return scores

    t0 = time.perf_counter()
    result = train_data_parallel(
        ds, features, label, estimator,
        num_workers=config.num_workers, epochs=config.epochs, batch_size=config.batch_size,
        scale=trial["scale"], classes=classes, cpus_per_worker=config.cpus_per_trial, seed=seed,
        on_epoch=on_epoch,
    )
    last = result.history[-1]
    record = TrialRecord(
        trial_id="data_parallel",
        config=trial,
        metric=float(last[config.metric]) if config.metric in last else None,
        seconds=time.perf_counter() - t0,
        error=None,
        epochs=config.epochs,
        epochs_planned=config.epochs,
        metrics={k: float(v) for k, v in last.items() if k not in ("epoch", "seconds")},
    )
    summary = summarize([record], [trial], metric=config.metric, mode=config.mode, seconds=record.seconds,
                        strategy="data_parallel")
    return result.model, summary
