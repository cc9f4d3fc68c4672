"""Service-level objectives: latency percentiles, error rate, availability, burn-rate alerts.

Requests are counted in time buckets of ``bucket_s`` seconds of the injected clock (a ring
that spans the longest alert window): requests, server errors (status >= 500), slow requests
(over ``latency_ms``) and a latency histogram on fixed log-spaced edges, from which the
percentiles come. Alerts follow the multi-window, multi-burn-rate recipe of the Google SRE
workbook: an objective's error budget is ``1 - target``; the burn rate of a window is its bad
share divided by the budget; an alert fires when both the long and the short window of a pair
burn at least the pair's rate (defaults 1 h / 5 min at 14.4 and 6 h / 30 min at 6).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from raymlops.config import MonitorSLOConfig
from raymlops.monitor.alerts import Alert

__all__ = ["LATENCY_EDGES_MS", "SLOTracker"]

#: latency histogram edges in ms: 0.1 ms … ~100 s, 10 per decade
LATENCY_EDGES_MS = np.logspace(-1, 5, 61)
_FIELDS = 3 + LATENCY_EDGES_MS.size + 1  # requests, errors, slow, histogram


def percentile(hist: npt.NDArray[np.float64], q: float) -> float:
    """The ``q`` quantile (0-1) from a histogram on :data:`LATENCY_EDGES_MS` (bucket upper edge)."""
    n = hist.sum()
    if n == 0:
        return math.nan
    i = int(np.searchsorted(np.cumsum(hist), q * n, side="left"))
    edges = np.append(LATENCY_EDGES_MS, np.inf)
    return float(edges[min(i, edges.size - 1)])


class SLOTracker:
    def __init__(self, cfg: MonitorSLOConfig) -> None:
        self.cfg = cfg
        longest = max([w.long_s for w in cfg.burn_windows] + [cfg.bucket_s])
        self.n_buckets = int(math.ceil(longest / cfg.bucket_s)) + 1
        self.ring = np.zeros((self.n_buckets, _FIELDS), dtype=np.float64)
        self.ring_id = np.full(self.n_buckets, -1, dtype=np.int64)  # which time bucket each slot holds
        self.total_requests = 0
        self.total_errors = 0

    def _slot(self, now: float) -> int:
        b = int(math.floor(now / self.cfg.bucket_s))
        slot = b % self.n_buckets
        if self.ring_id[slot] != b:
            self.ring[slot] = 0.0
            self.ring_id[slot] = b
        return slot

    def record(self, now: float, latency_ms: npt.ArrayLike | None, status: npt.ArrayLike | None) -> None:
        lat = None if latency_ms is None else np.atleast_1d(np.asarray(latency_ms, dtype=np.float64))
        st = None if status is None else np.atleast_1d(np.asarray(status, dtype=np.float64))
        n = max(0 if lat is None else lat.size, 0 if st is None else st.size)
        if n == 0:
            return
        row = self.ring[self._slot(now)]
        row[0] += n
        if st is not None:
            errors = int(np.sum(st >= 500))
            row[1] += errors
            self.total_errors += errors
        if lat is not None:
            finite = lat[np.isfinite(lat)]
            if self.cfg.latency_ms is not None:
                row[2] += float(np.sum(finite > self.cfg.latency_ms))
            row[3:] += np.bincount(np.searchsorted(LATENCY_EDGES_MS, finite, side="left"),
                                   minlength=LATENCY_EDGES_MS.size + 1)
        self.total_requests += n

    def window(self, now: float, seconds: float) -> npt.NDArray[np.float64]:
        """Sum of the buckets that fall within the last ``seconds`` (the current one included)."""
        b = int(math.floor(now / self.cfg.bucket_s))
        span = max(int(math.ceil(seconds / self.cfg.bucket_s)), 1)
        mask = (self.ring_id > b - span) & (self.ring_id <= b)
        return np.asarray(self.ring[mask].sum(axis=0), dtype=np.float64)

    def snapshot(self, now: float, seconds: float) -> dict[str, float]:
        w = self.window(now, seconds)
        n = w[0]
        hist = w[3:]
        return {
            "requests": float(n),
            "error_rate": float(w[1] / n) if n else math.nan,
            "availability": float(1 - w[1] / n) if n else math.nan,
            "slow_rate": float(w[2] / n) if n and self.cfg.latency_ms is not None else math.nan,
            "latency_p50_ms": percentile(hist, 0.50),
            "latency_p95_ms": percentile(hist, 0.95),
            "latency_p99_ms": percentile(hist, 0.99),
        }

    def evaluate(self, now: float, window: int) -> tuple[dict[str, Any], list[Alert]]:
        """Burn rates of every window pair and the alerts they raise."""
        cfg = self.cfg
        objectives = [("availability", 1, 1 - cfg.availability_target)]
        if cfg.latency_ms is not None:
            objectives.append(("latency", 2, 1 - cfg.latency_target))
        burns: dict[str, Any] = {}
        alerts = []
        for name, col, budget in objectives:
            for pair in cfg.burn_windows:
                long_w, short_w = self.window(now, pair.long_s), self.window(now, pair.short_s)
                rates = [w[col] / w[0] / budget if w[0] else 0.0 for w in (long_w, short_w)]
                key = f"{name}:{pair.long_s:g}s/{pair.short_s:g}s"
                burns[key] = {"long": rates[0], "short": rates[1], "threshold": pair.burn_rate}
                if long_w[0] >= cfg.min_requests and min(rates) >= pair.burn_rate:
                    alerts.append(Alert(
                        kind="slo_burn", key=f"slo_burn:{key}", severity="critical",
                        message=f"{name} error budget burning {rates[0]:.1f}x over {pair.long_s:g}s and "
                                f"{rates[1]:.1f}x over {pair.short_s:g}s (alert at {pair.burn_rate:g}x)",
                        value=min(rates), threshold=pair.burn_rate, ts=now, window=window,
                        details={"objective": name, "long_s": pair.long_s, "short_s": pair.short_s}))
        shortest = min(w.short_s for w in cfg.burn_windows)
        longest = max(w.long_s for w in cfg.burn_windows)
        status = {"short": self.snapshot(now, shortest), "long": self.snapshot(now, longest), "burn_rates": burns,
                  "targets": {"availability": cfg.availability_target, "latency_ms": cfg.latency_ms,
                              "latency_target": cfg.latency_target},
                  "total_requests": self.total_requests, "total_errors": self.total_errors}
        return status, alerts
