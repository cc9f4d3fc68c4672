"""One read-only view of a route's sharded monitors (pure: no Ray).

With ``monitor.shards`` > 1 a route has several monitor actors, each fed the requests whose id
hashes to it (:func:`raymlops.serve.handoff.shard_of`), each closing its own windows and raising
its own alerts. What callers read (``status()``, ``summary()``) is the merge of every shard's
state: the streaming states merge exactly (integer counts and exact sums,
:class:`~raymlops.monitor.state.StreamState`), so the open window and the rolling long-term
window of the merge are those of one monitor that saw every row; counters add; the label and
pairing stores are not copied, only their sizes (a merge is for reading, never for ingesting).

:func:`snapshot` is what a shard sends: its state without those stores, written under its lock
as a checkpoint *view* (arrays + JSON, :mod:`raymlops.monitor.checkpoint`; never a pickle);
:func:`merge_monitors` builds the view.
"""

from __future__ import annotations

import copy
from collections import Counter, deque
from typing import Any

import numpy as np

from raymlops.config import MonitorConfig
from raymlops.monitor.alerts import AlertBook
from raymlops.monitor.checkpoint import SizedEarlyLabels, SizedStore
from raymlops.monitor.monitor import Monitor
from raymlops.monitor.performance import PerformanceTracker, PerformanceWindow

__all__ = ["merge_monitors", "snapshot"]


def _sized_early(trackers: list[PerformanceTracker]) -> SizedEarlyLabels:
    return SizedEarlyLabels(sum(len(t.early) for t in trackers), sum(t.early.expired for t in trackers),
                            sum(t.early.pushed_out for t in trackers), trackers[0].early.ttl_s)


def snapshot(monitor: Monitor) -> bytes:
    """``monitor``'s state for merging (call under the owner's lock): a checkpoint view, without
    the label store, the early labels and the pending pairs (their sizes only)."""
    return monitor.to_bytes(view=True)


def _sum_windows(windows: list[PerformanceWindow]) -> PerformanceWindow:
    out = copy.deepcopy(windows[0])
    for w in windows[1:]:
        out.n = out.n + w.n
        out.correct = out.correct + w.correct
        out.abs_err = out.abs_err + w.abs_err
        out.pos = out.pos + w.pos
        out.neg = out.neg + w.neg
    return out


def _merge_performance(trackers: list[PerformanceTracker]) -> PerformanceTracker:
    out = copy.copy(trackers[0])
    out.store = SizedStore(sum(len(t.store) for t in trackers),  # type: ignore[assignment]
                           sum(t.store.evicted for t in trackers), sum(t.store.replaced for t in trackers))
    out.window = _sum_windows([t.window for t in trackers])
    out.baseline_window = _sum_windows([t.baseline_window for t in trackers])
    # every shard's baseline is its first labelled rows: the merged one is all of them together
    out.baseline = out.baseline_window.metrics() if any(t.baseline is not None for t in trackers) else None
    out.matched = sum(t.matched for t in trackers)
    out.unmatched = sum(t.unmatched for t in trackers)
    out.early = _sized_early(trackers)  # type: ignore[assignment]
    out.counts = trackers[0].counts.merged(t.counts for t in trackers[1:])
    out.windows_closed = sum(t.windows_closed for t in trackers)
    latest = max(trackers, key=lambda t: t.windows_closed)
    out.last = latest.last
    out.concept = _MergedConcept([t.concept for t in trackers])  # type: ignore[assignment]
    out.estimated = _merge_estimated([t.estimated for t in trackers])
    return out


class _MergedConcept:
    """The shards' change detectors as one status: each shard's detectors see the labels of its
    own rows, so the counts add up and each detector's error estimate is the label-weighted mean."""

    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts

    @staticmethod
    def _merge(summaries: list[dict[str, Any]]) -> dict[str, Any]:
        n = sum(int(s["labels"]) for s in summaries)
        means = [(float(s["mean"]), int(s["labels"])) for s in summaries if s.get("mean") == s.get("mean")]
        weight = sum(w for _, w in means)
        lasts = [s["last_detection"] for s in summaries if s.get("last_detection") is not None]
        return {"labels": n, "detections": sum(int(s["detections"]) for s in summaries),
                "increases": sum(int(s["increases"]) for s in summaries), "last_detection": max(lasts, default=None),
                "mean": sum(m * w for m, w in means) / weight if weight else float("nan")}

    def status(self) -> dict[str, Any]:
        parts = [p.status() for p in self.parts]
        if len(parts) == 1:
            return parts[0]
        out = dict(parts[0]) | {"labels": sum(p["labels"] for p in parts), "alarms": sum(p["alarms"] for p in parts)}
        kinds = list(parts[0]["overall"])
        out["overall"] = {k: self._merge([p["overall"][k] for p in parts if k in p["overall"]]) for k in kinds}
        names = list(dict.fromkeys(n for p in parts for n in p["slices"]))
        out["slices"] = {n: {k: self._merge([p["slices"][n][k] for p in parts if k in p["slices"].get(n, {})])
                             for k in kinds} for n in names}
        return out


