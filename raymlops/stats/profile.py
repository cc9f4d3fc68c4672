"""Per-column data profiles: finished from mergeable parts, stored as versioned JSON (pure
numpy/pyarrow: no Ray).

The parts (:mod:`raymlops.stats.partial`) are computed block by block and merge exactly in any
order: a bottom-k :class:`~raymlops.stats.partial.Sample` of rows by content hash places the fine
bin edges of every numeric column (up to :data:`FINE_BINS`), and a one-pass
:class:`~raymlops.stats.partial.PartialProfile` holds every column's exact statistics and the
numeric columns' exact counts on those edges (and on a reference's, when given).

:func:`finish` turns them into a :class:`Profile`: count, nulls, min/max, mean/std, quantiles
(interpolated inside the fine bins: within one fine bin, about 0.1 % of the rows, of the exact
value), the fine histogram, category frequencies and, when computed against a reference, the
histogram on the reference's bins. Profiles are stored as JSON with a format id
(:meth:`Profile.to_dict`; :meth:`Profile.from_dict` refuses any other format).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from raymlops.exceptions import ValidationError
from raymlops.stats.bins import COARSE_BINS, FINE_BINS, edges_digest
from raymlops.stats.partial import (
    LOW_CARDINALITY,
    MAX_CATEGORIES,
    SAMPLE_SIZE,
    PartialProfile,
    Sample,
    row_keys,
)

__all__ = [
    "COARSE_BINS",
    "FINE_BINS",
    "FORMAT",
    "LOW_CARDINALITY",
    "MAX_CATEGORIES",
    "QUANTILES",
    "SAMPLE_SIZE",
    "ColumnProfile",
    "Profile",
    "finish",
    "profile_table",
]

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
FORMAT = "raymlops.profile/1"

Table: TypeAlias = pa.Table | pa.RecordBatch
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


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
        cats = d["categories"]
        return cls(
            name=d["name"], type=d["type"], kind=d["kind"], count=int(d["count"]), nulls=int(d["nulls"]),
            infinite=int(d["infinite"]), min=d["min"], max=d["max"], mean=d["mean"], std=d["std"],
            quantiles=dict(d["quantiles"]), edges=np.asarray(d["edges"], dtype=np.float64),
            counts=np.asarray(d["counts"], dtype=np.int64),
            categories=None if cats is None else {k: int(v) for k, v in cats},
            ref_edges=d["ref_edges"],
            ref_counts=None if d["ref_counts"] is None else np.asarray(d["ref_counts"], dtype=np.int64),
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
        found = d.get("format")
        if found != FORMAT:
            what = (f"an unknown profile format version {found!r}" if isinstance(found, str)
                    and found.startswith(FORMAT.split("/")[0] + "/") else f"format {found!r}")
            raise ValidationError(f"not a raymlops profile this version reads ({what}; expected {FORMAT!r})")
        try:
            cols = [ColumnProfile.from_dict(c) for c in d["columns"]]
        except KeyError as exc:
            raise ValidationError(f"profile {FORMAT}: a column lacks the field {exc.args[0]!r}") from None
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


def finish(partial: PartialProfile, edges: Mapping[str, npt.ArrayLike], reference: Profile | None = None
           ) -> Profile:
    """The finished :class:`Profile` from a merged one-pass :class:`PartialProfile` whose numeric
    columns were counted on ``edges`` (and, with ``reference``, on its edges: ``ref_counts``)."""
    cols: dict[str, ColumnProfile] = {}
    for name, st in partial.columns.items():
        if st.numeric:
            e = np.asarray(edges.get(name, []), dtype=np.float64)
            c = np.asarray(partial.counts.get(name, np.zeros(e.size + 1)), dtype=np.int64)
            if int(c.sum()) != st.n or c.size != e.size + 1:
                raise ValidationError(f"column {name!r}: {int(c.sum())} values binned in {c.size} bins but {st.n} "
                                      f"counted for {e.size + 1} bins")
            has = st.n > 0
            kind = "categorical" if st.family == "int" and st.categories is not None else "numeric"
            ref_digest = rc = None
            if reference is not None and name in partial.ref_counts \
                    and name in reference.columns and reference.columns[name].numeric:
                ref_digest = edges_digest(reference.columns[name].edges)
                rc = np.asarray(partial.ref_counts[name], dtype=np.int64)
            cols[name] = ColumnProfile(
                name=name, type=st.type, kind=kind, count=st.count, nulls=st.nulls, infinite=st.infinite,
                min=st.min if has else None, max=st.max if has else None, mean=st.mean if has else None,
                std=(0.0 if st.min == st.max else math.sqrt(st.m2 / st.n)) if has else None,  # a constant: exactly 0
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


def reference_edges(reference: Profile | None, names: Mapping[str, Any] | list[str]) -> dict[str, FloatArray]:
    """The fine edges of ``reference``'s numeric columns among ``names`` (empty without one)."""
    if reference is None:
        return {}
    return {n: e for n, e in reference.edges().items() if n in names}


def profile_table(table: Table, reference: Profile | None = None, sample_size: int = SAMPLE_SIZE,
                  bins: int = FINE_BINS) -> Profile:
    """The profile of one in-memory table (no Ray). Mostly for tests and small data: a snapshot
    computes the same parts block by block in Ray tasks (:mod:`raymlops.data.snapshot`)."""
    edges = Sample.from_table(table, row_keys(table), sample_size).edges(bins)
    partial = PartialProfile.from_table(table, edges, reference_edges(reference, list(edges)))
    return finish(partial, edges, reference)
