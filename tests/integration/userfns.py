"""User code for the run-history tests: a transform, and functions and estimators that fail on
purpose where a user's would (a Ray Data batch function, a Tune trial's fit, a Serve replica
loading the model). Ray workers import this module by name, as they would a user's."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

log = logging.getLogger(__name__)


def add_ratio(batch: pd.DataFrame) -> pd.DataFrame:
    """A derived feature: radius over texture."""
    out = batch.copy()
    out["radius_to_texture"] = out["mean_radius"] / out["mean_texture"]
    return out


def explode(batch: pd.DataFrame) -> pd.DataFrame:
    raise ValueError(f"negative radius in a batch of {len(batch)} rows (on purpose)")


def not_a_frame(batch: pd.DataFrame) -> Any:
    return batch.to_dict()


class TrialBoom(RuntimeError):
    """The user's own exception type, raised inside a Tune trial."""


class FitRaises(LogisticRegression):
    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> FitRaises:
        raise TrialBoom("fit exploded on purpose")


class FailsToLoad(ClassifierMixin, BaseEstimator):
    """A classifier whose pickled form refuses to load while the ``marker`` file exists: it
    trains, evaluates and registers, and then fails in the Serve replica's start-up."""

    def __init__(self, marker: str = "", C: float = 1.0) -> None:
        self.marker = marker
        self.C = C

    def fit(self, X: np.ndarray, y: np.ndarray) -> FailsToLoad:
        self.model_ = LogisticRegression(C=self.C, max_iter=5000).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict(X)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.model_.predict_proba(X)

    def __setstate__(self, state: dict[str, Any]) -> None:
        marker = state.get("marker")
        if marker and Path(marker).exists():
            raise RuntimeError(f"cannot restore this model: {Path(marker).name} says the weights are corrupt")
        super().__setstate__(state)


def check_rows(view: Any, min_rows: int = 100) -> dict[str, Any]:
    """A user step (``steps:``) after validate: reads the snapshot's table and the split arrays."""
    table = view.table()
    X_train, y_train, X_holdout, _ = view.arrays()
    if table.num_rows < min_rows:
        raise ValueError(f"only {table.num_rows} rows, fewer than {min_rows}")
    return {"rows": table.num_rows, "train_rows": int(len(y_train)), "holdout_rows": int(len(X_holdout)),
            "features": len(view.features or ()), "writeable": bool(X_train.flags.writeable)}


def sigterm_self(view: Any) -> dict[str, Any]:
    """A user step that asks its own process to stop, as ``docker stop`` would (SIGTERM)."""
    import os
    import signal
    import time

    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)  # the handler raises in the main thread before this ends
    return {}
