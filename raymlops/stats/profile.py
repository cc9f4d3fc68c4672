"""Per-column data profiles: computed batch by batch, merged exactly, finished into a
:class:`Profile` (pure numpy/pyarrow: no Ray).

A profile is built in two passes over the data, each a map over batches whose partial results
merge associatively (so Ray Data can compute them in parallel, in any partitioning):

1. :meth:`PartialProfile.from_table` — per column: rows, nulls (NaN counts as null), non-finite
   values, exact mean and variance (Chan's parallel update), min/max, category frequencies of
   strings, booleans and integers with few distinct values, and a *bottom-k* sample of rows:
   the ``sample_size`` rows with the smallest row hash. The row hash is a function of the row's
   content, so the sample, and everything derived from it, is the same however the data was
   partitioned.
2. :func:`count_on_edges` — exact counts of every numeric column on fine bins whose edges come
   from the sample's quantiles (:func:`plan_edges`, up to :data:`FINE_BINS` bins), and, when a
   reference profile is given, on the *reference's* edges too, so the two can be compared on
   identical bins.

:func:`finish` turns the merged results into a :class:`Profile`: count, nulls, min/max,
mean/std, quantiles (interpolated inside the fine bins: within one fine bin, about 0.1 % of the
rows, of the exact value), the fine histogram, category frequencies and, when computed against a
reference, the histogram on the reference's bins. Profiles serialise to JSON
(:meth:`Profile.to_dict`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from raymlops.exceptions import ValidationError
from raymlops.stats.bins import COARSE_BINS, FINE_BINS, coarse_edges, edges_digest, fine_edges, regroup

__all__ = [
    "COARSE_BINS",
    "FINE_BINS",
    "LOW_CARDINALITY",
    "MAX_CATEGORIES",
    "QUANTILES",
    "SAMPLE_SIZE",
    "ColumnProfile",
    "ColumnState",
    "PartialProfile",
    "Profile",
    "coarse_edges",
    "count_on_edges",
    "edges_digest",
    "fine_edges",
    "finish",
    "plan_edges",
    "profile_table",
    "regroup",
    "row_keys",
    "with_reference_counts",
]

#: rows kept by the bottom-k sample that places the fine bin edges
SAMPLE_SIZE = 20_000
#: integers with at most this many distinct values are also profiled as categories
LOW_CARDINALITY = 20
#: strings with more distinct values than this are free text: no frequencies, no drift test
MAX_CATEGORIES = 1000
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
FORMAT = "raymlops.profile/1"

Table: TypeAlias = pa.Table | pa.RecordBatch
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _family(t: pa.DataType) -> str:
    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t):
        return "string"
    return "other"


def _as_float(col: pa.Array | pa.ChunkedArray) -> FloatArray:
    """float64 values with nulls as NaN."""
    arr = pc.cast(col, pa.float64()) if not pa.types.is_float64(col.type) else col
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float64)


def row_keys(table: Table) -> npt.NDArray[np.uint64]:
    """A 64-bit hash of every row's content (pandas' keyed hash: the same in every process).

    Used to pick the bottom-k sample; snapshots use the same hash for their content id."""
    import pandas as pd

    frame = table.to_pandas()
    return np.asarray(pd.util.hash_pandas_object(frame, index=False).to_numpy(np.uint64))


# ---------------------------------------------------------------------------------------------
# pass 1: partial states
# ---------------------------------------------------------------------------------------------


@dataclass
class ColumnState:
    """Mergeable statistics of one column over some rows."""

    name: str
    type: str
    family: str  # int | float | bool | string | other
    count: int = 0
    nulls: int = 0
    infinite: int = 0
    n: int = 0  # finite values
    mean: float = 0.0
    m2: float = 0.0  # sum of squared deviations from the mean
    min: float = math.inf
    max: float = -math.inf
    #: value -> rows; None once the column has too many distinct values to keep
    categories: dict[Any, int] | None = field(default_factory=dict)

    @property
    def numeric(self) -> bool:
        return self.family in ("int", "float")

    def merge(self, other: ColumnState) -> ColumnState:
        if (self.name, self.family) != (other.name, other.family):
            raise ValidationError(f"cannot merge statistics of column {self.name!r} ({self.type}) with "
                                  f"{other.name!r} ({other.type})")
        n = self.n + other.n
        if n == 0:
            mean, m2 = 0.0, 0.0
        else:
            delta = other.mean - self.mean
            mean = self.mean + delta * other.n / n
            m2 = self.m2 + other.m2 + delta * delta * self.n * other.n / n
        cats: dict[Any, int] | None = None
        if self.categories is not None and other.categories is not None:
            cats = dict(self.categories)
            for k, v in other.categories.items():
                cats[k] = cats.get(k, 0) + v
            if len(cats) > _category_cap(self.family):
                cats = None
        return ColumnState(
            name=self.name, type=self.type, family=self.family, count=self.count + other.count,
            nulls=self.nulls + other.nulls, infinite=self.infinite + other.infinite, n=n, mean=mean, m2=m2,
            min=min(self.min, other.min), max=max(self.max, other.max), categories=cats,
        )


def _category_cap(family: str) -> int:
    return LOW_CARDINALITY if family in ("int", "float") else MAX_CATEGORIES


def _column_state(name: str, col: pa.Array | pa.ChunkedArray) -> tuple[ColumnState, FloatArray | None]:
    family = _family(col.type)
    st = ColumnState(name=name, type=str(col.type), family=family, count=len(col), nulls=col.null_count)
    values: FloatArray | None = None
    if family in ("int", "float"):
        values = _as_float(col)
        finite = np.isfinite(values)
        nan = np.isnan(values)
        st.nulls = int(nan.sum())  # nulls became NaN; float NaN counts as missing too
        st.infinite = int((~finite & ~nan).sum())
        x = values[finite]
        st.n = int(x.size)
        if x.size:
            st.mean = float(x.mean())
            st.m2 = float(np.square(x - st.mean).sum())
            st.min, st.max = float(x.min()), float(x.max())
        if family == "int":
            st.categories = _value_counts(col, LOW_CARDINALITY)
        else:
            st.categories = None
    elif family in ("bool", "string"):
        st.categories = _value_counts(col, MAX_CATEGORIES)
    else:
        st.categories = None
    return st, values


def _value_counts(col: pa.Array | pa.ChunkedArray, cap: int) -> dict[Any, int] | None:
    if pa.types.is_dictionary(col.type):
        col = pc.cast(col, col.type.value_type)
    if len(col) > 4 * cap and pc.count_distinct(col.slice(0, 4 * cap)).as_py() > cap:
        return None  # many values already at the start: not categorical, skip the full count
    vc = pc.value_counts(col)
    if len(vc) > cap + 1:  # (+1: a null counts as one value there)
        return None
    values, counts = vc.field("values").to_pylist(), vc.field("counts").to_pylist()
    out = {v: int(c) for v, c in zip(values, counts, strict=True) if v is not None}
    return out if len(out) <= cap else None


def _smallest(keys: npt.NDArray[np.uint64], k: int) -> npt.NDArray[np.intp]:
    """Positions of the ``k`` smallest keys, in key order (ties: lower position first)."""
    if keys.size > 4 * k:
        cut = np.partition(keys, k - 1)[k - 1]
        candidates = np.flatnonzero(keys <= cut)
        return candidates[np.argsort(keys[candidates], kind="stable")][:k]
    return np.argsort(keys, kind="stable")[:k]


@dataclass
class PartialProfile:
    """Pass-1 statistics of some rows: per-column states and the bottom-k row sample."""

    rows: int
    columns: dict[str, ColumnState]
    sample_keys: npt.NDArray[np.uint64]
    sample: dict[str, FloatArray]  # numeric columns' values on the sampled rows (NaN: missing)
    sample_size: int = SAMPLE_SIZE

    @classmethod
    def from_table(cls, table: Table, keys: npt.ArrayLike | None = None,
                   sample_size: int = SAMPLE_SIZE) -> PartialProfile:
        """Statistics of one batch; ``keys`` are its row hashes (:func:`row_keys` if omitted)."""
        k = row_keys(table) if keys is None else np.asarray(keys, dtype=np.uint64)
        if k.shape != (table.num_rows,):
            raise ValidationError(f"expected {table.num_rows} row keys, found {k.shape}")
        take = _smallest(k, sample_size)
        states: dict[str, ColumnState] = {}
        sample: dict[str, FloatArray] = {}
        for name, col in zip(table.schema.names, table.columns, strict=True):
            st, values = _column_state(name, col)
            states[name] = st
            if values is not None:
                sample[name] = values[take]
        return cls(rows=table.num_rows, columns=states, sample_keys=k[take], sample=sample, sample_size=sample_size)

    def merge(self, other: PartialProfile) -> PartialProfile:
        if self.rows == 0 and not self.columns:
            return other
        if other.rows == 0 and not other.columns:
            return self
        if list(self.columns) != list(other.columns):
            raise ValidationError(f"cannot merge profiles of different columns: {list(self.columns)} and "
                                  f"{list(other.columns)}")
        cols = {n: s.merge(other.columns[n]) for n, s in self.columns.items()}
        keys = np.concatenate([self.sample_keys, other.sample_keys])
        size = max(self.sample_size, other.sample_size)
        take = _smallest(keys, size)
        sample = {n: np.concatenate([v, other.sample[n]])[take] for n, v in self.sample.items()}
        return PartialProfile(rows=self.rows + other.rows, columns=cols, sample_keys=keys[take], sample=sample,
                              sample_size=size)

    @classmethod
    def empty(cls) -> PartialProfile:
        return cls(rows=0, columns={}, sample_keys=np.empty(0, dtype=np.uint64), sample={})


# ---------------------------------------------------------------------------------------------
# bins
# ---------------------------------------------------------------------------------------------


def plan_edges(partial: PartialProfile, bins: int = FINE_BINS) -> dict[str, FloatArray]:
    """Fine bin edges of every numeric column, from the merged pass-1 sample."""
    return {n: fine_edges(partial.sample[n], bins) for n, st in partial.columns.items() if st.numeric}


def count_on_edges(table: Table, edges: Mapping[str, npt.ArrayLike]) -> dict[str, IntArray]:
    """Counts of the finite values of each named column in the ``len(edges) + 1`` intervals
    (``searchsorted(edges, x, side="right")``, as :func:`raymlops.stats.bins.bin_counts`)."""
    out: dict[str, IntArray] = {}
    for name, e in edges.items():
        ed = np.asarray(e, dtype=np.float64)
        x = np.sort(_as_float(table.column(name)))  # -inf first; +inf, then NaN, last
        start = int(np.searchsorted(x, -np.inf, side="right"))
        end = int(np.searchsorted(x, np.inf, side="left"))
        # finite values below each edge (a value equal to an edge belongs to the bin above it)
        below = np.searchsorted(x[start:end], ed, side="left")
        out[name] = np.diff(np.concatenate([[0], below, [end - start]])).astype(np.int64)
    return out


# ---------------------------------------------------------------------------------------------
# finished profiles
# ---------------------------------------------------------------------------------------------


def _frozen(values: npt.ArrayLike, dtype: Any) -> npt.NDArray[Any]:
    arr = np.array(values, dtype=dtype, copy=True)
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class ColumnProfile:
    """The finished profile of one column.

    ``kind``: ``numeric`` (drift-tested on bins), ``categorical`` (strings, booleans, integers
    with at most :data:`LOW_CARDINALITY` values: tested on frequencies), ``text`` (strings with
    too many values) or ``other``. ``edges``/``counts``: the fine histogram of the finite values
    (``len(edges) + 1`` intervals). ``ref_edges``/``ref_counts``: the same values counted on a
    reference's fine edges (identified by :func:`edges_digest`), when profiled against one.
    """

    name: str
    type: str
    kind: str
    count: int
    nulls: int
    infinite: int = 0
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    quantiles: dict[str, float] = field(default_factory=dict)
    edges: np.ndarray = field(default_factory=lambda: _frozen([], np.float64))
    counts: np.ndarray = field(default_factory=lambda: _frozen([], np.int64))
    categories: dict[Any, int] | None = None
    ref_edges: str | None = None
    ref_counts: np.ndarray | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "edges", _frozen(self.edges, np.float64))
        object.__setattr__(self, "counts", _frozen(self.counts, np.int64))
        if self.ref_counts is not None:
            object.__setattr__(self, "ref_counts", _frozen(self.ref_counts, np.int64))

    @property
    def numeric(self) -> bool:
        """A number column (integers and floats; also when all its values are missing)."""
        return self.type.startswith(("int", "uint", "float", "double", "halffloat", "decimal"))

    @property
    def finite(self) -> int:
        return int(self.counts.sum())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "type": self.type, "kind": self.kind, "count": self.count, "nulls": self.nulls,
            "infinite": self.infinite, "min": self.min, "max": self.max, "mean": self.mean, "std": self.std,
            "quantiles": dict(self.quantiles), "edges": self.edges.tolist(), "counts": self.counts.tolist(),
            "categories": None if self.categories is None else [[k, v] for k, v in self.categories.items()],
            "ref_edges": self.ref_edges,
            "ref_counts": None if self.ref_counts is None else self.ref_counts.tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ColumnProfile:
        cats = d.get("categories")
        return cls(
            name=d["name"], type=d["type"], kind=d["kind"], count=int(d["count"]), nulls=int(d["nulls"]),
            infinite=int(d.get("infinite", 0)), min=d.get("min"), max=d.get("max"), mean=d.get("mean"),
            std=d.get("std"), quantiles=dict(d.get("quantiles") or {}),
            edges=np.asarray(d.get("edges") or [], dtype=np.float64),
            counts=np.asarray(d.get("counts") or [], dtype=np.int64),
            categories=None if cats is None else {k: int(v) for k, v in cats},
            ref_edges=d.get("ref_edges"),
            ref_counts=None if d.get("ref_counts") is None else np.asarray(d["ref_counts"], dtype=np.int64),
        )

    def summary(self) -> dict[str, Any]:
        """The small part (no histogram): what a manifest or a table shows."""
        out = {k: v for k, v in self.to_dict().items() if k not in ("edges", "counts", "categories", "ref_edges",
                                                                     "ref_counts")}
        if self.categories is not None:
            top = sorted(self.categories.items(), key=lambda kv: (-kv[1], str(kv[0])))
            out["distinct"] = len(self.categories)
            out["top"] = [[k, v] for k, v in top[:5]]
        return out


@dataclass(frozen=True)
class Profile:
    """Profiles of every column of a dataset, in column order."""

    rows: int
    columns: dict[str, ColumnProfile]

    def column(self, name: str) -> ColumnProfile:
        try:
            return self.columns[name]
        except KeyError:
            raise ValidationError(f"column {name!r} is not in the profile (columns: "
                                  f"{', '.join(self.columns)})") from None

    def edges(self) -> dict[str, FloatArray]:
        """Fine edges of the numeric columns: what another dataset is counted on to compare."""
        return {n: np.asarray(c.edges) for n, c in self.columns.items() if c.numeric}

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "rows": self.rows, "columns": [c.to_dict() for c in self.columns.values()]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Profile:
        if d.get("format") != FORMAT:
            raise ValidationError(f"not a raymlops profile (format {d.get('format')!r}, expected {FORMAT!r})")
        cols = [ColumnProfile.from_dict(c) for c in d["columns"]]
        return cls(rows=int(d["rows"]), columns={c.name: c for c in cols})

    def summary(self) -> dict[str, Any]:
        return {"rows": self.rows, "columns": {n: c.summary() for n, c in self.columns.items()}}


def _quantiles(edges: FloatArray, counts: IntArray, lo: float, hi: float) -> dict[str, float]:
    total = counts.sum()
    if total == 0:
        return {}
    xs = np.concatenate([[lo], edges, [hi]])
    cdf = np.concatenate([[0.0], np.cumsum(counts) / total])
    # cdf[i] is the share below xs[i]; interpolate inside each bin, skipping empty ones
    out = {}
    for q in QUANTILES:
        i = int(np.searchsorted(cdf, q, side="left"))
        i = min(max(i, 1), xs.size - 1)
        lo_c, hi_c = cdf[i - 1], cdf[i]
        frac = 0.0 if hi_c <= lo_c else (q - lo_c) / (hi_c - lo_c)
        out[f"p{round(q * 100):02d}"] = float(xs[i - 1] + frac * (xs[i] - xs[i - 1]))
    return out


def finish(partial: PartialProfile, edges: Mapping[str, npt.ArrayLike], counts: Mapping[str, npt.ArrayLike],
           reference: Profile | None = None, ref_counts: Mapping[str, npt.ArrayLike] | None = None) -> Profile:
    """The finished :class:`Profile` from merged pass-1 state and pass-2 counts.

    ``ref_counts``: the numeric columns counted on ``reference``'s fine edges."""
    cols: dict[str, ColumnProfile] = {}
    for name, st in partial.columns.items():
        if st.numeric:
            e = np.asarray(edges.get(name, []), dtype=np.float64)
            c = np.asarray(counts.get(name, np.zeros(e.size + 1)), dtype=np.int64)
            if int(c.sum()) != st.n:
                raise ValidationError(f"column {name!r}: {int(c.sum())} values binned but {st.n} counted")
            has = st.n > 0
            kind = "categorical" if st.family == "int" and st.categories is not None else "numeric"
            ref_digest = rc = None
            if reference is not None and ref_counts is not None and name in ref_counts \
                    and name in reference.columns and reference.columns[name].numeric:
                ref_digest = edges_digest(reference.columns[name].edges)
                rc = np.asarray(ref_counts[name], dtype=np.int64)
            cols[name] = ColumnProfile(
                name=name, type=st.type, kind=kind, count=st.count, nulls=st.nulls, infinite=st.infinite,
                min=st.min if has else None, max=st.max if has else None, mean=st.mean if has else None,
                std=math.sqrt(st.m2 / st.n) if has else None,
                quantiles=_quantiles(e, c, st.min, st.max) if has else {},
                edges=e, counts=c, categories=st.categories, ref_edges=ref_digest, ref_counts=rc,
            )
        else:
            kind = "categorical" if st.categories is not None else ("text" if st.family == "string" else "other")
            cats = st.categories
            if cats is not None and st.family == "bool":
                cats = {bool(k): v for k, v in cats.items()}
            cols[name] = ColumnProfile(name=name, type=st.type, kind=kind, count=st.count, nulls=st.nulls,
                                       categories=cats)
    return Profile(rows=partial.rows, columns=cols)


