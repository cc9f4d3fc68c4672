"""Performance estimated before labels arrive (CBPE) for a binary classifier's served rows.

The served positive-class probabilities (``scores``) are calibrated with the model's holdout
calibration (``monitor.performance.calibration``, from the registered model's lineage;
:mod:`raymlops.stats.cbpe`) and summed per slice into tumbling windows of
``estimated_window_rows`` served rows: expected accuracy and expected ROC AUC, overall and per
slice. A closed window whose estimate fell below the reference (the holdout's realised metric;
without a calibration, the first window's estimate) by more than the allowed drop raises an
``estimated_performance`` alert, which ``retrain.triggers: [estimated_performance]`` can act on.

The rows that get labels are also summed into :attr:`PerformanceEstimator.labelled`, beside the
tracker's label window, so each label window shows the estimate next to the realised value.
Rows without scores are counted (``rows_without_scores``) and estimate nothing.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from raymlops.config import MonitorPerformanceConfig
from raymlops.monitor.alerts import Alert
from raymlops.stats.cbpe import Calibration, ExpectedCounts

__all__ = ["PerformanceEstimator"]


def _positive(predictions: list[Any], positive: float | str) -> np.ndarray:
    values = np.asarray(predictions)
    if values.dtype.kind in "biuf":
        try:
            return np.asarray(values.astype(np.float64) == float(positive))
        except ValueError:
            return np.zeros(values.shape, dtype=bool)
    text = str(positive)
    try:
        number = float(positive)
    except (TypeError, ValueError):
        number = None

    def same(v: Any) -> bool:
        if number is not None:
            try:
                return float(v) == number
            except (TypeError, ValueError):
                pass
        return str(v) == text

    return np.fromiter((same(v) for v in values.ravel().tolist()), dtype=bool, count=values.size)


class PerformanceEstimator:
    """CBPE windows of one performance tracker (see the module docstring)."""

    def __init__(self, cfg: MonitorPerformanceConfig, slices: tuple[str, ...]) -> None:
        self.cfg = cfg
        self.slices = slices
        self.enabled = bool(getattr(cfg, "estimate", True)) and cfg.task == "classification"
        cal = getattr(cfg, "calibration", None)
        self.calibration = None if cal is None else Calibration(tuple(cal.x), tuple(cal.y), cal.method, cal.rows)
        self.reference: dict[str, float] = dict(cal.reference) if cal is not None else {}
        self.reference_source = "holdout" if self.reference else "first_window"
        self.window_rows = int(getattr(cfg, "estimated_window_rows", 1000))
        self.window = ExpectedCounts(len(slices))
        self.labelled = ExpectedCounts(len(slices))  # the rows of the tracker's open label window
        self.last: dict[str, Any] | None = None
        self.windows = 0
        self.rows = 0
        self.rows_without_scores = 0

    @property
    def has_scores(self) -> bool:
        return self.rows > 0

    def calibrate(self, scores: Any) -> np.ndarray:
        p = np.asarray(scores, dtype=np.float64)
        return p if self.calibration is None else self.calibration.apply(p)

    def add(self, predictions: list[Any], scores: list[float] | None, slices: list[int], ts: float,
            window: int) -> list[Alert]:
        """Served champion rows; returns the alerts of the estimation windows they closed."""
        if not self.enabled or not predictions:
            return []
        if scores is None:
            self.rows_without_scores += len(predictions)
            return []
        p = self.calibrate(scores)
        pred = _positive(predictions, self.cfg.positive_label)
        s = np.asarray(slices, dtype=np.int64)
        self.rows += int(p.size)
        alerts: list[Alert] = []
        start = 0
        while start < p.size:
            take = min(p.size - start, self.window_rows - self.window.rows)
            part = slice(start, start + take)
            self.window.add(p[part], pred[part], s[part])
            start += take
            if self.window.rows >= self.window_rows:
                alerts += self.close(ts, window)
        return alerts

    def add_labelled(self, score: float, predicted_positive: bool, s: int) -> None:
        """One labelled row (its served score), for the estimate beside the realised value."""
        if self.enabled and self.has_scores:
            self.labelled.add_one(float(self.calibrate(score)), predicted_positive, s)

    def labelled_report(self) -> dict[str, Any]:
        """The estimate of the label window's rows, then a fresh sum for the next one."""
        out = self._report(self.labelled)
        self.labelled = ExpectedCounts(len(self.slices))
        return out

    def _report(self, counts: ExpectedCounts) -> dict[str, Any]:
        return {"overall": counts.metrics(),
                "slices": {name: counts.metrics(i) for i, name in enumerate(self.slices)
                           if counts.n[i] and len(self.slices) > 1}}  # one slice: "all" itself

    def close(self, ts: float, window: int) -> list[Alert]:
        """Judge the open estimation window against the reference and start a new one."""
        report = self._report(self.window) | {"index": self.windows, "ts": ts}
        if not self.reference:  # no holdout calibration: the first window is the reference
            self.reference = {k: v for k, v in report["overall"].items() if k != "rows" and math.isfinite(v)}
        alerts = self._judge(report["overall"], "all", ts, window)
        if len(self.slices) > 1:
            for name, m in report["slices"].items():
                alerts += self._judge(m, name, ts, window)
        self.last = report
        self.windows += 1
        self.window = ExpectedCounts(len(self.slices))
        return alerts

    def _judge(self, m: dict[str, float], where: str, ts: float, window: int) -> list[Alert]:
        cfg = self.cfg
        if m.get("rows", 0) < cfg.min_labels:
            return []
        drops = {"accuracy": getattr(cfg, "max_estimated_accuracy_drop", None) or cfg.max_accuracy_drop,
                 "roc_auc": cfg.max_auc_drop}
        out = []
        for metric, drop in drops.items():
            ref, value = self.reference.get(metric, math.nan), m.get(metric, math.nan)
            if not (math.isfinite(ref) and math.isfinite(value)) or value >= ref - drop:
                continue
            out.append(Alert(kind="estimated_performance", key=f"estimated_performance:{metric}:{where}",
                             severity="warning",
                             message=f"estimated {metric} {value:.4f} in slice {where} is past its limit "
                                     f"{ref - drop:.4f} ({self.reference_source} {ref:.4f}, {m['rows']} served rows, "
                                     "no labels needed)",
                             value=value, threshold=ref - drop, ts=ts, window=window, slice=where,
                             details={"method": "cbpe", "reference": ref}))
        return out

    def status(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "calibrated": self.calibration is not None,
                "reference": self.reference or None, "reference_source": self.reference_source,
                "current": self._report(self.window), "last_window": self.last, "windows": self.windows,
                "window_rows": self.window_rows, "rows": self.rows, "rows_without_scores": self.rows_without_scores}
