"""The mergeable parts of a profile, computed block by block (pure numpy/pyarrow: no Ray).

A profile (:mod:`raymlops.stats.profile`) needs bin edges before it can count, so it is built
from two mergeable results, each computed per block of rows and merged in any order:

1. :class:`Sample` — the bottom-k *sample* of rows: the ``size`` rows with the smallest row
   hash (:func:`row_keys`), holding the values of the numeric columns. The row hash is a function
   of the row's content, so the sample, and the fine bin edges placed on its quantiles
   (:meth:`Sample.edges`), are the same however the data was partitioned. A snapshot takes it in
   the pass that hashes the rows for the content id anyway (cheap: a partial sort of the keys).
2. :class:`PartialProfile` — one pass over the values: per column rows, nulls (NaN counts as
   null), non-finite values, exact mean and variance (Chan's parallel update), min/max,
   category frequencies of strings, booleans and integers with few distinct values; and the
   exact counts of every numeric column's finite values on the fine edges (:func:`raymlops.stats.bins.count_on`)
   and, when a reference is given, on the reference's edges. A snapshot computes it in the Ray
   tasks that write the Parquet files.

Both travel between processes as plain data (:meth:`to_payload` / :meth:`from_payload`: a dict
of JSON-able values and numpy arrays with a format id), never as a pickle of these classes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from raymlops.exceptions import ValidationError
from raymlops.stats.bins import FINE_BINS, count_on, fine_edges

__all__ = ["LOW_CARDINALITY", "MAX_CATEGORIES", "SAMPLE_SIZE", "ColumnState", "PartialProfile", "Sample",
           "count_on_edges", "family", "row_keys", "sample_bound"]

#: rows kept by the bottom-k sample that places the fine bin edges
SAMPLE_SIZE = 20_000
#: integers with at most this many distinct values are also profiled as categories
LOW_CARDINALITY = 20
#: strings with more distinct values than this are free text: no frequencies, no drift test
MAX_CATEGORIES = 1000
SAMPLE_FORMAT = "raymlops.profile-sample/1"
PARTIAL_FORMAT = "raymlops.partial-profile/1"

Table: TypeAlias = pa.Table | pa.RecordBatch
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def family(t: pa.DataType) -> str:
    """``int``, ``float``, ``bool``, ``string`` or ``other``: how a column is profiled."""
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
    """float64 values with nulls as NaN; integers beyond 2^53 rounded to the nearest double (the
    profile's summaries need no more; the drift checks compare them exactly: stats.coerce), where
    the safe cast refused the whole snapshot with Arrow's message."""
    arr = pc.cast(col, pa.float64(), safe=False) if not pa.types.is_float64(col.type) else col
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.float64)


#: the hash of a null, in any column
_NULL_HASH = np.uint64(0x9E3779B97F4A7C15)


def _column_hash(col: pa.ChunkedArray) -> npt.NDArray[np.uint64]:
    """A 64-bit hash of every value of one column that depends on its Arrow type and value only
    (not on which other rows share its block: a block without nulls hashes like one with)."""
    from pandas.util import hash_array

    t = col.type
    if pa.types.is_dictionary(t):
        col, t = pc.cast(col, t.value_type), t.value_type
    if pa.types.is_boolean(t):
        t = pa.int8()
        col = pc.cast(col, t)
    if pa.types.is_temporal(t):
        if t.bit_width == 32:  # date32, time32: Arrow casts these to int32 only
            col = pc.cast(col, pa.int32())
        t = pa.int64()
        col = pc.cast(col, t)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        values = pc.fill_null(col, 0).to_numpy()
        h = hash_array(np.ascontiguousarray(values))
    else:  # strings and everything else: hash each distinct value once (its text form for nested types)
        if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
                or pa.types.is_large_binary(t)):
            col = pa.chunked_array([pa.array([None if v is None else repr(v) for v in col.to_pylist()], pa.string())])
        encoded = pc.dictionary_encode(col).combine_chunks()
        distinct = hash_array(np.asarray(encoded.dictionary.to_pylist(), dtype=object))
        h = distinct[pc.fill_null(encoded.indices, 0).to_numpy()] if len(distinct) else np.zeros(len(col), np.uint64)
    if col.null_count:
        h = np.where(pc.is_null(col).to_numpy(zero_copy_only=False), _NULL_HASH, h)
    return np.asarray(h, dtype=np.uint64)


