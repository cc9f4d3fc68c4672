"""Model quality from late ground truth: a bounded label store and windowed metrics.

Served rows are remembered by request id (prediction, score, slice) in a :class:`LabelStore`
of bounded size (oldest forgotten first). When labels arrive (``feedback``), each matched row
goes into the current :class:`PerformanceWindow`: per slice, the number of labelled rows and
correct ones (accuracy), the score histograms of positives and negatives (a mergeable,
binned AUC), or the absolute errors (MAE, regression). The first ``baseline_labels`` labelled
rows set the baseline; a window of ``window_labels`` rows whose accuracy or AUC fell by more
than the allowed drop, or whose MAE rose by more than the allowed share, alerts — overall and
per slice. So a change in P(y|x) that leaves the inputs alone is still caught.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from raymlops.config import MonitorPerformanceConfig
from raymlops.exceptions import ValidationError
from raymlops.monitor.alerts import Alert

__all__ = ["LabelStore", "PerformanceTracker", "PerformanceWindow", "binned_auc"]

SCORE_BINS = 200


@dataclass(frozen=True)
class Pending:
    prediction: float | str
    score: float
    slice: int


class LabelStore:
    """Request id -> (prediction, score, slice), at most ``size`` entries, oldest evicted first.

    Entries are plain tuples in an insertion-ordered dict, written a batch at a time with one
    ``dict.update`` (this runs for every served row: a Python object and a ``move_to_end`` per row
    was a third of the monitor's ingest time); :meth:`pop` hands out :class:`Pending`."""

    def __init__(self, size: int) -> None:
        self.size = int(size)
        self.items: dict[str, Any] = {}
        self.evicted = 0

    def put(self, request_ids: list[str], predictions: list[Any], scores: list[float], slices: list[int]) -> None:
        if not (len(request_ids) == len(predictions) == len(scores) == len(slices)):
            raise ValueError("request_ids, predictions, scores and slices differ in length")
        batch = dict(zip(request_ids, zip(predictions, scores, slices, strict=True), strict=True))
        items = self.items
        if items and not items.keys().isdisjoint(batch):  # an id seen again is the newest, not kept in place
            for rid in items.keys() & batch.keys():
                del items[rid]
        items.update(batch)
        over = len(items) - self.size
        if over > 0:
            for rid in list(itertools.islice(iter(items), over)):
                del items[rid]
            self.evicted += over

    def pop(self, rid: str) -> Pending | None:
        item = self.items.pop(rid, None)
        if item is None or isinstance(item, Pending):  # a checkpoint of an older version holds Pending
            return item
        return Pending(*item)

    def __len__(self) -> int:
        return len(self.items)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.items = dict(self.items)  # an older checkpoint's OrderedDict: the same order


def binned_auc(pos: npt.NDArray[np.float64], neg: npt.NDArray[np.float64]) -> float:
    """ROC AUC from score histograms of positives and negatives on the same ascending bins
    (ties within a bin count one half). NaN without both classes."""
    n_pos, n_neg = pos.sum(), neg.sum()
    if n_pos == 0 or n_neg == 0:
        return math.nan
    neg_below = np.cumsum(neg) - neg
    return float(np.sum(pos * (neg_below + neg / 2.0)) / (n_pos * n_neg))


class PerformanceWindow:
    """Labelled rows of one window, per slice."""

    def __init__(self, n_slices: int, regression: bool) -> None:
        self.regression = regression
        self.n = np.zeros(n_slices, dtype=np.int64)
        self.correct = np.zeros(n_slices, dtype=np.int64)
        self.abs_err = np.zeros(n_slices, dtype=np.float64)
        self.pos = np.zeros((n_slices, SCORE_BINS), dtype=np.float64)
        self.neg = np.zeros((n_slices, SCORE_BINS), dtype=np.float64)

    @property
    def rows(self) -> int:
        return int(self.n.sum())

    def metrics(self, s: int | None = None) -> dict[str, float]:
        sel = slice(None) if s is None else slice(s, s + 1)
        n = int(self.n[sel].sum())
        if n == 0:
            return {"labels": 0}
        if self.regression:
            return {"labels": n, "mae": float(self.abs_err[sel].sum() / n)}
        return {"labels": n, "accuracy": float(self.correct[sel].sum() / n),
                "auc": binned_auc(self.pos[sel].sum(axis=0), self.neg[sel].sum(axis=0))}


def _same(a: Any, b: Any) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


class PerformanceTracker:
    """Label store + baseline + tumbling windows of labelled rows; alerts on degradation."""

    def __init__(self, cfg: MonitorPerformanceConfig, slices: tuple[str, ...]) -> None:
        self.cfg = cfg
        self.slices = slices
        self.regression = cfg.task == "regression"
        self.store = LabelStore(cfg.label_store_size)
        self.baseline_window = PerformanceWindow(len(slices), self.regression)
        self.baseline: dict[str, float] | None = None
        self.window = PerformanceWindow(len(slices), self.regression)
        self.windows_closed = 0
        self.last: dict[str, Any] | None = None
        self.matched = 0
        self.unmatched = 0

    def remember(self, request_ids: list[str], predictions: list[Any], scores: list[float] | None,
                 slices: list[int]) -> None:
        if scores is None:
            if self.regression:
                scores = [0.0] * len(predictions)
            else:  # one comparison per distinct prediction, not per row
                score_of = {p: 1.0 if _same(p, self.cfg.positive_label) else 0.0 for p in set(predictions)}
                scores = [score_of[p] for p in predictions]
        self.store.put(list(map(str, request_ids)), predictions, list(map(float, scores)), slices)

    def feedback(self, request_ids: list[Any], labels: list[Any], ts: float, window: int) -> tuple[int, list[Alert]]:
        if len(request_ids) != len(labels):
            raise ValidationError(f"request_ids and labels differ in length ({len(request_ids)} and {len(labels)})")
        alerts: list[Alert] = []
        matched = 0
        for rid, label in zip(request_ids, labels, strict=True):
            item = self.store.pop(str(rid))
            if item is None:
                self.unmatched += 1
                continue
            matched += 1
            target = self.baseline_window if self.baseline is None else self.window
            self._add(target, item, label)
            if self.baseline is None and self.baseline_window.rows >= self.cfg.baseline_labels:
                self.baseline = self.baseline_window.metrics()
            elif self.baseline is not None and self.window.rows >= self.cfg.window_labels:
                alerts += self.close(ts, window)
        self.matched += matched
        return matched, alerts

    def _add(self, w: PerformanceWindow, item: Pending, label: Any) -> None:
        s = item.slice
        w.n[s] += 1
        if self.regression:
            try:
                w.abs_err[s] += abs(float(item.prediction) - float(label))
            except (TypeError, ValueError):
                raise ValidationError(f"regression labels must be numbers, got {label!r}") from None
            return
        w.correct[s] += int(_same(item.prediction, label))
        b = min(max(int(item.score * SCORE_BINS), 0), SCORE_BINS - 1) if math.isfinite(item.score) else 0
        (w.pos if _same(label, self.cfg.positive_label) else w.neg)[s, b] += 1

    def close(self, ts: float, window: int) -> list[Alert]:
        """Judge the current label window against the baseline and start a new one."""
        w = self.window
        report: dict[str, Any] = {"overall": w.metrics(), "slices": {}}
        alerts = self._judge(w.metrics(), "all", ts, window)
        for s, name in enumerate(self.slices):
            if w.n[s]:
                m = w.metrics(s)
                report["slices"][name] = m
                if len(self.slices) > 1:
                    alerts += self._judge(m, name, ts, window)
        report["baseline"] = self.baseline
        self.last = report
        self.window = PerformanceWindow(len(self.slices), self.regression)
        self.windows_closed += 1
        return alerts

    def _judge(self, m: dict[str, float], where: str, ts: float, window: int) -> list[Alert]:
        base = self.baseline
        if base is None or m.get("labels", 0) < self.cfg.min_labels:
            return []
        checks: list[tuple[str, float, float, bool]] = []
        if self.regression:
            limit = base["mae"] * (1 + self.cfg.max_mae_increase)
            checks.append(("mae", m["mae"], limit, m["mae"] > limit))
        else:
            limit = base["accuracy"] - self.cfg.max_accuracy_drop
            checks.append(("accuracy", m["accuracy"], limit, m["accuracy"] < limit))
            if math.isfinite(m.get("auc", math.nan)) and math.isfinite(base.get("auc", math.nan)):
                limit = base["auc"] - self.cfg.max_auc_drop
                checks.append(("auc", m["auc"], limit, m["auc"] < limit))
        return [
            Alert(kind="performance", key=f"performance:{metric}:{where}", severity="critical",
                  message=f"{metric} {value:.4f} in slice {where} is past its limit {limit:.4f} "
                          f"(baseline {base[metric]:.4f}, {m['labels']} labelled rows)",
                  value=value, threshold=limit, ts=ts, window=window, slice=where)
            for metric, value, limit, bad in checks if bad
        ]

    def status(self) -> dict[str, Any]:
        return {"baseline": self.baseline, "current": self.window.metrics(), "last_window": self.last,
                "pending": len(self.store), "evicted": self.store.evicted, "matched": self.matched,
                "unmatched": self.unmatched, "windows": self.windows_closed}
