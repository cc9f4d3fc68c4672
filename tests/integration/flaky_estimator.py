"""An estimator that fails on its first fit: for the test that Tune retries a dying trial.

The first ``fit`` in any process creates ``marker`` and raises; every later one (the retry, in a
new worker process) finds the file and fits a LogisticRegression."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression


class FailsOnceClassifier(ClassifierMixin, BaseEstimator):
    def __init__(self, marker: str = "", C: float = 1.0) -> None:
        self.marker = marker
        self.C = C

    def fit(self, X: np.ndarray, y: np.ndarray) -> FailsOnceClassifier:
        if self.marker and not Path(self.marker).exists():
            Path(self.marker).write_text("failed once\n", encoding="utf-8")
            raise RuntimeError("injected failure on the first fit")
        self.model_ = LogisticRegression(C=self.C, max_iter=500).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict(self, X: np.ndarray) -> Any:
        return self.model_.predict(X)

    def predict_proba(self, X: np.ndarray) -> Any:
        return self.model_.predict_proba(X)
