"""Bucket lookup for every numeric column of a batch at once: a few whole-matrix numpy passes.

Same answers as ``searchsorted(edges + [nan], x, side="right")`` per column (the missing bucket
for NaN), offset to the column's first global bucket. Each column has a uniform grid of
``cells`` cells over its reference range; the cell ``floor(x * scale + 1 - lo * scale)``, clipped
to ``[0, cells + 1]``, is monotone in ``x`` (each step is), so an edge in a lower cell is ``<= x`` and one in a
higher cell is ``> x``. Per cell the grid keeps the number of edges in lower cells and, when
the cell holds exactly one edge, that edge, so the bucket is ``below[cell] + (x >= edge[cell])``
(NaN stands for "no edge" and never compares true). Only values in a cell holding two or more
edges fall back to a binary search. The grids of all columns are stacked in one flat table, so
a batch of ``k`` columns costs the same few vectorised passes over a ``(k, rows)`` matrix,
whatever ``k``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["GridSet"]

#: values per block of :meth:`GridSet.lookup` (a block's scratch arrays, about 8 bytes each, stay in the
#: L2 cache); a batch of 10,000 rows then takes 6 columns per block, not one: 25 % fewer CPU-seconds
_CHUNK = 65_536


class GridSet:
    """Stacked lookup grids of numeric columns (``edges`` per column, global ``offsets``)."""

    __slots__ = ("any_multi", "below", "cells", "edge", "edges_nan", "first", "last", "missing", "multi", "offsets",
                 "scale", "shift", "top")

    def __init__(self, edges: Sequence[npt.NDArray[np.float64]], offsets: Sequence[int], cells: int = 4096) -> None:
        k = len(edges)
        self.cells = cells
        self.top = cells + 1
        span = self.top + 1  # cell indices 0 … top
        self.scale = np.empty((k, 1), dtype=np.float64)
        self.shift = np.empty((k, 1), dtype=np.float64)
        self.first = (np.arange(k, dtype=np.float64) * span)[:, None]  # each column's cell 0 in the flat table
        self.last = self.first + self.top
        self.below = np.empty(k * span, dtype=np.int64)  # global bucket of a value below the cell's edges
        self.edge = np.full(k * span, np.nan)  # the cell's one edge; NaN: none, or several
        self.multi = np.zeros(k * span, dtype=bool)  # several edges: binary search
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.missing = (self.offsets + np.array([e.size + 1 for e in edges], dtype=np.int64))[:, None]
        self.edges_nan = [np.append(e, np.nan) for e in edges]
        cell_ids = np.arange(span)
        for i, e in enumerate(edges):
            lo = float(e[0])
            width = float(e[-1]) - lo
            scale = cells / width if width > 0 else math.inf
            # a grid needs a finite scale and a shift small enough to keep the cells apart in doubles
            usable = math.isfinite(scale) and abs(lo * scale) < 2.0**40
            scale = scale if usable else 1.0
            lo = lo if usable else 0.0
            self.scale[i, 0], self.shift[i, 0] = scale, i * span + 1.0 - lo * scale
            cell_of_edge = self._cells(e[None, :], slice(i, i + 1))[0] - i * span
            first = np.searchsorted(cell_of_edge, cell_ids, side="left")
            count = np.searchsorted(cell_of_edge, cell_ids, side="right") - first
            block = slice(i * span, (i + 1) * span)
            self.below[block] = first + self.offsets[i]
            one = count == 1
            self.edge[block][one] = e[first[one]]
            # no usable grid (a range too narrow for its magnitude): every value takes the binary search
            self.multi[block] = count >= 2 if usable else True
        self.any_multi = bool(self.multi.any())

    def _cells(self, x: npt.NDArray[np.float64], rows: slice = slice(None)) -> npt.NDArray[np.int32]:
        """Flat cell of every value: ``x * scale + shift`` clipped to the column's cells (monotone
        in ``x``; truncation is the floor, as the clipped value is >= 0). NaN gives garbage,
        which ``mode="clip"`` keeps inside the tables and :meth:`lookup` then overwrites."""
        with np.errstate(over="ignore", invalid="ignore"):  # overflow to +-inf is clipped: still monotone
            t = np.multiply(x, self.scale[rows])
            t += self.shift[rows]
            np.clip(t, self.first[rows], self.last[rows], out=t)
            return t.astype(np.int32)

    def lookup(self, x: npt.NDArray[np.float64], out: npt.NDArray[np.int64]) -> None:
        """Global bucket of every value of ``x`` (``(columns, rows)`` float64) into ``out``.

        A few columns at a time (about ``_CHUNK`` values): each pass then runs over arrays, and
        gathers from table blocks, that stay in the CPU's cache, and the scratch arrays are
        reused from one block to the next."""
        k, n = x.shape
        if not k or not n:
            return
        step = max(1, min(k, _CHUNK // n))
        size = step * n
        t_buf = np.empty(size, dtype=np.float64)
        cell_buf = np.empty(size, dtype=np.intp)  # np.take's own index type: no conversion copy
        ge_buf = np.empty(size, dtype=bool)
        with np.errstate(over="ignore", invalid="ignore"):
            for lo in range(0, k, step):
                hi = min(k, lo + step)
                rows = slice(lo, hi)
                m = (hi - lo) * n
                xs, o = x[rows], out[rows]
                t = t_buf[:m].reshape(hi - lo, n)
                cells = cell_buf[:m].reshape(hi - lo, n)
                ge = ge_buf[:m].reshape(hi - lo, n)
                # cell of every value: x * scale + shift clipped to the column's cells (monotone in x;
                # truncation is the floor, as the clipped value is >= 0). NaN gives garbage, which
                # mode="clip" keeps inside the tables and the NaN pass below overwrites.
                np.multiply(xs, self.scale[rows], out=t)
                t += self.shift[rows]
                np.clip(t, self.first[rows], self.last[rows], out=t)
                cells[...] = t  # float -> intp, truncating
                np.take(self.below, cells, out=o, mode="clip")
                np.take(self.edge, cells, out=t, mode="clip")
                np.greater_equal(xs, t, out=ge)
                np.add(o, ge.view(np.uint8), out=o)  # a bool operand takes numpy's slow casting loop: 5x slower
                if self.any_multi:
                    self._multi(xs, o, cells, lo)
        nan = np.isnan(x)
        if nan.any():
            np.copyto(out, self.missing, where=nan)

    def _multi(self, x: npt.NDArray[np.float64], out: npt.NDArray[np.int64], cells: npt.NDArray[np.intp],
               first_row: int) -> None:
        """Binary search for the values in cells holding two or more edges (NaN excluded: the
        NaN pass overwrites those)."""
        multi = np.take(self.multi, cells, mode="clip")
        multi &= ~np.isnan(x)
        hit = np.flatnonzero(multi)
        if not hit.size:
            return
        n = x.shape[1]
        rows = hit // n
        for r in np.unique(rows).tolist():
            at = hit[rows == r]
            g = first_row + r
            out.flat[at] = np.searchsorted(self.edges_nan[g], x.flat[at], side="right") + self.offsets[g]
