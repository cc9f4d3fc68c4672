"""Labels that arrive before their prediction: a bounded waiting room with a time-to-live (pure).

Served rows reach the monitor asynchronously (a per-replica queue, :mod:`raymlops.serve.handoff`),
so a label posted right after its answer usually arrives *before* its row. Such a label waits
here, by row key (the request id, or ``<request id>/<row>``), until the row arrives and the
performance tracker joins them, or until its time-to-live ends.

Every label received ends as exactly one of

==========  ====================================================================================
matched     joined with its served prediction (at once, or when the row arrived later)
waiting     held here, its row not yet at the monitor (the only state that is not final)
expired     its time-to-live ended, or the full store pushed it out (oldest first), before its
            row arrived: an id never served, or a row the monitor never got (sampled out,
            dropped by the hand-off, served by a challenger), got too late, or already forgot
            (the prediction store keeps the newest ``label_store_size`` rows)
unknown     known at once never to join: a second label for a row already labelled or already
            waiting (the first label counts), or a single label for a request of several rows
==========  ====================================================================================

so ``received == matched + waiting + expired + unknown`` at every moment (:class:`LabelCounts`).
The clock is a constructor argument (tests pass a fake one); methods also take ``now``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from raymlops.exceptions import ValidationError

__all__ = ["OUTCOMES", "EarlyLabels", "LabelCounts", "RecentIds", "RowKeys", "put_newest", "row_keys"]

OUTCOMES = ("matched", "waiting", "expired", "unknown")



@dataclass
class RowKeys:
    """The label-store keys of a batch's rows (:func:`row_keys`)."""

    keys: list[str]
    #: request id -> its rows, for the last request of each id in the batch (None: every request
    #: of the batch is one row with an id of its own, and ``keys`` are those ids)
    requests: dict[str, int] | None = None
    #: which rows to keep for their labels (None: all): where a request id names several requests of
    #: the batch, only the last one's
    keep: npt.NDArray[np.bool_] | None = None
    #: the first row of each request (None: every row is a request)
    starts: npt.NDArray[np.int64] | None = None

    def kept(self, values: list[Any]) -> list[Any]:
        """``values`` (one per row of the batch) of the rows kept for their labels (:attr:`keep`):
        ``values`` itself when every row is."""
        return values if self.keep is None else [values[i] for i in np.flatnonzero(self.keep).tolist()]


def row_keys(row_ids: Sequence[str], sizes: Any = None) -> RowKeys:
    """Keys of a batch's rows given each row's request id and each request's rows (``sizes``, as
    a replica sends them; without them a request is a run of equal consecutive ids): the id for a
    single-row request, ``"<id>/<k>"`` for row ``k`` of a multi-row one. An id that names several
    requests (a client that reuses its ``X-Request-Id``, a retry) keys its last request: two
    single-row requests with one id are two requests, not one of two rows."""
    n = len(row_ids)
    counts: npt.NDArray[np.int64]
    if sizes is None:
        if len(set(row_ids)) == n:
            return RowKeys(list(row_ids))
        starts = [i for i in range(n) if i == 0 or row_ids[i] != row_ids[i - 1]]
        counts = np.asarray(np.diff(starts + [n]), dtype=np.int64)
    else:
        counts = np.asarray(sizes, dtype=np.int64).ravel()
        if int(counts.sum()) != n or (counts < 1).any():
            raise ValidationError(f"request_sizes must be positive and sum to the batch's {n} rows, "
                                  f"found {counts.size} sizes summing to {int(counts.sum())}")
        if counts.size == n and len(set(row_ids)) == n:
            return RowKeys(list(row_ids))
        starts = (np.cumsum(counts) - counts).tolist()
    ids = [str(row_ids[i]) for i in starts]
    last = {rid: i for i, rid in enumerate(ids)}
    keep = np.ones(n, dtype=bool) if len(last) < len(ids) else None
    keys: list[str] = []
    for i, (rid, start, rows) in enumerate(zip(ids, starts, counts.tolist(), strict=True)):
        keys.extend([rid] if rows == 1 else [f"{rid}/{k}" for k in range(rows)])
        if keep is not None and last[rid] != i:
            keep[start:start + rows] = False
    return RowKeys(keys, {rid: int(counts[i]) for rid, i in last.items()}, keep, np.asarray(starts, dtype=np.int64))


