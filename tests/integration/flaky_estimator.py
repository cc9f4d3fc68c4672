"""Estimators for the Tune tests: one that fails on its first fit (Tune retries a dying trial),
one that logs which process fitted when (trial concurrency).

The first ``FailsOnceClassifier.fit`` in any process creates ``marker`` and raises; every later one
(the retry, in a new worker process) finds the file and fits a LogisticRegression."""

from __future__ import annotations

import os
import time
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


class LogsFitsClassifier(ClassifierMixin, BaseEstimator):
    """A LogisticRegression whose ``fit`` appends ``pid start end`` (and sleeps ``delay_s``) to
    ``log``: which process fitted when, for the tests of trial concurrency."""

    def __init__(self, log: str = "", delay_s: float = 0.5, C: float = 1.0) -> None:
        self.log = log
        self.delay_s = delay_s
        self.C = C

    def fit(self, X: np.ndarray, y: np.ndarray) -> LogsFitsClassifier:
        start = time.time()
        time.sleep(self.delay_s)
        self.model_ = LogisticRegression(C=self.C, max_iter=500).fit(X, y)
        self.classes_ = self.model_.classes_
        with open(self.log, "a", encoding="utf-8") as out:
            out.write(f"{os.getpid()} {start} {time.time()}\n")
        return self

    def predict(self, X: np.ndarray) -> Any:
        return self.model_.predict(X)

    def predict_proba(self, X: np.ndarray) -> Any:
        return self.model_.predict_proba(X)
