"""Holdout evaluation: overall metrics, metrics per slice and the fairness gap (pure: no Ray).

Classification: accuracy, precision, recall, f1 (binary for two classes, the positive class being
``classes_[1]``; macro otherwise), and with ``predict_proba`` roc_auc (one-vs-rest for more
classes) and log_loss. Regression: r2, mae, rmse.

Slices: each slice column's holdout values split the holdout rows; a column with more than
``max_slices`` distinct values is cut into ``max_slices`` quantile bins (numbers) or keeps its
``max_slices - 1`` most frequent values plus ``other`` (anything else), so the number of slices is
bounded. The fairness gap of a column is the largest difference between its slices (those with at
least ``min_slice_rows`` rows) in the predicted positive rate (classification; with more than two
classes, the largest such difference over the classes) or in the mean absolute error
(regression); the evaluation's gap is the largest over the columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn import metrics

from raymlops.exceptions import ValidationError
from raymlops.stats.cbpe import fit_isotonic

MISSING = "(missing)"
OTHER = "other"


def _classes(model: Any, y: np.ndarray) -> np.ndarray:
    classes = getattr(model, "classes_", None)
    return np.asarray(classes) if classes is not None else np.unique(y)


def positive_index(classes: np.ndarray, positive: Any = None) -> int:
    """The index in ``classes`` (two of them) of the positive class: ``positive``
    (``train.positive_label``) when given, else 1, the later class in sorted order (1 of 0/1,
    True of False, 'yes' of 'no', but 'ok' of 'fraud': set it for such labels)."""
    if positive is None:
        return 1
    for i, c in enumerate(np.asarray(classes).tolist()):
        if c == positive or str(c) == str(positive):
            return i
    raise ValidationError(f"train.positive_label: {positive!r} is not a class of the target (its classes: "
                          f"{', '.join(map(repr, np.asarray(classes).tolist()[:10]))})")


def classification_metrics(model: Any, X: np.ndarray, y: np.ndarray, positive: Any = None) -> dict[str, float]:
    """accuracy, precision, recall, f1, roc_auc (binary or one-vs-rest) and log_loss. Of two
    classes, precision, recall and f1 are the positive class's (:func:`positive_index`).

    A label the model does not know (a class only in these rows: new data, a rare class that fell
    in the validation or holdout rows) is a wrong answer: precision, recall and f1 of two classes
    are the positive class's, else their macro average over the classes in ``y`` or in the
    predictions (a class in neither, e.g. absent from a small holdout, is not counted as a 0);
    log_loss gives such a row the model's smallest probability. roc_auc is left out when ``y``
    lacks one of the model's classes or holds another (it is undefined), and roc_auc and log_loss
    when the model has no ``predict_proba``."""
    pred = model.predict(X)
    y = np.asarray(y)
    out = {"accuracy": float(metrics.accuracy_score(y, pred)), "rows": float(len(y))}
    classes = _classes(model, y)
    k = positive_index(classes, positive) if len(classes) == 2 else 1
    if len(classes) == 2:  # the positive class against anything else
        truth, said = y == classes[k], np.asarray(pred) == classes[k]
    else:
        truth, said = y, pred
    kw: dict[str, Any] = {"average": "binary"} if len(classes) == 2 else {"average": "macro"}
    out["precision"] = float(metrics.precision_score(truth, said, zero_division=0, **kw))
    out["recall"] = float(metrics.recall_score(truth, said, zero_division=0, **kw))
    out["f1"] = float(metrics.f1_score(truth, said, zero_division=0, **kw))
    if hasattr(model, "predict_proba"):
        proba = np.asarray(model.predict_proba(X), dtype=np.float64)
        present = np.unique(y)
        if len(present) == len(classes) and len(np.intersect1d(present, classes)) == len(classes):
            if len(classes) == 2:
                out["roc_auc"] = float(metrics.roc_auc_score(truth, proba[:, k]))
            else:
                out["roc_auc"] = float(metrics.roc_auc_score(y, proba, multi_class="ovr", labels=classes))
        unknown = np.setdiff1d(present, classes)
        labels = classes
        if unknown.size:  # those labels get probability 0 (clipped by log_loss, as any 0 is); in sorted order
            labels = np.concatenate([classes, unknown])
            order = np.argsort(labels, kind="stable")
            labels, proba = labels[order], np.hstack([proba, np.zeros((proba.shape[0], unknown.size))])[:, order]
        out["log_loss"] = float(metrics.log_loss(y, proba, labels=labels))
    return out


def calibration_of(model: Any, X: np.ndarray, y: np.ndarray) -> dict[str, Any] | None:
    """The holdout calibration of a binary classifier's positive-class probability (isotonic,
    :func:`raymlops.stats.cbpe.fit_isotonic`) as plain numbers for the model's lineage, with the
    holdout's realised accuracy and roc_auc as the monitor's reference for its estimates (CBPE);
    None for a model without ``predict_proba``, with more than two classes or a one-class holdout."""
    classes = _classes(model, y)
    if not hasattr(model, "predict_proba") or len(classes) != 2:
        return None
    y = np.asarray(y)
    truth = (y == classes[1]).astype(np.float64)
    if truth.min() == truth.max():
        return None
    score = np.asarray(model.predict_proba(X))[:, 1]
    cal = fit_isotonic(score, truth)
    positive = classes[1].item() if isinstance(classes[1], np.generic) else classes[1]
    reference = {"accuracy": float(metrics.accuracy_score(y, model.predict(X))),
                 "roc_auc": float(metrics.roc_auc_score(truth, score))}
    return cal.to_dict() | {"positive_label": float(positive) if isinstance(positive, int | float) else str(positive),
                            "reference": reference}


def regression_metrics(model: Any, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """r2 (left out for fewer than two rows), mae and rmse."""
    pred = np.asarray(model.predict(X), dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    err = pred - y
    out = {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2))), "rows": float(len(y))}
    if len(y) >= 2:
        out["r2"] = float(metrics.r2_score(y, pred))
    return out


def task_metrics(task: str, model: Any, X: np.ndarray, y: np.ndarray, positive: Any = None) -> dict[str, float]:
    """The metrics of ``task`` ("classification" or "regression"); ``positive``: a binary
    classifier's positive class (:func:`positive_index`)."""
    if task == "classification":
        return classification_metrics(model, X, y, positive)
    if task == "regression":
        return regression_metrics(model, X, y)
    raise ValueError(f"unknown task {task!r}")


