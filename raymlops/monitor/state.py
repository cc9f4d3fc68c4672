"""Streaming, mergeable monitor state on a :class:`MonitorReference`'s buckets.

Per slice and bucket of every column, an integer count; per slice and numeric column, the
count, sum and sum of squares of the finite values. Memory is
O(columns x buckets x slices), whatever the number of rows. Counts are integers and the sums
are kept exactly (as integer multiples of 2**-1074, the smallest double), so merging two states
gives exactly the state of one that saw every batch, in any order. An update is a few
vectorised numpy passes over the batch (bucketing, one ``bincount`` for every count, three for
the moments).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from raymlops.exceptions import ValidationError
from raymlops.monitor.reference import MonitorReference

__all__ = ["ExactSums", "Moments", "StreamState", "add_parts", "moment_tables"]

_SHIFT = 1074  # every finite double is an integer multiple of 2**-1074
_SCALE = 1 << _SHIFT


def _double(exact: int) -> float:
    """The exact sum ``exact * 2**-1074`` as the nearest double, +-inf past the largest (two values
    near 1e308 add up past it: Python's int / int raises OverflowError there, and a served row of
    1e308 in two windows broke every later `monitor status` and metrics scrape)."""
    try:
        return exact / _SCALE
    except OverflowError:
        return math.inf if exact > 0 else -math.inf


def _exact(x: float) -> int:
    num, den = x.as_integer_ratio()
    return num << (_SHIFT - (den.bit_length() - 1))


class ExactSums:
    """A vector of exact sums of doubles: order of additions and merges does not matter.

    Non-finite additions (an overflowing sum of squares) go to a plain float ``special`` part.
    The first addition to empty sums is kept as its doubles (``_pending``) and only turned into
    exact integers when a second addition, a merge or a comparison needs them: a window that
    gets one batch (the usual case) then never pays for the conversion, and its sums read back
    as those doubles, which is exactly what the integers would give.
    """

    __slots__ = ("_pending", "ints", "special")

    def __init__(self, size: int) -> None:
        self.ints = [0] * size
        self.special = [0.0] * size
        self._pending: npt.NDArray[np.float64] | None = None

    def __getstate__(self) -> tuple[None, dict[str, Any]]:
        """Pickled as the exact integers and the special part (as before ``_pending`` existed)."""
        self._settle()
        return None, {"ints": self.ints, "special": self.special}

    def __setstate__(self, state: tuple[Any, dict[str, Any]]) -> None:
        slots = state[1]
        self.ints, self.special, self._pending = slots["ints"], slots["special"], None

    def add(self, values: npt.NDArray[np.float64]) -> None:
        v = np.asarray(values, dtype=np.float64).ravel()
        if (self._pending is None and bool(np.isfinite(v).all()) and not any(self.ints)
                and not any(self.special)):
            self._pending = v + 0.0  # a copy; -0.0 becomes 0.0, as a zero is never added
            return
        self._settle()
        for i, x in enumerate(v.tolist()):
            if x == 0.0:
                continue
            if math.isfinite(x):
                self.ints[i] += _exact(x)
            else:
                self.special[i] += x

    def _settle(self) -> None:
        """Turn the kept first addition into the exact integers."""
        pending = self._pending
        if pending is None:
            return
        self._pending = None
        ints = self.ints
        for i, x in enumerate(pending.tolist()):
            if x != 0.0:
                ints[i] += _exact(x)

    def floats(self) -> npt.NDArray[np.float64] | None:
        """The sums as doubles when they are exactly one addition's finite doubles, else None."""
        return self._pending

    def merged(self, other: ExactSums) -> ExactSums:
        self._settle()
        other._settle()
        out = ExactSums(0)
        out.ints = [a + b for a, b in zip(self.ints, other.ints, strict=True)]
        out.special = [a + b for a, b in zip(self.special, other.special, strict=True)]
        return out

    def values(self) -> npt.NDArray[np.float64]:
        if self._pending is not None:
            return self._pending.copy()
        return np.array([_double(i) + s for i, s in zip(self.ints, self.special, strict=True)], dtype=np.float64)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExactSums):
            return NotImplemented
        self._settle()
        other._settle()
        return self.ints == other.ints and self.special == other.special

    __hash__ = None  # type: ignore[assignment]


