"""A LogisticRegression whose ``fit`` takes ``delay_s`` longer: Tune trials that last long enough
for the node-loss test to remove a node while a trial runs on it (the quickstart's trials take
a fraction of a second)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression


class SlowClassifier(ClassifierMixin, BaseEstimator):
    def __init__(self, delay_s: float = 3.0, C: float = 1.0) -> None:
        self.delay_s = delay_s
        self.C = C

    def fit(self, X: np.ndarray, y: np.ndarray) -> SlowClassifier:
        time.sleep(self.delay_s)
        self.model_ = LogisticRegression(C=self.C, max_iter=2000).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict(self, X: np.ndarray) -> Any:
        return self.model_.predict(X)

    def predict_proba(self, X: np.ndarray) -> Any:
        return self.model_.predict_proba(X)
