"""Concept drift from the error stream: change detectors on labelled rows, overall and per slice.

Each labelled row gives an error in [0, 1]: ``1 - correct`` for a classifier; for a regressor
its absolute error ``e`` as ``e / (e + baseline MAE)`` (bounded, as ADWIN's bound assumes, so
the same thresholds fit every scale; fed once the baseline is known). :class:`ConceptDrift`
feeds it to the ``change_detectors`` of ``monitor.performance`` (ADWIN, Page-Hinkley:
:mod:`raymlops.stats.change`) of all rows and of the row's slice, and raises a ``performance``
alert keyed ``concept_drift:<detector>:<slice>`` when one finds the error going *up*: within a
few hundred labels of a change in P(y|x), where the windowed check waits for whole windows. A
detector that found an improvement is counted in ``status()`` but raises nothing.
"""

from __future__ import annotations

import math
from typing import Any

from raymlops.config import MonitorPerformanceConfig
from raymlops.monitor.alerts import Alert
from raymlops.stats.change import ChangeDetector, make_detector

__all__ = ["ConceptDrift"]

ALL = "all"


class ConceptDrift:
    """The change detectors of one performance tracker (see the module docstring)."""

    def __init__(self, cfg: MonitorPerformanceConfig, slices: tuple[str, ...]) -> None:
        self.kinds = tuple(getattr(cfg, "change_detectors", ()))
        self.params: dict[str, dict[str, Any]] = {
            "adwin": {"delta": getattr(cfg, "adwin_delta", 0.002),
                      "grace_period": getattr(cfg, "change_min_labels", 30)},
            "page_hinkley": {"delta": getattr(cfg, "page_hinkley_delta", 0.005),
                             "threshold": getattr(cfg, "page_hinkley_threshold", 50.0),
                             "min_instances": getattr(cfg, "change_min_labels", 30)},
        }
        self.slices = slices
        self.per_slice = len(slices) > 1
        # "all" and each slice (made when its first label comes) -> detector kind -> detector
        self.detectors: dict[str, dict[str, ChangeDetector]] = {}
        self.labels = 0
        self.alarms = 0  # increases of the error found (each raised as an alert, before the cooldown)

    def _of(self, where: str) -> dict[str, ChangeDetector]:
        found = self.detectors.get(where)
        if found is None:
            found = self.detectors[where] = {k: make_detector(k, **self.params[k]) for k in self.kinds}
        return found

    def update(self, error: float, s: int, ts: float, window: int) -> list[Alert]:
        """Feed one labelled row's error (its slice index ``s``); the alerts of detections."""
        if not self.kinds or not math.isfinite(error):
            return []
        self.labels += 1
        alerts: list[Alert] = []
        places = (ALL, self.slices[s]) if self.per_slice else (ALL,)
        for where in places:
            for kind, det in self._of(where).items():
                if det.update(error) and det.last_increase:
                    self.alarms += 1
                    before, now = det.last_before, det.last_after
                    alerts.append(Alert(
                        kind="performance", key=f"concept_drift:{kind}:{where}", severity="critical",
                        message=f"concept drift in slice {where}: {kind} found the error rate rising from "
                                f"{before:.4f} to {now:.4f} at labelled row {det.n_seen}",
                        value=now, threshold=before, ts=ts, window=window, slice=where,
                        details={"detector": kind, "labels": det.n_seen, "detections": det.detections}))
        return alerts

    def status(self) -> dict[str, Any]:
        """Per place (``all``, then slices) and detector: labels seen, detections (either way),
        increases, the label count at the last one, and the current error estimate."""
        out: dict[str, Any] = {"detectors": list(self.kinds), "labels": self.labels, "alarms": self.alarms}
        out["overall"] = {k: d.summary() for k, d in self.detectors.get(ALL, {}).items()}
        out["slices"] = {name: {k: d.summary() for k, d in dets.items()}
                         for name, dets in self.detectors.items() if name != ALL}
        return out

    def state(self) -> dict[str, Any]:
        """JSON-able: each detector's :meth:`~raymlops.stats.change.ADWIN.state`."""
        return {"labels": self.labels, "alarms": self.alarms,
                "detectors": {w: {k: d.state() for k, d in dets.items()} for w, dets in self.detectors.items()}}
