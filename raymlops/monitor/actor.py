"""Ray adapter: the monitor actor that receives served rows and reports drift."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np
import ray

from raymlops.monitor.core import MonitorState, Reference, summarize


class DriftMonitor:
    """Holds the streaming state for one deployment; replicas call :meth:`ingest` per batch."""

    def __init__(self, reference: dict[str, Any], settings: dict[str, Any]) -> None:
        self.reference = Reference.from_dict(reference)
        self.features = list(self.reference.feature_names)
        self.settings = dict(settings)
        self.state = MonitorState(self.reference, seed=int(settings.get("seed", 0)))
        self.predictions: dict[str, int] = {}
        self.batches = 0
        self.started = time.time()

    def ingest(self, X: np.ndarray, predictions: np.ndarray) -> int:
        X = np.asarray(X, dtype=np.float64)
        self.state.update({name: X[:, j] for j, name in enumerate(self.features)})
        values, counts = np.unique(np.asarray(predictions), return_counts=True)
        for v, c in zip(values.tolist(), counts.tolist(), strict=True):
            self.predictions[str(v)] = self.predictions.get(str(v), 0) + int(c)
        self.batches += 1
        return self.state.rows

    def rows(self) -> int:
        return self.state.rows

    def summary(self) -> dict[str, Any]:
        if self.state.rows == 0:
            return {"rows": 0, "dataset_drift": False, "drifted_features": [], "features": [],
                    "predictions": {}, "batches": 0}
        drift = summarize(
            self.reference,
            self.state,
            alpha=float(self.settings.get("alpha", 0.05)),
            correction=str(self.settings.get("correction", "bonferroni")),
            dataset_drift_share=float(self.settings.get("dataset_drift_share", 0.5)),
        )
        out = drift.to_dict()
        out["predictions"] = dict(sorted(self.predictions.items()))
        out["batches"] = self.batches
        return out


# Non-detached actors die when their last handle goes away: the driver keeps one per route here
# for as long as the deployment lives in this process.
_LIVE: dict[str, Any] = {}


def monitor_name(route: str) -> str:
    return f"raymlops-monitor-{route}"


def start_monitor(
    route: str, reference: Reference, settings: dict[str, Any], namespace: str, detached: bool
) -> Any:
    """(Re)start the named monitor actor for ``route``; detached when the cluster outlives us."""
    name = monitor_name(route)
    with contextlib.suppress(ValueError):  # no actor of that name: nothing to replace
        ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
    options: dict[str, Any] = {"name": name, "namespace": namespace, "num_cpus": 0}
    if detached:
        options["lifetime"] = "detached"
    handle = ray.remote(DriftMonitor).options(**options).remote(reference.to_dict(), settings)
    ray.get(handle.rows.remote())  # type: ignore[attr-defined]  # wait until it is up, so replicas can find it by name
    _LIVE[route] = handle
    return handle


def stop_monitor(route: str, namespace: str) -> None:
    _LIVE.pop(route, None)
    with contextlib.suppress(ValueError):
        ray.kill(ray.get_actor(monitor_name(route), namespace=namespace), no_restart=True)