def profile_table(table: Table, reference: Profile | None = None, sample_size: int = SAMPLE_SIZE,
                  bins: int = FINE_BINS) -> Profile:
    """The profile of one in-memory table (both passes here; no Ray). Mostly for tests and
    small data: Ray Data runs the same passes batch by batch (:mod:`raymlops.data.profile`)."""
    partial = PartialProfile.from_table(table, sample_size=sample_size)
    edges = plan_edges(partial, bins)
    counts = count_on_edges(table, edges)
    ref_counts = None
    if reference is not None:
        ref_edges = {n: e for n, e in reference.edges().items() if n in edges}
        ref_counts = count_on_edges(table, ref_edges)
    return finish(partial, edges, counts, reference, ref_counts)


def with_reference_counts(profile: Profile, reference: Profile, ref_counts: Mapping[str, npt.ArrayLike]) -> Profile:
    """``profile`` with its numeric columns' counts on ``reference``'s edges attached."""
    cols = dict(profile.columns)
    for name, rc in ref_counts.items():
        if name in cols and name in reference.columns:
            cols[name] = replace(cols[name], ref_edges=edges_digest(reference.columns[name].edges),
                                 ref_counts=np.asarray(rc, dtype=np.int64))
    return Profile(rows=profile.rows, columns=cols)
