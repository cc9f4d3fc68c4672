"""Holdout evaluation (pure: no Ray)."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn import metrics


def classification_metrics(model: Any, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """accuracy, precision, recall, f1, roc_auc (binary or one-vs-rest) and log_loss."""
    pred = model.predict(X)
    out = {"accuracy": float(metrics.accuracy_score(y, pred)), "rows": float(len(y))}
    classes = np.unique(y)
    binary = len(classes) == 2
    # the positive class is the one whose probability is column 1 (model.classes_[1]), as for roc_auc
    kw: dict[str, Any] = (
        {"average": "binary", "pos_label": model.classes_[1] if hasattr(model, "classes_") else classes[1]}
        if binary else {"average": "macro"}
    )
    out["precision"] = float(metrics.precision_score(y, pred, zero_division=0, **kw))
    out["recall"] = float(metrics.recall_score(y, pred, zero_division=0, **kw))
    out["f1"] = float(metrics.f1_score(y, pred, zero_division=0, **kw))
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(X)
        if len(classes) == 2:
            out["roc_auc"] = float(metrics.roc_auc_score(y, proba[:, 1]))
        else:
            out["roc_auc"] = float(metrics.roc_auc_score(y, proba, multi_class="ovr", labels=model.classes_))
        out["log_loss"] = float(metrics.log_loss(y, proba, labels=model.classes_))
    return out
