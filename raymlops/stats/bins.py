"""Quantile binning of numeric columns, with a bucket for missing values.

A column is binned on *interior* edges ``e_0 < e_1 < ... < e_{k-1}``: value ``x`` falls in
bucket ``searchsorted(edges, x, side="right")`` (so a value equal to an edge goes to the bucket
above it, and ``±inf`` go to the outermost buckets), and NaN/None go to one extra "missing"
bucket at the end. :func:`bin_counts` therefore returns ``len(edges) + 2`` counts.
"""

from __future__ import annotations

import numbers

import numpy as np
import numpy.typing as npt

from raymlops.exceptions import ValidationError

__all__ = ["as_float_array", "bin_counts", "quantile_edges"]


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
    buckets = np.searchsorted(e, arr[~missing], side="right")
    counts = np.bincount(buckets, minlength=e.size + 1).astype(np.int64)
    return np.append(counts, np.int64(missing.sum()))
