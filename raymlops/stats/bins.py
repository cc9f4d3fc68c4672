"""Quantile binning of numeric columns, with a bucket for missing values.

A column is binned on *interior* edges ``e_0 < e_1 < ... < e_{k-1}``: value ``x`` falls in
bucket ``searchsorted(edges, x, side="right")`` (so a value equal to an edge goes to the bucket
above it, and ``±inf`` go to the outermost buckets), and NaN/None go to one extra "missing"
bucket at the end. :func:`bin_counts` therefore returns ``len(edges) + 2`` counts.

A profile's bins (:mod:`raymlops.stats.profile`) are cut here too: :func:`fine_edges` (up to
:data:`FINE_BINS` per numeric column, for KS, Wasserstein and quantiles), :func:`coarse_edges`
(the fine edges nearest the deciles, for PSI) and :func:`regroup` (fine counts summed into them).
"""

from __future__ import annotations

import hashlib
import math
import numbers

import numpy as np
import numpy.typing as npt

from raymlops.exceptions import ValidationError

__all__ = ["COARSE_BINS", "FINE_BINS", "as_float_array", "bin_counts", "coarse_edges", "count_on", "edges_digest",
           "fine_edges", "quantile_edges", "regroup"]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
#: fine bins per numeric column (KS, Wasserstein, quantiles)
FINE_BINS = 1000
#: coarse bins (PSI), chosen among the fine edges at the exact deciles
COARSE_BINS = 10


def as_float_array(values: npt.ArrayLike, *, name: str = "values") -> npt.NDArray[np.float64]:
    """Return ``values`` as a new 1-D float64 array, with ``None`` turned into NaN.

    Booleans, integers and floats are accepted; strings, dates and other objects raise
    :class:`ValidationError` naming ``name``.
    """
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValidationError(f"{name} must be 1-dimensional, got an array of shape {arr.shape}")
    if arr.dtype.kind in "biuf":
        return arr.astype(np.float64, copy=True)
    if arr.dtype.kind == "O":
        bad = [v for v in arr if v is not None and not isinstance(v, (numbers.Real, np.bool_))]
        if bad:
            raise ValidationError(f"{name} must be numeric, found {type(bad[0]).__name__} value {bad[0]!r}")
        return np.array([np.nan if v is None else float(v) for v in arr], dtype=np.float64)
    raise ValidationError(f"{name} must be numeric, got dtype {arr.dtype}")


def quantile_edges(values: npt.ArrayLike, n_bins: int = 10) -> npt.NDArray[np.float64]:
    """Unique interior quantile edges of the finite values, for up to ``n_bins`` bins.

    The edges are the ``1/n_bins, ..., (n_bins-1)/n_bins`` quantiles of the finite values,
    deduplicated, keeping only those above the minimum (an edge at the minimum would only make
    an empty bucket). A constant column, or one with no finite values, has no interior edges.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, numbers.Integral) or n_bins < 1:
        raise ValidationError(f"n_bins must be an integer >= 1, got {n_bins!r}")
    arr = as_float_array(values)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0 or n_bins == 1:
        return np.empty(0, dtype=np.float64)
    probs = np.linspace(0.0, 1.0, int(n_bins) + 1)[1:-1]
    edges = np.unique(np.quantile(finite, probs))
    return np.asarray(edges[edges > finite.min()], dtype=np.float64)


def bin_counts(values: npt.ArrayLike, edges: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Count ``values`` per bucket of ``edges``: ``len(edges) + 1`` intervals, then missing.

    ``edges`` must be finite and strictly increasing (as :func:`quantile_edges` returns them).
    """
    e = as_float_array(edges, name="edges")
    if not np.all(np.isfinite(e)):
        raise ValidationError("edges must be finite")
    if e.size > 1 and not np.all(np.diff(e) > 0):
        raise ValidationError("edges must be strictly increasing")
    arr = as_float_array(values)
    missing = np.isnan(arr)
    return np.append(count_on(arr[~missing], e), np.int64(missing.sum()))


#: :func:`count_on` sorts values into about this many equal-width cells per edge first
_CELLS_PER_EDGE = 64


