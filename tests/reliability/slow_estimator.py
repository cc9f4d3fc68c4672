"""A LogisticRegression whose ``fit`` takes ``delay_s`` longer: Tune trials that last long enough
for the node-loss test to remove a node while a trial runs on it (the quickstart's trials take
a fraction of a second).

With :data:`MARKERS_ENV` set (in the environment of the process that starts the cluster, which its
nodes' workers inherit), a fit holds a file ``<node id>.<pid>.<random>`` in that folder while it sleeps: the
node-loss driver removes a node while one of these is there, so a trial is mid-fit on it."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

#: the folder in which a fit says it is running (see the module's docstring)
MARKERS_ENV = "RAYMLOPS_TEST_FIT_MARKERS"


class SlowClassifier(ClassifierMixin, BaseEstimator):
    def __init__(self, delay_s: float = 3.0, C: float = 1.0) -> None:
        self.delay_s = delay_s
        self.C = C

    def fit(self, X: np.ndarray, y: np.ndarray) -> SlowClassifier:
        folder = os.environ.get(MARKERS_ENV)
        marker = None
        if folder:
            import ray

            marker = Path(folder) / f"{ray.get_runtime_context().get_node_id()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
            marker.touch()
        try:
            time.sleep(self.delay_s)
        finally:
            if marker is not None:
                marker.unlink(missing_ok=True)
        self.model_ = LogisticRegression(C=self.C, max_iter=2000).fit(X, y)
        self.classes_ = self.model_.classes_
        return self

    def predict(self, X: np.ndarray) -> Any:
        return self.model_.predict(X)

    def predict_proba(self, X: np.ndarray) -> Any:
        return self.model_.predict_proba(X)