def row_keys(table: Table) -> npt.NDArray[np.uint64]:
    """A 64-bit hash of every row's content: each column's values hashed by type
    (:func:`pandas.util.hash_array`, keyed: the same in every process), combined in column order.
    A row's key does not depend on the other rows of its block, so neither does anything built on
    it: the bottom-k sample, and a snapshot's content id (the sha256 of its keys in row order)."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    out = np.full(table.num_rows, 0x345678, dtype=np.uint64)
    mult = np.uint64(1000003)
    with np.errstate(over="ignore"):
        for i, col in enumerate(table.columns):
            out ^= _column_hash(col)
            out *= mult
            mult += np.uint64(82520 + 2 * (table.num_columns - i))
        out += np.uint64(97531)
    return out


def _numeric_names(schema: pa.Schema) -> list[str]:
    return [f.name for f in schema if family(f.type) in ("int", "float")]


def _check_format(payload: Mapping[str, Any], expected: str) -> None:
    if payload.get("format") != expected:
        raise ValidationError(f"not a {expected} payload (format {payload.get('format')!r}); written by another "
                              "raymlops version?")


# ------------------------------------------------------------------------------- the sample


def _smallest(keys: npt.NDArray[np.uint64], k: int) -> npt.NDArray[np.intp]:
    """Positions of the ``k`` smallest keys, in key order (ties: lower position first)."""
    if k <= 0:
        return np.empty(0, dtype=np.intp)
    if keys.size > 4 * k:
        cut = np.partition(keys, k - 1)[k - 1]
        candidates = np.flatnonzero(keys <= cut)
        return candidates[np.argsort(keys[candidates], kind="stable")][:k]
    return np.argsort(keys, kind="stable")[:k]


def sample_bound(rows: int, size: int = SAMPLE_SIZE) -> int | None:
    """A key bound for the blocks' samples of ``rows`` rows in all: row keys are uniform 64-bit
    hashes, so about ``2 * size`` rows fall below it, and each block need only send those
    (a few hundred rows instead of ``size``). None (no bound) for small data."""
    if rows <= 4 * size:
        return None
    return int(float(1 << 64) * (2.0 * size / rows))


@dataclass
class Sample:
    """The bottom-k rows by content hash: their keys and numeric columns' values (NaN: missing)."""

    keys: npt.NDArray[np.uint64]
    values: dict[str, FloatArray]
    size: int = SAMPLE_SIZE

    @classmethod
    def from_table(cls, table: Table, keys: npt.ArrayLike | None = None, size: int = SAMPLE_SIZE,
                   below: int | None = None) -> Sample:
        """The sample of one block; ``keys`` are its row hashes (:func:`row_keys` if omitted).
        ``below``: keep only rows whose key is below it (:func:`sample_bound`)."""
        k = row_keys(table) if keys is None else np.asarray(keys, dtype=np.uint64)
        if k.shape != (table.num_rows,):
            raise ValidationError(f"expected {table.num_rows} row keys, found {k.shape}")
        if below is None:
            take = _smallest(k, size)
        else:
            low = np.flatnonzero(k < np.uint64(below))
            take = low[_smallest(k[low], size)]
        values = {n: _as_float(table.column(n).take(pa.array(take))) for n in _numeric_names(table.schema)}
        return cls(keys=k[take], values=values, size=size)

    @classmethod
    def empty(cls, size: int = SAMPLE_SIZE) -> Sample:
        return cls(keys=np.empty(0, dtype=np.uint64), values={}, size=size)

    def merge(self, other: Sample) -> Sample:
        if self.keys.size == 0 and not self.values:
            return other
        if other.keys.size == 0 and not other.values:
            return self
        return Sample.merge_all([self, other])

    @classmethod
    def merge_all(cls, samples: Iterable[Sample]) -> Sample:
        """Many samples (in order) merged in one selection: the same sample as :meth:`merge` of
        them one by one, without sorting the kept rows again for every one (a snapshot's 40
        blocks: 3 ms on the driver instead of 38)."""
        parts = [s for s in samples if s.keys.size or s.values]
        if len(parts) <= 1:
            return parts[0] if parts else cls.empty()
        names = list(parts[0].values)
        for s in parts[1:]:
            if list(s.values) != names:
                raise ValidationError(f"cannot merge samples of different columns: {names} and {list(s.values)}")
        keys = np.concatenate([s.keys for s in parts])
        size = max(s.size for s in parts)
        take = _smallest(keys, size)
        values = {n: np.concatenate([s.values[n] for s in parts])[take] for n in names}
        return cls(keys=keys[take], values=values, size=size)

    def complete(self, rows: int) -> bool:
        """Whether this merged sample is the bottom-k of all ``rows`` rows: it holds ``size`` of
        them (or every row). A merge of samples cut at :func:`sample_bound` that is not complete
        missed rows above the bound, and must be taken again without one."""
        return self.keys.size >= min(self.size, rows)

    def edges(self, bins: int = FINE_BINS) -> dict[str, FloatArray]:
        """Fine bin edges of every numeric column, from the sample."""
        return {n: fine_edges(v, bins) for n, v in self.values.items()}

    def to_payload(self) -> dict[str, Any]:
        return {"format": SAMPLE_FORMAT, "size": self.size, "keys": self.keys, "values": dict(self.values)}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> Sample:
        _check_format(payload, SAMPLE_FORMAT)
        return cls(keys=np.asarray(payload["keys"], dtype=np.uint64), size=int(payload["size"]),
                   values={str(n): np.asarray(v, dtype=np.float64) for n, v in payload["values"].items()})