def count_on(values: npt.ArrayLike, edges: npt.ArrayLike) -> IntArray:
    """Counts of ``values`` (no NaN) in the ``len(edges) + 1`` intervals of the strictly
    increasing ``edges``: value ``x`` falls in interval ``searchsorted(edges, x, side="right")``
    (a value equal to an edge goes above it; ``±inf`` to the outermost intervals).

    Exactly that, in a few linear passes instead of a binary search per value: every value gets
    an equal-width cell ``c(x) = trunc(clip(x * scale + offset, 0, cells + 1))`` (cell 0 below
    ``e_0``, cell 1 starting at it). ``c`` is monotone (each step is, in floating point too),
    so a cell that holds no edge lies wholly
    between two edges: its values all belong to one interval (``x > e`` for every edge with
    ``c(e) < c(x)``, ``x < e`` for every edge with ``c(e) > c(x)``), and one ``bincount`` of the
    cells counts them. Only the values in the cells that hold an edge (about one in
    ``_CELLS_PER_EDGE`` for smooth data) are placed by binary search.
    """
    x = np.asarray(values, dtype=np.float64)
    e = np.asarray(edges, dtype=np.float64)
    k = e.size
    if k < 8 or x.size < 16 * k:
        return np.bincount(np.searchsorted(e, x, side="right"), minlength=k + 1).astype(np.int64)
    cells = _CELLS_PER_EDGE * k
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        scale = cells / (e[-1] - e[0])
        offset = 1.0 - e[0] * scale
    if not (math.isfinite(scale) and math.isfinite(offset) and scale > 0):  # edges too close or too far apart
        return np.bincount(np.searchsorted(e, x, side="right"), minlength=k + 1).astype(np.int64)

    def cell(v: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        with np.errstate(over="ignore"):  # far outside the edges: inf, clipped to the outer cell
            t = np.multiply(v, scale)
            t += offset
        np.clip(t, 0.0, float(cells + 1), out=t)
        return t.astype(np.int64)

    ce = cell(e)  # non-decreasing
    cx = cell(x)
    per_cell = np.bincount(cx, minlength=cells + 2)
    marked = np.zeros(cells + 2, dtype=bool)
    marked[ce] = True
    # values in unmarked cells: interval j holds the cells ce[j-1] + 1 .. ce[j] (the last one marked)
    per_cell[ce] = 0
    below = np.concatenate([[0], np.cumsum(per_cell)])
    counts = np.diff(below[np.concatenate([[0], ce + 1, [cells + 2]])])
    near = x[marked[cx]]
    counts += np.bincount(np.searchsorted(e, near, side="right"), minlength=k + 1)
    return counts.astype(np.int64)


# -- the fine and coarse bins of a profile (raymlops.stats.profile) ------------------------------

def fine_edges(values: npt.ArrayLike, bins: int = FINE_BINS) -> FloatArray:
    """Interior edges for up to ``bins`` bins of ``values`` (a sample): mid-points between the
    distinct values when there are few of them (every step of a discrete CDF is kept), else the
    sample's quantiles."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return np.empty(0, dtype=np.float64)
    distinct = np.unique(x)
    if distinct.size <= bins:
        return np.asarray((distinct[:-1] + distinct[1:]) / 2.0, dtype=np.float64)
    edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, bins + 1)[1:-1]))
    return np.asarray(edges[edges > x.min()], dtype=np.float64)


def edges_digest(edges: npt.ArrayLike) -> str:
    """A short content hash of a set of edges (which bins a histogram was counted on)."""
    return hashlib.sha256(np.ascontiguousarray(edges, dtype="<f8").tobytes()).hexdigest()[:16]


def coarse_edges(edges: npt.ArrayLike, counts: npt.ArrayLike, bins: int = COARSE_BINS) -> tuple[FloatArray, IntArray]:
    """``(coarse edges, index of each in edges)``: the fine edges nearest the exact ``1/bins``
    quantiles of the counted data, so coarse counts are exact sums of fine ones."""
    e = np.asarray(edges, dtype=np.float64)
    c = np.asarray(counts, dtype=np.int64)
    total = c.sum()
    if e.size == 0 or total == 0:
        return np.empty(0, dtype=np.float64), np.empty(0, dtype=np.int64)
    cdf = np.cumsum(c[:-1]) / total  # share of values below each edge
    picks = np.unique([int(np.argmin(np.abs(cdf - q))) for q in np.arange(1, bins) / bins])
    picks = picks[(cdf[picks] > 0) & (cdf[picks] < 1)]
    return e[picks], picks.astype(np.int64)


def regroup(counts: npt.ArrayLike, picks: npt.ArrayLike) -> IntArray:
    """Fine counts summed into the coarse intervals cut at fine edge indices ``picks``."""
    c = np.asarray(counts, dtype=np.int64)
    bounds = np.concatenate([[0], np.asarray(picks, dtype=np.int64) + 1, [c.size]])
    return np.asarray([c[a:b].sum() for a, b in zip(bounds[:-1], bounds[1:], strict=True)], dtype=np.int64)