def put_newest(items: dict[str, Any], batch: dict[str, Any], size: int) -> tuple[int, int]:
    """Add ``batch`` to the insertion-ordered ``items`` (a key seen again becomes the newest, not
    kept in place) with one ``dict.update``, then drop the oldest beyond ``size``: ``(dropped, how
    many keys of the batch it held already)``. The label stores' write, run for every served row."""
    held = 0
    if items and not items.keys().isdisjoint(batch):
        again = items.keys() & batch.keys()
        held = len(again)
        for key in again:
            del items[key]
    items.update(batch)
    over = len(items) - size
    if over > 0:
        for key in list(itertools.islice(iter(items), over)):
            del items[key]
    return max(over, 0), held


@dataclass
class LabelCounts:
    """Every label received, by final outcome (``waiting`` is the store's size, not counted here)."""

    received: int = 0
    matched: int = 0
    matched_late: int = 0  # of matched: joined when the row arrived after the label
    expired: int = 0
    pushed_out: int = 0  # of expired: by the store's bound, before the time-to-live ended
    unknown: int = 0

    def to_dict(self, waiting: int) -> dict[str, int]:
        return asdict(self) | {"waiting": int(waiting)}

    def merged(self, others: Iterable[LabelCounts]) -> LabelCounts:
        out = LabelCounts(**asdict(self))
        for o in others:
            for k, v in asdict(o).items():
                setattr(out, k, getattr(out, k) + v)
        return out


class RecentIds:
    """The last ``size`` ids added (a bounded, insertion-ordered set)."""

    def __init__(self, size: int) -> None:
        self.size = max(int(size), 1)
        self.ids: dict[str, None] = {}

    def add(self, rid: str) -> None:
        self.ids[rid] = None
        if len(self.ids) > self.size:
            del self.ids[next(iter(self.ids))]

    def __contains__(self, rid: object) -> bool:
        return rid in self.ids

    def __len__(self) -> int:
        return len(self.ids)


class EarlyLabels:
    """Row key -> (label, deadline) for labels whose row has not arrived, at most ``size`` of
    them, each for at most ``ttl_s`` seconds of ``clock``. Arrival order is deadline order (one
    time-to-live for all), so expiry pops from the front of an insertion-ordered dict."""

    def __init__(self, size: int, ttl_s: float, clock: Callable[[], float] = time.time) -> None:
        if int(size) < 1:
            raise ValueError(f"size must be >= 1, found {size}")
        if not float(ttl_s) > 0.0:
            raise ValueError(f"ttl_s must be > 0, found {ttl_s}")
        self.size = int(size)
        self.ttl_s = float(ttl_s)
        self.clock = clock
        self.items: dict[str, tuple[Any, float]] = {}
        self.expired = 0
        self.pushed_out = 0

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, rid: object) -> bool:
        return rid in self.items

    def _now(self, now: float | None) -> float:
        return self.clock() if now is None else float(now)

    def add(self, rid: str, label: Any, now: float | None = None) -> bool:
        """Hold ``label`` for ``rid``; False (and nothing changes) when one already waits for it.
        When the store is full the oldest waiting label is pushed out (counted as expired)."""
        if rid in self.items:
            return False
        self.items[rid] = (label, self._now(now) + self.ttl_s)
        over = len(self.items) - self.size
        if over > 0:
            for old in list(itertools.islice(iter(self.items), over)):
                del self.items[old]
            self.expired += over
            self.pushed_out += over
        return True

    def expire(self, now: float | None = None) -> int:
        """Drop the labels whose time-to-live has ended; returns how many."""
        items = self.items
        if not items:
            return 0
        t = self._now(now)
        gone = 0
        for _, deadline in items.values():
            if deadline > t:
                break
            gone += 1
        if gone:
            for rid in list(itertools.islice(iter(items), gone)):
                del items[rid]
            self.expired += gone
        return gone

    def take(self, row_keys: Iterable[str]) -> list[tuple[str, Any]]:
        """``(key, label)`` of the waiting labels among ``row_keys`` (rows that just arrived),
        removed from the store; iterates the smaller of the two."""
        items = self.items
        if not items:
            return []
        keys = row_keys if isinstance(row_keys, (set, dict)) else set(row_keys)
        hits = [k for k in items if k in keys] if len(items) < len(keys) else [k for k in keys if k in items]
        return [(k, items.pop(k)[0]) for k in hits]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("clock", None)  # a checkpoint holds data, not the (maybe fake) clock
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.clock = time.time