# ------------------------------------------------------------------------- per-column state


def _category_cap(fam: str) -> int:
    return LOW_CARDINALITY if fam in ("int", "float") else MAX_CATEGORIES


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

    def to_payload(self) -> dict[str, Any]:
        """JSON-able (min/max None when there is no finite value; categories as pairs)."""
        return {"name": self.name, "type": self.type, "family": self.family, "count": self.count,
                "nulls": self.nulls, "infinite": self.infinite, "n": self.n, "mean": self.mean, "m2": self.m2,
                "min": self.min if self.n else None, "max": self.max if self.n else None,
                "categories": None if self.categories is None else [[k, v] for k, v in self.categories.items()]}

    @classmethod
    def from_payload(cls, d: Mapping[str, Any]) -> ColumnState:
        cats = d["categories"]
        return cls(name=d["name"], type=d["type"], family=d["family"], count=int(d["count"]),
                   nulls=int(d["nulls"]), infinite=int(d["infinite"]), n=int(d["n"]), mean=float(d["mean"]),
                   m2=float(d["m2"]), min=math.inf if d["min"] is None else float(d["min"]),
                   max=-math.inf if d["max"] is None else float(d["max"]),
                   categories=None if cats is None else {k: int(v) for k, v in cats})


def _column(name: str, col: pa.Array | pa.ChunkedArray, edge_sets: Sequence[Mapping[str, FloatArray]]
            ) -> tuple[ColumnState, list[IntArray | None]]:
    """One column's state and its counts on each set of edges that names it."""
    fam = family(col.type)
    st = ColumnState(name=name, type=str(col.type), family=fam, count=len(col), nulls=col.null_count)
    counts: list[IntArray | None] = [None] * len(edge_sets)
    if fam in ("int", "float"):
        values = _as_float(col)
        finite = np.isfinite(values)
        if finite.all():
            x = values
        else:
            nan = np.isnan(values)
            st.nulls = int(nan.sum())  # nulls became NaN; float NaN counts as missing too
            st.infinite = int(values.size - finite.sum() - st.nulls)
            x = values[finite]
        st.n = int(x.size)
        if x.size:
            st.mean = float(x.mean())
            st.m2 = float(np.square(x - st.mean).sum())
            st.min, st.max = float(x.min()), float(x.max())
        st.categories = _value_counts(col, LOW_CARDINALITY) if fam == "int" else None
        for i, edges in enumerate(edge_sets):
            if name in edges:
                counts[i] = count_on(x, edges[name])
    elif fam in ("bool", "string"):
        st.categories = _value_counts(col, MAX_CATEGORIES)
    else:
        st.categories = None
    return st, counts


