"""Alerts raised by the monitor core, and the book that de-duplicates them.

An :class:`Alert` is a plain value; the core returns the new ones from ``ingest``/``tick`` and
the adapter sends them to sinks (log, audit, webhook: :mod:`raymlops.monitor.sinks`). The same
alert (same ``key``) is not raised again within ``cooldown_s`` of the injected clock.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Alert", "AlertBook"]


@dataclass(frozen=True)
class Alert:
    """What went wrong (``kind``, ``key`` — unique per condition —, ``message``), how far
    (``value`` against ``threshold``), where (``slice``, ``window``) and when (``ts``)."""

    kind: str
    key: str
    severity: str
    message: str
    value: float
    threshold: float
    ts: float
    window: int = 0
    slice: str = "all"
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("value", "threshold"):
            if not math.isfinite(d[k]):
                d[k] = None
        return d


class AlertBook:
    """Cooldown per alert key, totals per kind, and the most recent alerts (bounded)."""

    def __init__(self, cooldown_s: float, keep: int = 200) -> None:
        self.cooldown_s = float(cooldown_s)
        self.last_fired: dict[str, float] = {}
        self.totals: Counter[str] = Counter()
        self.recent: deque[Alert] = deque(maxlen=keep)
        #: the newest alert of each kind, however many others came after it (what a watcher for one
        #: kind must see: a window where every feature drifts raises dozens of alerts at once)
        self.latest: dict[str, Alert] = {}

    def restore(self, recent: Iterable[Alert]) -> None:
        """Put back the recent alerts of a checkpoint (and the newest of each kind among them)."""
        for a in recent:
            self.recent.append(a)
            self.latest[a.kind] = a

    def offer(self, alerts: list[Alert]) -> list[Alert]:
        """The alerts that are new (not fired within the cooldown), recorded as fired."""
        fresh = []
        for a in alerts:
            last = self.last_fired.get(a.key)
            if last is not None and a.ts - last < self.cooldown_s:
                continue
            self.last_fired[a.key] = a.ts
            self.totals[a.kind] += 1
            self.recent.append(a)
            self.latest[a.kind] = a
            fresh.append(a)
        if len(self.last_fired) > 10_000:  # bounded: forget the oldest keys
            for key, _ in sorted(self.last_fired.items(), key=lambda kv: kv[1])[:5_000]:
                del self.last_fired[key]
        return fresh