class Moments:
    """Count, mean and population std of finite values (NaN when there are none)."""

    __slots__ = ("count", "mean", "std")

    def __init__(self, count: int, total: float, total_sq: float) -> None:
        self.count = int(count)
        self.mean = total / count if count else math.nan
        # the square as a product (correctly rounded, as numpy's in moment_tables); a mean past 1e150
        # counts as squaring to inf: std is then NaN
        mean_sq = self.mean * self.mean if count and abs(self.mean) < 1e150 else math.inf
        self.std = math.sqrt(max(total_sq / count - mean_sq, 0.0)) if count else math.nan


class StreamState:
    """Counts and exact moments of current data on ``reference``'s buckets, per slice."""

    def __init__(self, reference: MonitorReference) -> None:
        if not isinstance(reference, MonitorReference):
            raise ValidationError(f"reference must be a MonitorReference, got {type(reference).__name__}")
        self.reference = reference
        self.counts = np.zeros((reference.n_slices, reference.n_buckets), dtype=np.int64)
        self.numeric = reference.numeric_rows  # read-only, shared by every state of the reference
        cells = reference.n_slices * self.numeric.size
        self.finite = np.zeros(cells, dtype=np.int64)
        self.sums = ExactSums(cells)
        self.sums_sq = ExactSums(cells)

    # -- reading -----------------------------------------------------------------------------
    @property
    def rows(self) -> int:
        """Rows seen (every row lands in exactly one bucket of the first column)."""
        return int(self.counts[:, : self.reference.sizes[0]].sum())

    def slice_rows(self) -> npt.NDArray[np.int64]:
        return self.counts[:, : self.reference.sizes[0]].sum(axis=1)

    def column_counts(self, name: str, slice_index: int | None = None) -> npt.NDArray[np.int64]:
        """Current counts on ``name``'s buckets, for one slice or (None) all rows."""
        ref = self.reference
        i = ref.index(name)
        block = self.counts[:, ref.offsets[i]: ref.offsets[i] + ref.sizes[i]]
        return (block.sum(axis=0) if slice_index is None else block[slice_index]).copy()

    def moments(self, name: str, slice_index: int | None = None) -> Moments:
        ref = self.reference
        j = int(np.searchsorted(self.numeric, ref.index(name)))
        if j >= self.numeric.size or self.numeric[j] != ref.index(name):
            raise ValidationError(f"column {name!r} is not numeric; it has no moments")
        k = self.numeric.size
        cells = [s * k + j for s in range(ref.n_slices)] if slice_index is None else [slice_index * k + j]
        self.sums._settle()
        self.sums_sq._settle()
        total = _double(sum(self.sums.ints[c] for c in cells)) + sum(self.sums.special[c] for c in cells)
        total_sq = _double(sum(self.sums_sq.ints[c] for c in cells)) + sum(self.sums_sq.special[c] for c in cells)
        return Moments(int(self.finite[cells].sum()), total, total_sq)

    def moment_table(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Count, mean and std of every numeric column (in ``self.numeric`` order) for all rows
        (row 0) and each slice (row ``1 + s``), as ``(1 + n_slices, k)`` arrays: the same values
        as :meth:`moments` gives one at a time, for the window verdicts to read in one call."""
        count, mean, std = moment_tables([self])
        return count[0], mean[0], std[0]

    # -- writing -----------------------------------------------------------------------------
    def update(self, columns: Mapping[str, Any]) -> int:
        """Add a batch of columns (see :meth:`MonitorReference.bucketize`); returns its rows."""
        slice_idx, idx, n, values = self.reference.bucketize_batch(columns)
        if n:
            self.add_bucketed(slice_idx, idx, columns, values)
        return n

    def add_bucketed(self, slice_idx: npt.NDArray[np.int64], idx: npt.NDArray[np.int64],
                     columns: Mapping[str, Any], numeric: npt.NDArray[np.float64] | None = None) -> None:
        """Add a batch already bucketed by :meth:`MonitorReference.bucketize`; ``numeric`` is the
        numeric columns' values as :meth:`MonitorReference.bucketize_batch` returns them (read
        from ``columns`` when None)."""
        ref = self.reference
        total = ref.n_buckets
        n_slices = ref.n_slices
        if n_slices == 1:
            self.counts[0] += np.bincount(idx.ravel(), minlength=total)
        else:
            flat = (idx + (slice_idx * total)[None, :]).ravel()
            self.counts += np.bincount(flat, minlength=n_slices * total).reshape(n_slices, total)
        if not self.numeric.size:
            return
        if numeric is None:
            names = [ref.columns[i].name for i in self.numeric.tolist()]
            x = np.stack([np.asarray(columns[name], dtype=np.float64) for name in names])  # (k, n)
        else:
            x = np.ascontiguousarray(numeric, dtype=np.float64)
        self._add_moments(slice_idx, x)

    def _add_moments(self, slice_idx: npt.NDArray[np.int64], x: npt.NDArray[np.float64],
                     all_finite: bool = False) -> None:
        """Add the finite counts and sums of ``x`` (``(numeric columns, rows)``, C-contiguous);
        ``all_finite``: the caller knows every value is finite (else it is checked here)."""
        k, n_slices = self.numeric.size, self.reference.n_slices
        ok = None if all_finite else np.isfinite(x)
        if ok is not None and bool(ok.all()):
            ok = None  # every value is finite
        x0 = x if ok is None else np.where(ok, x, 0.0)  # equal values either way: the sums do not change
        if n_slices == 1:
            finite = np.full(k, x.shape[1], dtype=np.int64) if ok is None else np.count_nonzero(ok, axis=1)
            sums, sums_sq = x0.sum(axis=1), np.einsum("ij,ij->i", x0, x0)
        else:  # (k, n) @ (n, slices) one-hot: per-slice sums in one BLAS call each
            onehot = np.take(_identity(n_slices), slice_idx, axis=0)  # row i: 1.0 at column slice_idx[i]
            if ok is None:  # every value counts: each column's count per slice is the slice's rows
                finite = np.repeat(np.bincount(slice_idx, minlength=n_slices), k)
            else:
                finite = np.rint(ok.astype(np.float64) @ onehot).astype(np.int64).T.ravel()
            sums, sums_sq = (x0 @ onehot).T.ravel(), ((x0 * x0) @ onehot).T.ravel()
        self.finite += finite
        self.sums.add(np.asarray(sums, dtype=np.float64))
        self.sums_sq.add(np.asarray(sums_sq, dtype=np.float64))

    def _add_run(self, states: list[StreamState], slice_idx: npt.NDArray[np.int64], idx: npt.NDArray[np.int64],
                 numeric: npt.NDArray[np.float64], start: int, length: int) -> None:
        """Add ``len(states)`` consecutive parts of ``length`` rows from ``start``, one per state,
        as :meth:`add_bucketed` of each part would: one ``bincount`` for all the parts' counts and,
        without slices, the parts' sums as rows of one ``(columns, parts, length)`` view (each sum
        runs over the same values in the same order as the part's own)."""
        ref = self.reference
        parts, total, n_slices = len(states), ref.n_buckets, ref.n_slices
        stop = start + parts * length
        owner = np.repeat(np.arange(parts, dtype=np.int64), length)
        if n_slices == 1:
            flat = idx[:, start:stop] + (owner * total)[None, :]
        else:
            flat = idx[:, start:stop] + ((owner * n_slices + slice_idx[start:stop]) * total)[None, :]
        counts = np.bincount(flat.ravel(), minlength=parts * n_slices * total).reshape(parts, n_slices, total)
        for state, c in zip(states, counts, strict=True):
            state.counts += c
        k = self.numeric.size
        if not k:
            return
        if n_slices > 1:  # the per-slice sums are a BLAS product per part, as add_bucketed computes them
            all_finite = bool(np.isfinite(numeric[:, start:stop]).all())  # then so is every part: checked once
            for p, state in enumerate(states):
                part = slice(start + p * length, start + (p + 1) * length)
                state._add_moments(slice_idx[part], np.ascontiguousarray(numeric[:, part], dtype=np.float64),
                                   all_finite)
            return
        x = numeric[:, start:stop].reshape(k, parts, length)
        ok = np.isfinite(x)
        all_finite = bool(ok.all())
        x0 = x if all_finite else np.where(ok, x, 0.0)
        finite = np.full((k, parts), length, dtype=np.int64) if all_finite else np.count_nonzero(ok, axis=2)
        sums, sums_sq = x0.sum(axis=2), np.einsum("ipj,ipj->ip", x0, x0)
        for p, state in enumerate(states):
            state.finite += finite[:, p]
            state.sums.add(sums[:, p])
            state.sums_sq.add(sums_sq[:, p])

    def merge(self, other: StreamState) -> StreamState:
        """A new state holding both states' rows (exact); neither input changes."""
        if not isinstance(other, StreamState):
            raise ValidationError(f"can only merge another StreamState, got {type(other).__name__}")
        if not self.reference.same_as(other.reference):
            raise ValidationError("cannot merge states built on different references")
        out = StreamState(self.reference)
        out.counts = self.counts + other.counts
        out.finite = self.finite + other.finite
        out.sums = self.sums.merged(other.sums)
        out.sums_sq = self.sums_sq.merged(other.sums_sq)
        return out

    def copy(self) -> StreamState:
        return self.merge(StreamState(self.reference))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, StreamState):
            return NotImplemented
        return (self.reference.same_as(other.reference) and np.array_equal(self.counts, other.counts)
                and np.array_equal(self.finite, other.finite) and self.sums == other.sums
                and self.sums_sq == other.sums_sq)

    __hash__ = None  # type: ignore[assignment]

    def nbytes(self) -> int:
        """Approximate memory held (for the flat-memory checks)."""
        self.sums._settle()
        self.sums_sq._settle()
        ints = sum(i.bit_length() // 8 + 28 for i in self.sums.ints + self.sums_sq.ints)
        return int(self.counts.nbytes + self.finite.nbytes + ints + 16 * len(self.sums.special))


def _sum_table(sums: ExactSums, n_slices: int, k: int) -> npt.NDArray[np.float64]:
    """``(1 + n_slices, k)``: row 0 the exact sum over the slices of each column (all rows),
    row ``1 + s`` slice ``s``'s sums, each the correctly rounded double of the exact sum."""
    out = np.empty((1 + n_slices, k), dtype=np.float64)
    floats = sums.floats()
    if floats is not None:  # one addition of finite doubles: they are the sums
        out[1:] = floats.reshape(n_slices, k)
        if n_slices == 1:
            out[0] = out[1]
        else:  # the exact sum over the slices, correctly rounded, as the integers / 2**1074 give
            out[0] = [math.fsum(col) for col in out[1:].T.tolist()]
        return out
    ints, special = sums.ints, sums.special
    totals = [_double(i) + s for i, s in zip(ints, special, strict=True)]
    out[1:] = np.array(totals, dtype=np.float64).reshape(n_slices, k)
    if n_slices == 1:
        out[0] = out[1]
    else:  # all rows: the exact sums of the slices' cells, as moments(name) adds them
        out[0] = [_double(sum(ints[j::k])) + sum(special[j::k]) for j in range(k)]
    return out


@functools.cache
def _identity(n: int) -> npt.NDArray[np.float64]:
    """The ``n x n`` identity (read-only, shared): its rows are the one-hot rows of the slices."""
    out = np.eye(n, dtype=np.float64)
    out.setflags(write=False)
    return out


def moment_tables(states: list[StreamState]) -> tuple[
        npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """:meth:`StreamState.moment_table` of several states of one reference, as ``(states,
    1 + n_slices, k)`` arrays: the same values, the arithmetic in one set of passes for all."""
    w, k, n_slices = len(states), states[0].numeric.size, states[0].reference.n_slices
    if not k:
        empty = np.empty((w, 1 + n_slices, 0))
        return np.empty((w, 1 + n_slices, 0), dtype=np.int64), empty, empty
    per_slice = np.stack([state.finite for state in states]).reshape(w, n_slices, k)
    count = np.concatenate([per_slice.sum(axis=1, keepdims=True), per_slice], axis=1)
    total = np.stack([_sum_table(state.sums, n_slices, k) for state in states])
    total_sq = np.stack([_sum_table(state.sums_sq, n_slices, k) for state in states])
    has = count > 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        mean = np.where(has, total / count, np.nan)
        mean_sq = np.where(np.abs(mean) < 1e150, mean * mean, np.inf)  # as Moments squares the mean
        std = np.where(has, np.sqrt(np.maximum(total_sq / count - mean_sq, 0.0)), np.nan)
    return count, mean, std


def add_parts(parts: list[tuple[slice, StreamState]], slice_idx: npt.NDArray[np.int64], idx: npt.NDArray[np.int64],
              numeric: npt.NDArray[np.float64]) -> None:
    """Add consecutive parts of one bucketed batch (:meth:`MonitorReference.bucketize_batch`),
    each to its state (states of one reference), as :meth:`StreamState.add_bucketed` of each part
    would, but runs of parts of equal length (a batch's whole windows) in one set of passes."""
    i = 0
    while i < len(parts):
        part, state = parts[i]
        length = part.stop - part.start
        j = i + 1
        while j < len(parts) and parts[j][0].stop - parts[j][0].start == length and parts[j][0].start == \
                parts[j - 1][0].stop:
            j += 1
        if j - i == 1 or length == 0:
            state.add_bucketed(slice_idx[part], idx[:, part], {}, numeric[:, part])
        else:
            state._add_run([s for _, s in parts[i:j]], slice_idx, idx, numeric, part.start, length)
        i = j
