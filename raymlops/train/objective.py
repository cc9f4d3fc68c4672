"""What one trial does, without Ray: split, train epoch by epoch, score (pure: no Ray).

Validation is a seeded holdout of ``validation_fraction`` of the rows (the hash split of
:mod:`raymlops.data.split`, seed ``seed + 1``) or, with ``cv_folds``, k-fold (stratified for
classification when every class has at least ``cv_folds`` rows; shuffled with ``seed``). With k
folds the trial trains one model per fold in lockstep and each epoch's metrics are the mean over
the folds.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from raymlops.data.split import holdout_mask
from raymlops.exceptions import ValidationError
from raymlops.train.evaluate import positive_index, task_metrics
from raymlops.train.incremental import plan_for, train_epochs
from raymlops.train.search import build_estimator


@dataclass(frozen=True)
class TrialSettings:
    """The settings every trial of a run shares."""

    task: str
    metric: str
    seed: int
    epochs: int
    validation_fraction: float
    cv_folds: int | None = None
    #: grow warm-start learners epoch by epoch (only worth it when a scheduler may stop trials early)
    grow: bool = True
    #: a binary classifier's positive class (train.positive_label; None: the later one)
    positive: Any = None


def validation_folds(
    y: np.ndarray, task: str, seed: int, validation_fraction: float, cv_folds: int | None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train_rows, validation_rows)`` index pairs: one for a holdout, ``cv_folds`` for k-fold."""
    n = len(y)
    if not cv_folds:
        val = holdout_mask(n, validation_fraction, seed + 1)
        if val.all() or not val.any():
            raise ValidationError(f"train.validation_fraction {validation_fraction} leaves no training or validation "
                                  f"rows of the {n} training rows (those data.holdout_fraction leaves): lower "
                                  "data.holdout_fraction, or give more rows")
        return [(np.flatnonzero(~val), np.flatnonzero(val))]
    from sklearn.model_selection import KFold, StratifiedKFold

    if n < cv_folds:
        raise ValidationError(f"train.cv_folds {cv_folds} needs at least as many rows, found {n}")
    splitter: Any = KFold(n_splits=cv_folds, shuffle=True, random_state=seed)
    if task == "classification":
        _, counts = np.unique(y, return_counts=True)
        if counts.min() >= cv_folds:
            splitter = StratifiedKFold(n_splits=cv_folds, shuffle=True, random_state=seed)
    return [(tr, va) for tr, va in splitter.split(np.zeros(n), y)]


#: a numeric target of more distinct values than this, not all whole numbers or more than a fifth of
#: the rows, is refused as classes (sklearn's diabetes target: 214 values in 442 rows)
CONTINUOUS_CLASSES = 50


def continuous_target(classes: np.ndarray, rows: int) -> ValidationError | None:
    """The error for a classifier's target that looks continuous (numbers: more than
    :data:`CONTINUOUS_CLASSES` distinct, not all whole or more than a fifth of the rows), else None."""
    if classes.dtype.kind not in "iuf" or classes.size <= CONTINUOUS_CLASSES or (
            classes.size * 5 <= rows and np.all(np.mod(classes, 1) == 0)):
        return None
    return ValidationError(
        f"data.target: {classes.size} distinct numbers in {rows} training rows: it looks continuous, and a "
        "classifier needs classes with rows to learn each from; set train.task: regression (and a regression "
        "train.metric: r2, mae or rmse), or make the target classes")


def _shown(value: Any) -> str:
    """A class label as the user wrote it (a numpy scalar as its Python value)."""
    return repr(value.item() if hasattr(value, "item") else value)


def check_trial_data(y: np.ndarray, settings: TrialSettings) -> None:
    """Refuse, before any trial starts, training rows no trial could score: a ValidationError
    (exit 2) naming why, instead of every trial failing with the estimator's own words."""
    if settings.task == "classification":
        classes = np.unique(y)
        continuous = continuous_target(classes, y.size)
        if continuous is not None:
            raise continuous
        if classes.size < 2:
            found = _shown(classes[0]) if classes.size else "none"
            raise ValidationError(f"data.target: the training rows hold one class ({found}); a classifier needs "
                                  "at least two")
        if settings.positive is not None:
            if classes.size != 2:
                raise ValidationError(f"train.positive_label: {settings.positive!r} names the positive class of a "
                                      f"binary target; this one has {classes.size} classes")
            positive_index(classes, settings.positive)  # a ValidationError naming the classes
    elif y.dtype.kind not in "iufb":  # a regression on labels
        shown = ", ".join(repr(v) for v in list(dict.fromkeys(y[:50].tolist()))[:3])
        raise ValidationError(f"data.target: the target holds text ({shown}, ...); a regression (train.metric "
                              f"{settings.metric!r}) needs numbers: set train.task: classification with a "
                              "classification metric, or choose another data.target")
    folds = validation_folds(y, settings.task, settings.seed, settings.validation_fraction, settings.cv_folds)
    if settings.task != "classification":
        return
    for k, (train_rows, valid_rows) in enumerate(folds):
        trained = np.unique(y[train_rows])
        if trained.size < 2:  # every trial would fail in that fold, "fix the estimator"
            where = f"fold {k + 1} of train.cv_folds {settings.cv_folds}" if settings.cv_folds else "the split"
            raise ValidationError(
                f"the rows {where} trains on ({train_rows.size} of the {y.size} training rows) hold one class "
                f"({_shown(trained[0])}); a classifier needs at least two: use more rows, fewer train.cv_folds or "
                "another train.validation_fraction")
        if settings.metric == "roc_auc":  # undefined without every class
            lacking = sorted(set(trained.tolist()) - set(np.unique(y[valid_rows]).tolist()), key=str)
            if lacking:
                raise ValidationError(
                    f"the validation rows ({valid_rows.size} of the {y.size} training rows) lack class "
                    f"{lacking[0]!r}, so train.metric 'roc_auc' is undefined on them: use more rows, another "
                    "train.validation_fraction or train.cv_folds, or another train.metric (e.g. accuracy)")


def run_trial(
    trial: dict[str, Any], X: np.ndarray, y: np.ndarray, settings: TrialSettings
) -> Iterator[dict[str, float]]:
    """Train ``trial`` and yield its metrics after each epoch: the task's metrics (mean over folds),
    ``epoch``, ``epochs_planned`` and ``fit_seconds`` (so far)."""
    start = time.perf_counter()
    folds = validation_folds(y, settings.task, settings.seed, settings.validation_fraction, settings.cv_folds)
    models = [build_estimator(trial, settings.seed) for _ in folds]
    plan = plan_for(models[0], trial.get("incremental"), settings.epochs, grow=settings.grow)
    steps = [train_epochs(m, plan, X[tr], y[tr]) for m, (tr, _) in zip(models, folds, strict=True)]
    for epoch in range(1, plan.epochs + 1):
        scores: dict[str, list[float]] = {}
        for model, step, (_, va) in zip(models, steps, folds, strict=True):
            next(step)
            for k, v in task_metrics(settings.task, model, X[va], y[va], settings.positive).items():
                if k != "rows":
                    scores.setdefault(k, []).append(v)
        out = {k: float(np.mean(v)) for k, v in scores.items() if len(v) == len(folds)}
        if settings.metric not in out:
            raise ValueError(
                f"{trial['estimator']} with {trial['params']} produced no {settings.metric!r} on the validation rows"
            )
        out.update(epoch=float(epoch), epochs_planned=float(plan.epochs), fit_seconds=time.perf_counter() - start)
        yield out