def count_on_edges(table: Table, edges: Mapping[str, npt.ArrayLike]) -> dict[str, IntArray]:
    """Counts of the finite values of each named column in the ``len(edges) + 1`` intervals
    (:func:`raymlops.stats.bins.count_on`)."""
    return {n: count_on(v[np.isfinite(v)], np.asarray(e, dtype=np.float64))
            for n, e in edges.items() for v in (_as_float(table.column(n)),)}


# ------------------------------------------------------------------------------ the partial


@dataclass
class PartialProfile:
    """One-pass statistics of some rows: per-column states and the numeric columns' exact counts
    on the fine edges (``counts``) and on a reference's edges (``ref_counts``)."""

    rows: int
    columns: dict[str, ColumnState]
    counts: dict[str, IntArray] = field(default_factory=dict)
    ref_counts: dict[str, IntArray] = field(default_factory=dict)

    @classmethod
    def from_table(cls, table: Table, edges: Mapping[str, npt.ArrayLike] | None = None,
                   ref_edges: Mapping[str, npt.ArrayLike] | None = None) -> PartialProfile:
        """Statistics of one block, its numeric columns counted on ``edges`` and ``ref_edges``."""
        sets = [{n: np.asarray(e, dtype=np.float64) for n, e in (s or {}).items()} for s in (edges, ref_edges)]
        states: dict[str, ColumnState] = {}
        found: list[dict[str, IntArray]] = [{}, {}]
        for name, col in zip(table.schema.names, table.columns, strict=True):
            st, counts = _column(name, col, sets)
            states[name] = st
            for got, c in zip(found, counts, strict=True):
                if c is not None:
                    got[name] = c
        return cls(rows=table.num_rows, columns=states, counts=found[0], ref_counts=found[1])

    @classmethod
    def empty(cls) -> PartialProfile:
        return cls(rows=0, columns={})

    def merge(self, other: PartialProfile) -> PartialProfile:
        if self.rows == 0 and not self.columns:
            return other
        if other.rows == 0 and not other.columns:
            return self
        if list(self.columns) != list(other.columns):
            raise ValidationError(f"cannot merge profiles of different columns: {list(self.columns)} and "
                                  f"{list(other.columns)}")
        cols = {n: s.merge(other.columns[n]) for n, s in self.columns.items()}

        def add(a: dict[str, IntArray], b: dict[str, IntArray]) -> dict[str, IntArray]:
            if a.keys() != b.keys() or any(a[n].shape != b[n].shape for n in a):
                raise ValidationError("cannot merge counts on different bins")
            return {n: a[n] + b[n] for n in a}

        return PartialProfile(rows=self.rows + other.rows, columns=cols, counts=add(self.counts, other.counts),
                              ref_counts=add(self.ref_counts, other.ref_counts))

    def to_payload(self) -> dict[str, Any]:
        return {"format": PARTIAL_FORMAT, "rows": self.rows,
                "columns": [c.to_payload() for c in self.columns.values()],
                "counts": dict(self.counts), "ref_counts": dict(self.ref_counts)}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> PartialProfile:
        _check_format(payload, PARTIAL_FORMAT)
        cols = [ColumnState.from_payload(c) for c in payload["columns"]]
        return cls(rows=int(payload["rows"]), columns={c.name: c for c in cols},
                   counts={str(n): np.asarray(c, dtype=np.int64) for n, c in payload["counts"].items()},
                   ref_counts={str(n): np.asarray(c, dtype=np.int64) for n, c in payload["ref_counts"].items()})