# ------------------------------------------------------------------------------------ slices


def _is_missing(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "f":
        return np.isnan(values)
    if values.dtype.kind == "O":
        return np.array([v is None or (isinstance(v, float) and np.isnan(v)) for v in values], dtype=bool)
    return np.zeros(len(values), dtype=bool)


def _label(value: Any) -> str:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value.item() if isinstance(value, np.generic) else value)


def slice_labels(values: np.ndarray, max_slices: int) -> tuple[np.ndarray, list[str]]:
    """A label per row and the labels in order: one slice per distinct value, or, past
    ``max_slices`` distinct values, quantile bins (numbers) or the most frequent values + ``other``."""
    values = np.asarray(values)
    missing = _is_missing(values)
    present = values[~missing]
    labels = np.full(len(values), MISSING, dtype=object)
    numeric = values.dtype.kind in "biuf"
    distinct = np.unique(present) if numeric else np.unique(present.astype(str))
    if len(distinct) <= max_slices:
        names = [_label(v) for v in distinct]
        labels[~missing] = [_label(v) for v in present] if numeric else present.astype(str)
    elif numeric:
        x = present.astype(np.float64)
        edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, max_slices + 1)))
        idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
        names = [
            f"[{edges[b]:.4g}, {edges[b + 1]:.4g}{']' if b == len(edges) - 2 else ')'}" for b in range(len(edges) - 1)
        ]
        labels[~missing] = np.asarray(names, dtype=object)[idx]
    else:
        text = present.astype(str)
        uniq, counts = np.unique(text, return_counts=True)
        order = sorted(range(len(uniq)), key=lambda j: (-counts[j], uniq[j]))[: max_slices - 1]
        keep = {str(uniq[j]) for j in order}
        names = [str(uniq[j]) for j in order] + [OTHER]
        labels[~missing] = [t if t in keep else OTHER for t in text]
    if missing.any():
        names.append(MISSING)
    used = set(labels.tolist())
    return labels, [n for n in names if n in used]


