"""Per-column references of the monitor: bucket edges or a category index, and bucketing.

A :class:`ColumnReference` fixes how one column is bucketed (see :mod:`raymlops.monitor.reference`,
which holds one per monitored column and the counts per slice): a numeric column's fine
quantile edges (below the range, interior bins, above the range, missing) grouped into coarse
bins of equal reference mass; a categorical column's index of its most frequent values plus an
*other* and a *missing* bucket. Pure numpy/pandas: no Ray.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from raymlops.exceptions import ValidationError
from raymlops.stats.bins import quantile_edges
from raymlops.stats.drift import unseen_share
from raymlops.stats.exact import distinct_integers

__all__ = ["CATEGORICAL", "NUMERIC", "ColumnReference", "categorical_column", "check_int", "labels_of",
           "numeric_column"]

NUMERIC, CATEGORICAL = "numeric", "categorical"
_MISSING_LABEL = "(missing)"


def check_int(value: object, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValidationError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _frozen(values: npt.ArrayLike, dtype: Any) -> npt.NDArray[Any]:
    arr = np.array(values, dtype=dtype, copy=True)
    arr.setflags(write=False)
    return arr


# --------------------------------------------------------------------------------- labels


def labels_of(values: npt.ArrayLike) -> tuple[npt.NDArray[np.object_], npt.NDArray[np.bool_]]:
    """Canonical string labels of categorical values and their missing mask.

    Integral numbers print without a fraction (``1.0`` and ``1`` are both ``"1"``), so a category
    read from CSV as an integer and served as a float is the same category; NaN/None are missing.
    """
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValidationError(f"categorical values must be 1-dimensional, got shape {arr.shape}")
    if arr.dtype.kind in "biuf":
        f = arr.astype(np.float64)
        missing = np.isnan(f)
        out = np.empty(f.size, dtype=object)
        integral = ~missing & np.isfinite(f) & (f == np.floor(f)) & (np.abs(f) < 2**53)
        out[integral] = f[integral].astype(np.int64).astype(str)
        rest = ~integral & ~missing
        out[rest] = f[rest].astype(str)
        out[missing] = _MISSING_LABEL
        return out, missing
    series = pd.Series(arr, dtype=object)
    missing = series.isna().to_numpy()
    out = series.map(lambda v: _label(v)).to_numpy(dtype=object)
    out[missing] = _MISSING_LABEL
    return out, missing


def _label(v: Any) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "1" if v else "0"
    if isinstance(v, numbers.Real):
        f = float(v)
        return str(int(f)) if math.isfinite(f) and f == math.floor(f) and abs(f) < 2**53 else str(f)
    return str(v)


@dataclass(frozen=True, eq=False)
class _Index:
    """A fixed list of labels with a fast lookup: position, or -1 when not listed."""

    labels: tuple[str, ...]
    _pd: pd.Index = field(init=False, repr=False)
    _sorted: np.ndarray | None = field(init=False, repr=False)
    _order: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pd", pd.Index(list(self.labels), dtype=object))
        codes: npt.NDArray[np.float64] | None = None
        try:
            nums = np.array([float(x) for x in self.labels], dtype=np.float64)
            if all(_label(v) == lab for v, lab in zip(nums.tolist(), self.labels, strict=True)):
                codes = nums
        except ValueError:
            codes = None
        if codes is not None:
            order = np.argsort(codes, kind="stable")
            object.__setattr__(self, "_sorted", codes[order])
            object.__setattr__(self, "_order", order.astype(np.int64))
        else:
            object.__setattr__(self, "_sorted", None)

    def lookup(self, values: npt.ArrayLike) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """(position or -1, missing mask) per value."""
        arr = np.asarray(values)
        sorted_codes = self._sorted
        if arr.dtype.kind in "biuf" and sorted_codes is not None:
            f = arr.astype(np.float64, copy=False)
            missing = np.isnan(f)
            if sorted_codes.size == 0:
                return np.full(f.size, -1, dtype=np.int64), missing
            pos = np.searchsorted(sorted_codes, f)
            pos_c = np.minimum(pos, sorted_codes.size - 1)
            hit = sorted_codes[pos_c] == f
            return np.where(hit, self._order[pos_c], -1).astype(np.int64), missing
        labels, missing = labels_of(arr)
        # get_indexer makes an Index of its argument anyway: building it here costs nothing more
        return self._pd.get_indexer(pd.Index(labels, dtype=object)).astype(np.int64), missing


# --------------------------------------------------------------------------------- columns


@dataclass(frozen=True, eq=False)
class ColumnReference:
    """One monitored column's buckets and reference moments (see the module docstring).

    Numeric: ``edges`` (``[min, interior quantiles…, next(max)]``), buckets
    ``0 = below``, ``1 … len(edges)-1`` interior, ``len(edges) = above``, last = missing.
    Categorical: ``categories``, buckets ``0 … k-1`` categories, ``k = other``, last = missing;
    ``complete`` is True when every reference value is indexed (then *other* means *unseen*);
    ``display``: what reports call each category, when its label is a code (a string feature
    reaches the monitor as its :func:`~raymlops.features.category_code`); empty: the labels.
    ``coarse`` maps each bucket to its coarse bucket for PSI and chi-square: runs of adjacent
    buckets (``0``, then steps of 0 or 1), so a coarse count is a difference of running totals.
    """

    name: str
    kind: str
    edges: np.ndarray
    categories: tuple[str, ...]
    complete: bool
    coarse: np.ndarray
    mean: float
    std: float
    display: tuple[str, ...] = ()
    #: numeric, integers on at most ``discrete_max_values`` values: one bucket per value of the
    #: reference (its edges are those values), tested on that support (chi-square) as offline
    discrete: bool = False
    _edges_nan: np.ndarray = field(init=False, repr=False)
    _grid: _Grid | None = field(init=False, repr=False)
    _index: _Index | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValidationError(f"column name must be a non-empty string, got {self.name!r}")
        if self.kind not in (NUMERIC, CATEGORICAL):
            raise ValidationError(f"column {self.name!r}: kind must be numeric or categorical, got {self.kind!r}")
        edges = _frozen(self.edges, np.float64)
        if self.kind == NUMERIC and (
            edges.ndim != 1 or edges.size < 2 or not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0)
        ):
            raise ValidationError(f"column {self.name!r}: edges must be >= 2 finite, strictly increasing values")
        object.__setattr__(self, "edges", edges)
        object.__setattr__(self, "categories", tuple(str(c) for c in self.categories))
        object.__setattr__(self, "display", tuple(str(c) for c in self.display))
        if self.display and len(self.display) != len(self.categories):
            raise ValidationError(f"column {self.name!r}: display must name each of the "
                                  f"{len(self.categories)} categories, found {len(self.display)}")
        coarse = _frozen(self.coarse, np.int64)
        if coarse.shape != (self.n_buckets,):
            raise ValidationError(f"column {self.name!r}: coarse must map {self.n_buckets} buckets")
        if coarse[0] != 0 or not np.isin(np.diff(coarse), (0, 1)).all():
            raise ValidationError(f"column {self.name!r}: coarse must group adjacent buckets (0, then steps of 0 or 1)")
        object.__setattr__(self, "coarse", coarse)
        object.__setattr__(self, "_edges_nan", np.append(edges, np.nan))
        object.__setattr__(self, "_grid", _Grid(edges) if self.kind == NUMERIC else None)
        object.__setattr__(self, "_index", _Index(self.categories) if self.kind == CATEGORICAL else None)

    @property
    def n_buckets(self) -> int:
        return self.edges.size + 2 if self.kind == NUMERIC else len(self.categories) + 2

    @property
    def n_coarse(self) -> int:
        return int(self.coarse.max()) + 1

    @property
    def missing_bucket(self) -> int:
        return self.n_buckets - 1

    @property
    def ref_min(self) -> float:
        return float(self.edges[0])

    @property
    def ref_max(self) -> float:
        return float(np.nextafter(self.edges[-1], -np.inf))

    def bucketize(self, values: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Bucket of every value (vectorised)."""
        if self.kind == NUMERIC:
            arr = np.asarray(values)
            if arr.dtype.kind not in "biuf":
                arr = _to_float(arr, self.name)
            assert self._grid is not None
            return self._grid.lookup(arr.astype(np.float64, copy=False))
        assert self._index is not None
        pos, missing = self._index.lookup(values)
        k = len(self.categories)
        out = np.where(pos < 0, k, pos)
        out[missing] = k + 1
        return out

    def bucketize_exact(self, values: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Numeric buckets by plain binary search (what :meth:`bucketize` must agree with)."""
        arr = np.asarray(values, dtype=np.float64)
        return np.searchsorted(self._edges_nan, arr, side="right").astype(np.int64)

    def bucket_labels(self) -> list[str]:
        """Human names of the buckets, for reports."""
        if self.kind == CATEGORICAL:
            return [*self.shown_categories, "(other)", "(missing)"]
        e = self.edges
        if self.discrete:
            return [f"< {e[0]:.4g}", *(f"{v:.4g}" for v in e[:-1]), f"> {self.ref_max:.4g}", "(missing)"]
        inner = [f"[{e[i]:.4g}, {e[i + 1]:.4g})" for i in range(e.size - 1)]
        return [f"< {e[0]:.4g}", *inner, f"> {self.ref_max:.4g}", "(missing)"]

    @property
    def shown_categories(self) -> tuple[str, ...]:
        """The categories as reports name them (``display``, else the labels)."""
        return self.display or self.categories

    def to_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name, "kind": self.kind, "edges": self.edges.tolist(),
            "categories": list(self.categories), "complete": self.complete,
            "coarse": self.coarse.tolist(), "mean": self.mean, "std": self.std,
        }
        if self.display:
            out["display"] = list(self.display)
        if self.discrete:
            out["discrete"] = True
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ColumnReference:
        return cls(name=d["name"], kind=d["kind"], edges=np.asarray(d["edges"], dtype=np.float64),
                   categories=tuple(d["categories"]), complete=bool(d["complete"]),
                   coarse=np.asarray(d["coarse"], dtype=np.int64), mean=float(d["mean"]), std=float(d["std"]),
                   display=tuple(d.get("display") or ()), discrete=bool(d.get("discrete", False)))


class _Grid:
    """Bucket lookup in O(1) per value: a uniform grid of ``cells`` cells over the reference
    range maps each cell to its bucket; only values in a cell that holds an edge fall back to
    binary search. Same answers as ``searchsorted(edges, x, side="right")`` (+ missing bucket):
    ``t = (x - lo) * scale`` is monotone in ``x``, so a value in a cell without an edge is
    ordered against every edge by the cells alone."""

    __slots__ = ("edges_nan", "lo", "scale", "top", "table", "ambiguous", "missing")

    def __init__(self, edges: npt.NDArray[np.float64], cells: int = 4096) -> None:
        self.edges_nan = np.append(edges, np.nan)
        self.lo = float(edges[0])
        width = float(edges[-1]) - self.lo
        self.scale = cells / width if width > 0 and math.isfinite(cells / width) else 0.0
        self.top = cells + 1
        self.missing = edges.size + 1
        cell_of_edge = self._cells(edges)
        self.table = np.searchsorted(cell_of_edge, np.arange(self.top + 1), side="left").astype(np.int64)
        self.ambiguous = np.zeros(self.top + 1, dtype=bool)
        self.ambiguous[cell_of_edge] = True

    def _cells(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        t = (x - self.lo) * self.scale
        np.floor(t, out=t)
        t += 1.0
        np.clip(t, 0.0, float(self.top), out=t)
        with np.errstate(invalid="ignore"):
            return t.astype(np.int64)

    def lookup(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
        cells = self._cells(x)
        nan = np.isnan(x)
        has_nan = bool(nan.any())
        if has_nan:
            cells[nan] = 0
        out = self.table[cells]
        amb = self.ambiguous[cells]
        if has_nan:
            amb[nan] = False
        hit = np.flatnonzero(amb)
        if hit.size:
            out[hit] = np.searchsorted(self.edges_nan, x[hit], side="right")
        if has_nan:
            out[nan] = self.missing
        return out


def _to_float(arr: npt.NDArray[Any], name: str) -> npt.NDArray[np.float64]:
    if arr.dtype.kind == "O":
        try:
            return np.array([np.nan if v is None else float(v) for v in arr], dtype=np.float64)
        except (TypeError, ValueError):
            pass
    raise ValidationError(f"column {name!r} is numeric in the reference but got values of dtype {arr.dtype}")


def _coarse_groups(fine_counts: npt.NDArray[np.int64], n_bins: int) -> npt.NDArray[np.int64]:
    """Group interior fine bins (1 … n-3) into about ``n_bins`` runs of equal reference mass;
    below, above and missing keep a bucket of their own."""
    inner = fine_counts[1:-2].astype(np.float64)
    total = inner.sum()
    if total > 0:
        before = np.cumsum(inner) - inner
        raw = np.minimum(((before + inner / 2) / total * n_bins).astype(np.int64), n_bins - 1)
    else:
        raw = np.zeros(inner.size, dtype=np.int64)
    _, groups = np.unique(raw, return_inverse=True)
    g = groups.astype(np.int64) + 1
    top = int(g.max()) + 1 if g.size else 1
    return np.concatenate([[0], g, [top, top + 1]]).astype(np.int64)


def _support_complete(values: npt.NDArray[np.float64], support: npt.NDArray[np.float64]) -> bool:
    """Whether the reference holds (nearly) every value the column takes: the share of a fresh
    sample expected off it (Good-Turing: its values seen once, over its rows) is at most 1 %. A
    window's values off the support fall in a neighbour's bucket, so chi-square on a support a small
    reference only half saw (50 rows of a glucose reading: about 30 values, 20 of them once) flagged
    11 of 40 unchanged windows; such a column gets quantile buckets (binned KS), as continuous ones."""
    return unseen_share(np.bincount(np.searchsorted(support, values))) <= 0.01


def numeric_column(name: str, values: npt.ArrayLike, fine_bins: int, n_bins: int,
                   discrete_max_values: int = 0) -> ColumnReference:
    """``discrete_max_values``: integers on at most this many values get a bucket per value
    (:attr:`ColumnReference.discrete`); 0: quantile buckets always."""
    arr = _to_float(np.asarray(values), name) if np.asarray(values).dtype.kind not in "biuf" else np.asarray(
        values, dtype=np.float64)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        raise ValidationError(f"column {name!r} has no finite values to build a reference from")
    lo, hi = float(finite.min()), float(finite.max())
    mean, std = float(finite.mean()), 0.0 if lo == hi else float(finite.std())  # numpy gives 1e-17 for 0.1s
    support = distinct_integers(finite, finite[:0], discrete_max_values, lo, hi)
    if support is not None and not _support_complete(finite, support):
        support = None
    if support is not None:  # a bucket per value; every bucket is its own coarse one (chi-square on the support)
        edges = np.append(support, np.nextafter(hi, np.inf))
        return ColumnReference(name=name, kind=NUMERIC, edges=edges, categories=(), complete=True,
                               coarse=np.arange(edges.size + 2, dtype=np.int64), mean=mean, std=std, discrete=True)
    edges = np.concatenate([[lo], quantile_edges(finite, fine_bins), [np.nextafter(hi, np.inf)]])
    counts = np.bincount(np.searchsorted(np.append(edges, np.nan), arr, side="right"), minlength=edges.size + 2)
    return ColumnReference(name=name, kind=NUMERIC, edges=edges, categories=(), complete=True,
                           coarse=_coarse_groups(counts, n_bins), mean=mean, std=std)


def categorical_column(name: str, values: npt.ArrayLike, max_categories: int,
                       names: Mapping[str, str] | None = None) -> ColumnReference:
    """``names``: label -> what reports call it (see :attr:`ColumnReference.display`)."""
    labels, missing = labels_of(values)
    present = labels[~missing]
    if present.size == 0:
        raise ValidationError(f"column {name!r} has no non-missing values to build a reference from")
    uniq, counts = np.unique(present.astype(str), return_counts=True)
    order = sorted(range(uniq.size), key=lambda i: (-int(counts[i]), str(uniq[i])))[:max_categories]
    cats = tuple(str(uniq[i]) for i in order)
    k = len(cats)
    return ColumnReference(name=name, kind=CATEGORICAL, edges=np.empty(0), categories=cats,
                           complete=uniq.size <= max_categories, coarse=np.arange(k + 2), mean=math.nan,
                           std=math.nan, display=tuple(names.get(c, c) for c in cats) if names else ())