def _merge_estimated(parts: list[Any]) -> Any:
    """The shards' CBPE estimators as one: the open window's expected counts add up (one estimator
    that saw every served row); rows and windows add; the last closed window is the newest shard's."""
    out = copy.copy(parts[0])
    out.window = copy.deepcopy(parts[0].window)
    for p in parts[1:]:
        for name in ("n", "correct", "pos", "neg"):
            setattr(out.window, name, getattr(out.window, name) + getattr(p.window, name))
    out.rows = sum(p.rows for p in parts)
    out.rows_without_scores = sum(p.rows_without_scores for p in parts)
    out.windows = sum(p.windows for p in parts)
    out.last = max(parts, key=lambda p: p.windows).last
    return out


def _merge_alerts(books: list[AlertBook]) -> AlertBook:
    out = AlertBook(books[0].cooldown_s, keep=books[0].recent.maxlen or 200)
    out.totals = Counter()
    for b in books:
        out.totals.update(b.totals)
        for key, ts in b.last_fired.items():
            out.last_fired[key] = max(ts, out.last_fired.get(key, ts))
    recent = sorted((a for b in books for a in b.recent), key=lambda a: a.ts)
    out.recent = deque(recent, maxlen=out.recent.maxlen)
    return out


def _merge_slo(monitors: list[Monitor]) -> Any:
    out = copy.deepcopy(monitors[0].slo)
    buckets: dict[int, np.ndarray] = {}
    for m in monitors:
        for slot, b in enumerate(m.slo.ring_id.tolist()):
            if b >= 0:
                buckets[b] = buckets.get(b, 0) + m.slo.ring[slot]
    out.ring[:] = 0.0
    out.ring_id[:] = -1
    for b in sorted(buckets)[-out.n_buckets:]:
        slot = b % out.n_buckets
        out.ring[slot] = buckets[b]
        out.ring_id[slot] = b
    out.total_requests = sum(m.slo.total_requests for m in monitors)
    out.total_errors = sum(m.slo.total_errors for m in monitors)
    return out


def merge_monitors(snapshots: list[bytes], config: MonitorConfig | None = None) -> Monitor:
    """One :class:`Monitor` holding every shard's rows (see the module docstring); read only."""
    if not snapshots:
        raise ValueError("merge_monitors needs at least one snapshot")
    monitors = [Monitor.from_bytes(s, config=config) for s in snapshots]
    out = monitors[0]
    if len(monitors) == 1:
        return out
    cfg = out.config
    current = out.current
    for m in monitors[1:]:
        current = current.merge(m.current)
    # the shard whose newest window closed last goes last: its window is the "last window"
    ordered = sorted(monitors, key=lambda m: m.history[-1].ended if m.history else float("-inf"))
    recent = [s for m in ordered for s in m.recent]
    history = sorted((h for m in monitors for h in m.history), key=lambda h: h.ended)[-cfg.history:]
    differential = monitors[0].differential.merged([m.differential for m in monitors[1:]])
    merged = {
        "current": current,
        "recent": deque(recent),
        "history": deque(history, maxlen=cfg.history),
        "window_index": sum(m.window_index for m in monitors),
        "window_started": min(m.window_started for m in monitors),
        "rows_total": sum(m.rows_total for m in monitors),
        "batches": sum(m.batches for m in monitors),
        "challenger_rows": sum(m.challenger_rows for m in monitors),
        "pos": sum((m.pos for m in monitors), np.zeros_like(out.pos)),
        "pred_n": sum((m.pred_n for m in monitors), np.zeros_like(out.pred_n)),
        "alerts": _merge_alerts([m.alerts for m in monitors]),
        "performance": _merge_performance([m.performance for m in monitors]),
        "differential": differential,
        "slo": _merge_slo(monitors),
    }
    out.__dict__.update(merged)
    return out