@dataclass(frozen=True)
class SliceResult:
    """One slice of the holdout: ``column == value`` (or a bin of it)."""

    column: str
    value: str
    rows: int
    metrics: dict[str, float]
    #: predicted positive rate (classification) or mean absolute error (regression)
    fairness_value: float
    #: the slice has at least ``min_slice_rows`` rows and counts for slice rules and the gap
    counted: bool

    @property
    def name(self) -> str:
        return f"{self.column}={self.value}"


@dataclass(frozen=True)
class Evaluation:
    """A model's holdout evaluation: what the gate judges."""

    task: str
    metrics: dict[str, float]
    slices: tuple[SliceResult, ...] = ()
    #: the largest gap over the slice columns (None without slices)
    fairness_gap: float | None = None
    #: "positive_rate" (classification) or "mae" (regression)
    fairness_measure: str = ""
    fairness_by_column: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "metrics": self.metrics,
            "slices": [
                {"column": s.column, "value": s.value, "rows": s.rows, "metrics": s.metrics,
                 self.fairness_measure: s.fairness_value, "counted": s.counted}
                for s in self.slices
            ],
            "fairness_gap": self.fairness_gap,
            "fairness_measure": self.fairness_measure,
            "fairness_by_column": self.fairness_by_column,
        }


def _positive_rates(pred: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Share of rows predicted as each class (binary: just the positive class ``classes[1]``)."""
    targets = classes[1:] if len(classes) == 2 else classes
    return np.array([float(np.mean(pred == c)) if len(pred) else 0.0 for c in targets])


def evaluate_model(
    model: Any,
    X: np.ndarray,
    y: np.ndarray,
    task: str,
    slices: Mapping[str, np.ndarray] | None = None,
    *,
    max_slices: int = 10,
    min_slice_rows: int = 10,
    positive: Any = None,
) -> Evaluation:
    """Overall metrics on ``(X, y)``, metrics per slice and the fairness gap.

    ``slices`` maps a column name to its value for each row of ``X`` (e.g. the holdout rows of a
    column of the snapshot, a feature or not)."""
    overall = task_metrics(task, model, X, y, positive)
    if not slices:
        return Evaluation(task=task, metrics=overall)
    y = np.asarray(y)
    pred = np.asarray(model.predict(X))
    classes = _classes(model, y) if task == "classification" else np.array([])
    if len(classes) == 2:  # the positive class second (the slices' positive rate is its share)
        k = positive_index(classes, positive)
        classes = classes[[1 - k, k]]
    measure = "positive_rate" if task == "classification" else "mae"
    results: list[SliceResult] = []
    gaps: dict[str, float] = {}
    for column, values in slices.items():
        values = np.asarray(values)
        if len(values) != len(y):
            raise ValidationError(f"slice column {column!r} has {len(values)} values for {len(y)} holdout rows")
        labels, names = slice_labels(values, max_slices)
        per_slice = []
        for name in names:
            rows = labels == name
            n = int(rows.sum())
            m = task_metrics(task, model, X[rows], y[rows], positive)
            if task == "classification":
                rates = _positive_rates(pred[rows], classes)
                value = float(rates[0]) if len(classes) == 2 else float(rates.max())
            else:
                rates = np.array([m["mae"]])
                value = m["mae"]
            counted = n >= min_slice_rows
            results.append(SliceResult(column, name, n, m, value, counted))
            if counted:
                per_slice.append(rates)
        if len(per_slice) >= 2:  # else not measured (it is not 0: the slices may differ, unseen)
            stacked = np.vstack(per_slice)
            gaps[column] = float((stacked.max(axis=0) - stacked.min(axis=0)).max())
    return Evaluation(
        task=task,
        metrics=overall,
        slices=tuple(results),
        fairness_gap=max(gaps.values()) if gaps else None,
        fairness_measure=measure,
        fairness_by_column=gaps,
    )
