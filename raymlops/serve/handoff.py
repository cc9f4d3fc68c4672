"""Handing served rows to the monitor without ever blocking a response (pure asyncio, no Ray).

Each replica owns one :class:`MonitorHandoff`. The request path only calls :meth:`offer`: a
sampling draw and appends of the request's arrays to the column buffer of its model version,
role and monitor shard (:class:`ColumnBuffer`), bounded in rows. A background task
(:meth:`run`) wakes every ``flush_interval_s`` (or as soon as ``flush_rows`` rows wait), takes
every buffer and awaits one ``send`` per buffer, so at most one hand-off per replica is in
flight. What is sent is columnar: one 2-D array of features and one array per column
(predictions, latency, status, and each row's request id as one fixed-width unicode array, with
each request's rows; the monitor keys the rows of a multi-row request ``<request id>/<row>``,
:func:`raymlops.monitor.labels.row_keys`, and an id two requests share names the later one), never
a Python object per row, so Ray ships it as a few buffers.

Each batch carries the *role* its rows were served in (``champion``; ``challenger``: a canary
answer; ``shadow``: a challenger's copy never returned) and the traffic table's ``epoch``, so
the monitor follows promotions and rollbacks instead of guessing the champion from versions.
With ``shards`` > 1 the monitor is several actors; a request goes to shard
:func:`shard_of` (its request id), so the labels posted later for that id reach the same shard.

When the monitor is slower than the traffic, the queue fills and further rows are dropped and
counted, never waited for.

``budget`` bounds the monitor's share of the machine, as a token bucket of monitor time: it
fills at ``budget`` seconds per second up to ``budget * budget_window_s``, each hand-off takes
the time it kept the monitor busy, and a hand-off waits while the bucket is empty. Bursts go
through at once; sustained, the monitor works on this replica's rows at most ``budget`` of the
time, so on a small machine it cannot take CPU from serving beyond that share. Rows that arrive
faster are dropped (and counted) instead. ``budget=1`` sends as fast as the monitor takes them.
The default (``serve.monitor_budget``) is a safety valve above what the monitor needs at a
replica's saturated throughput, so at that rate every row reaches the monitor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)


@dataclass
class Served:
    """One answered request, as the monitor sees it."""

    X: np.ndarray
    predictions: np.ndarray
    version: str
    latency_ms: float
    status: int
    request_id: str
    role: str = "champion"  # champion | challenger (a canary answer) | shadow (a challenger's copy)
    epoch: int = 0  # of the traffic table that served it
    scores: np.ndarray | None = None  # binary classifiers: probability of ``score_class`` per row
    score_class: Any = None  # the class ``scores`` is the probability of (the model's classes_[1])


@dataclass
class HandoffCounts:
    offered: int = 0  # rows of answered requests
    sampled_out: int = 0
    queued: int = 0
    sent: int = 0
    dropped: int = 0  # queue full
    failed: int = 0  # the send raised
    by_outcome_since_drain: dict[str, int] = field(default_factory=dict)

    def add(self, outcome: str, rows: int) -> None:
        setattr(self, outcome, getattr(self, outcome) + rows)
        self.by_outcome_since_drain[outcome] = self.by_outcome_since_drain.get(outcome, 0) + rows

    def drain(self) -> dict[str, int]:
        out, self.by_outcome_since_drain = self.by_outcome_since_drain, {}
        return out


def row_ids(request_id: str, rows: int) -> list[str]:
    """The monitor's per-row keys of one request: the request id for a one-row request,
    ``<request id>/<row>`` otherwise (what labels name)."""
    return [request_id] if rows == 1 else [f"{request_id}/{i}" for i in range(rows)]


def shard_of(request_id: str, shards: int) -> int:
    """The monitor shard of a request (or of a row key ``<request id>/<row>``): a CRC-32 of the
    request id, the same in every process (Python's ``hash`` is salted per process)."""
    if shards <= 1:
        return 0
    rid = request_id.split("/", 1)[0]
    return zlib.crc32(rid.encode("utf-8", "surrogatepass")) % shards


def row_request_ids(request_ids: list[str], sizes: npt.NDArray[np.int64]) -> npt.NDArray[np.str_]:
    """Each row's request id, as one unicode array (the monitor turns the repeated id of a
    multi-row request into :func:`row_ids`; building those strings here cost 1-2 us a row)."""
    ids = np.asarray(request_ids, dtype=np.str_)
    return ids if ids.size == 0 or bool((sizes == 1).all()) else np.repeat(ids, sizes)


class ColumnBuffer:
    """The queued requests of one (version, role, shard): per column a list of arrays (one
    append per request), made into one array per column by :meth:`payload`."""

    __slots__ = ("X", "epoch", "ids", "latency", "predictions", "role", "rows", "score_class", "scores", "shard",
                 "sizes", "status", "version")

    def __init__(self, version: str, role: str, shard: int) -> None:
        self.version, self.role, self.shard = version, role, shard
        self.X: list[np.ndarray] = []
        self.predictions: list[np.ndarray] = []
        self.sizes: list[int] = []
        self.latency: list[float] = []
        self.status: list[int] = []
        self.ids: list[str] = []
        self.scores: list[np.ndarray] | None = []  # None once a request came without scores
        self.score_class: Any = None
        self.epoch = 0
        self.rows = 0

    def add(self, item: Served, n: int) -> None:
        self.X.append(item.X)
        self.predictions.append(np.asarray(item.predictions))
        self.sizes.append(n)
        self.latency.append(item.latency_ms)
        self.status.append(item.status)
        self.ids.append(item.request_id)
        if item.scores is None or (self.scores and item.score_class != self.score_class):
            self.scores = None
        elif self.scores is not None:
            self.scores.append(np.asarray(item.scores, dtype=np.float64))
            self.score_class = item.score_class
        self.epoch = max(self.epoch, item.epoch)
        self.rows += n

    def payload(self) -> dict[str, Any]:
        """The columns: features (rows x features), predictions, and per row its latency,
        status and request id."""
        sizes = np.asarray(self.sizes, dtype=np.int64)
        one = len(self.X) == 1
        return {
            "X": self.X[0] if one else np.concatenate(self.X),
            "predictions": self.predictions[0] if one else np.concatenate(self.predictions),
            "version": self.version,
            "latency_ms": np.repeat(np.asarray(self.latency, dtype=np.float64), sizes),
            "status": np.repeat(np.asarray(self.status, dtype=np.int16), sizes),
            "request_ids": row_request_ids(self.ids, sizes),
            "request_sizes": sizes,
            "scores": None if not self.scores else (self.scores[0] if one else np.concatenate(self.scores)),
            "score_class": self.score_class,
            "role": self.role,
            "epoch": self.epoch,
            "shard": self.shard,
        }


def batch_payload(items: list[Served], shard: int = 0) -> dict[str, Any]:
    """Rows of one version, role and shard, as columns (see :meth:`ColumnBuffer.payload`)."""
    buf = ColumnBuffer(items[0].version, items[0].role, shard)
    for it in items:
        buf.add(it, len(it.X))
    return buf.payload()


class MonitorHandoff:
    """Bounded, sampled, batched and asynchronous: see the module docstring."""

    def __init__(
        self,
        send: Callable[[dict[str, Any]], Awaitable[Any]],
        *,
        max_rows: int = 10_000,
        flush_rows: int = 2_048,
        flush_interval_s: float = 0.25,
        sample_rate: float = 1.0,
        budget: float = 1.0,
        budget_window_s: float = 10.0,
        shards: int = 1,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be within [0, 1], found {sample_rate}")
        if not 0.0 < budget <= 1.0:
            raise ValueError(f"budget must be within (0, 1], found {budget}")
        self.budget = float(budget)
        self.capacity_s = self.budget * float(budget_window_s)
        self.tokens_s = self.capacity_s
        self.clock = clock
        self._refilled = clock()
        self.busy_s = 0.0  # time spent in sends, in total
        self.send = send
        self.max_rows = int(max_rows)
        self.flush_rows = max(1, min(int(flush_rows), self.max_rows))
        self.flush_interval_s = float(flush_interval_s)
        self.sample_rate = float(sample_rate)
        if int(shards) < 1:
            raise ValueError(f"shards must be >= 1, found {shards}")
        self.shards = int(shards)
        self.rng = rng or random.Random()
        self.counts = HandoffCounts()
        self._buffers: dict[tuple[str, str, int], ColumnBuffer] = {}
        self._queued_rows = 0
        self._wake: asyncio.Event | None = None
        self._closed = False

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    def offer(self, item: Served) -> bool:
        """Queue ``item`` for the monitor unless it is sampled out or the queue is full (O(1))."""
        n = len(item.X)
        self.counts.add("offered", n)
        if self.sample_rate < 1.0 and self.rng.random() >= self.sample_rate:
            self.counts.add("sampled_out", n)
            return False
        if self._closed or self._queued_rows + n > self.max_rows:
            self.counts.add("dropped", n)
            return False
        shard = shard_of(item.request_id, self.shards) if self.shards > 1 else 0
        key = (item.version, item.role, shard)
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = ColumnBuffer(item.version, item.role, shard)
        buf.add(item, n)
        self._queued_rows += n
        self.counts.add("queued", n)
        if self._queued_rows >= self.flush_rows and self._wake is not None:
            self._wake.set()
        return True

    async def flush(self) -> int:
        """Send everything queued now; returns the rows sent."""
        if not self._buffers:
            return 0
        buffers, self._buffers, self._queued_rows = self._buffers, {}, 0
        sent = 0
        for buf in buffers.values():
            rows = buf.rows
            try:
                await self.send(buf.payload())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the monitor is gone or failed: count it, keep serving
                self.counts.add("failed", rows)
                logger.warning("monitor hand-off of %d rows failed: %s", rows, exc)
                continue
            self.counts.add("sent", rows)
            sent += rows
        return sent

    def spend(self, busy_s: float) -> float:
        """Take ``busy_s`` of monitor time from the bucket; the seconds to wait before the next
        hand-off (0 while the bucket holds time)."""
        now = self.clock()
        self.tokens_s = min(self.capacity_s, self.tokens_s + (now - self._refilled) * self.budget)
        self._refilled = now
        if self.budget >= 1.0:
            return 0.0
        self.tokens_s -= busy_s
        return max(0.0, -self.tokens_s / self.budget)

    async def run(self) -> None:
        """The background flusher (one per replica); stops when cancelled or :meth:`close` d."""
        self._wake = asyncio.Event()
        while not self._closed:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.flush_interval_s)
            self._wake.clear()
            t0 = self.clock()
            if not await self.flush():
                continue
            busy = self.clock() - t0
            self.busy_s += busy
            pause = self.spend(busy) - self.flush_interval_s
            if pause > 0 and not self._closed:
                await asyncio.sleep(pause)

    async def close(self, timeout_s: float = 2.0) -> None:
        """Stop taking rows and send what is queued (within ``timeout_s``)."""
        self._closed = True
        if self._wake is not None:
            self._wake.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.flush(), timeout=timeout_s)

