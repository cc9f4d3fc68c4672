"""The monitor's reference: per-column buckets, reference counts per slice, and bucketing.

A :class:`MonitorReference` is built once from reference data (the training snapshot by
default) and never changes. It fixes, for every monitored column,

- **numeric** columns: fine quantile edges ``[min, q_1 … q_{k-1}, next(max)]``, so a value
  falls in *below the reference range*, one of the interior quantile bins, *above the range*,
  or *missing* (NaN/None); a grouping of the fine bins into about ``n_bins`` coarse bins of
  equal reference mass (for PSI and chi-square);
- **categorical** columns: a category index (the ``max_categories`` most frequent reference
  values), an *other* bucket (values not indexed, unseen ones included) and a *missing* bucket;
- **slices**: the ``max_slices`` most frequent values of the slice columns in the reference,
  plus an ``other`` slice for every value not among them;

and the reference counts on those buckets per slice. :meth:`MonitorReference.bucketize` maps a
batch of columns to slice and bucket indices with vectorised numpy; the streaming state counts
those. Pure numpy/pandas: no Ray.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from raymlops.exceptions import ValidationError
from raymlops.monitor.bucketing import GridSet
from raymlops.monitor.columns import (
    CATEGORICAL,
    NUMERIC,
    ColumnReference,
    _frozen,
    _Index,
    _to_float,
    categorical_column,
    check_int,
    labels_of,
    numeric_column,
)

__all__ = [
    "CATEGORICAL",
    "NUMERIC",
    "OTHER_SLICE",
    "PREDICTION",
    "ColumnReference",
    "MonitorReference",
    "build_reference",
    "labels_of",
]

#: name of the slice holding every row whose slice value is not among the reference's top ones
OTHER_SLICE = "other"
#: name of the one slice when no slice columns are configured
ALL_SLICE = "all"
#: reference column that holds the model's predictions (prediction drift), when present
PREDICTION = "__prediction__"
_FORMAT = "raymlops.monitor-reference/2"


@dataclass(frozen=True, eq=False)
class MonitorReference:
    """Every monitored column, the slices, and the reference counts per slice and bucket.

    ``counts`` has one row per slice (``slices``) and one column per bucket of every column, in
    column order (``offsets[i]`` is where column ``i``'s buckets start).
    """

    columns: tuple[ColumnReference, ...]
    slice_columns: tuple[str, ...]
    slices: tuple[str, ...]
    counts: np.ndarray
    #: what rows of each named slice (every slice but ``other``) hold in the slice columns, as
    #: :func:`labels_of` writes it; None: the value in the slice's name (``col=value``). A string
    #: feature is monitored as its category codes, so its slices are named by the category and
    #: looked up by the code.
    slice_keys: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        cols = tuple(self.columns)
        if not cols:
            raise ValidationError("a reference needs at least one column")
        names = [c.name for c in cols]
        if len(set(names)) != len(names):
            raise ValidationError(f"reference column names must be unique, got {names}")
        object.__setattr__(self, "columns", cols)
        object.__setattr__(self, "slice_columns", tuple(self.slice_columns))
        object.__setattr__(self, "slices", tuple(self.slices))
        sizes = np.array([c.n_buckets for c in cols], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        counts = _frozen(self.counts, np.int64)
        if counts.shape != (len(self.slices), int(sizes.sum())):
            raise ValidationError(
                f"reference counts must have shape ({len(self.slices)}, {int(sizes.sum())}), got {counts.shape}")
        if self.slice_columns and self.slices[-1] != OTHER_SLICE:
            raise ValidationError("with slice columns, the last slice must be 'other'")
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "offsets", offsets)
        object.__setattr__(self, "sizes", sizes)
        self._build_grids()
        keys = self.slice_keys
        if keys is None:
            keys = tuple(s.split("=", 1)[1] if len(self.slice_columns) == 1 else s for s in self.slices[:-1])
        elif not self.slice_columns or len(keys) != len(self.slices) - 1:
            raise ValidationError(f"slice_keys must name every slice but 'other': {len(self.slices) - 1} keys, "
                                  f"got {len(keys)}")
        object.__setattr__(self, "slice_keys", tuple(keys) if self.slice_columns else None)
        object.__setattr__(self, "_slice_index", _Index(tuple(keys)) if self.slice_columns else None)
        object.__setattr__(self, "_by_name", {c.name: i for i, c in enumerate(cols)})

    offsets: np.ndarray = field(init=False, repr=False)  # where each column's buckets start
    sizes: np.ndarray = field(init=False, repr=False)  # buckets per column
    _slice_index: _Index | None = field(init=False, repr=False)
    _numeric_rows: np.ndarray = field(init=False, repr=False)  # indices of the numeric columns
    _grids: GridSet = field(init=False, repr=False)
    _by_name: dict[str, int] = field(init=False, repr=False)

    def _build_grids(self) -> None:
        numeric = np.array([i for i, c in enumerate(self.columns) if c.kind == NUMERIC], dtype=np.int64)
        numeric.setflags(write=False)
        object.__setattr__(self, "_numeric_rows", numeric)
        object.__setattr__(self, "_grids", GridSet([self.columns[i].edges for i in numeric.tolist()],
                                                   self.offsets[numeric].tolist()))

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_grids", None)  # derived (a few MB of lookup tables): rebuilt on load, not pickled
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "_grids" not in state:
            self._build_grids()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def features(self) -> tuple[str, ...]:
        """Monitored input columns (the prediction column excluded)."""
        return tuple(c.name for c in self.columns if c.name != PREDICTION)

    @property
    def numeric_rows(self) -> npt.NDArray[np.int64]:
        """Indices of the numeric columns, in column order (read-only)."""
        return self._numeric_rows

    @property
    def n_slices(self) -> int:
        return len(self.slices)

    @property
    def n_buckets(self) -> int:
        cached = self.__dict__.get("_n_buckets")  # read at every batch and window: summed once
        if cached is None:
            cached = int(self.sizes.sum())
            object.__setattr__(self, "_n_buckets", cached)
        return int(cached)

    def column(self, name: str) -> ColumnReference:
        return self.columns[self.index(name)]

    def index(self, name: str) -> int:
        try:
            return int(self._by_name[name])
        except KeyError:
            raise ValidationError(f"no column {name!r} in the reference; columns: {list(self.names)}") from None

    def column_counts(self, name: str, slice_index: int | None = None) -> npt.NDArray[np.int64]:
        """Reference counts on ``name``'s buckets, for one slice or (None) all rows."""
        i = self.index(name)
        block = self.counts[:, self.offsets[i]: self.offsets[i] + self.sizes[i]]
        return (block.sum(axis=0) if slice_index is None else block[slice_index]).astype(np.int64)

    # -- bucketing ---------------------------------------------------------------------------
    def slice_of(self, columns: Mapping[str, Any], n_rows: int) -> npt.NDArray[np.int64]:
        """Slice index of every row (0 when there are no slice columns)."""
        if not self.slice_columns:
            return np.zeros(n_rows, dtype=np.int64)
        index = self._slice_index
        assert index is not None
        if len(self.slice_columns) == 1:
            pos, _ = index.lookup(_column(columns, self.slice_columns[0], n_rows))
        else:
            parts = [labels_of(_column(columns, c, n_rows))[0] for c in self.slice_columns]
            keys = np.array([",".join(f"{c}={v}" for c, v in zip(self.slice_columns, row, strict=True))
                             for row in zip(*parts, strict=True)], dtype=object)
            pos = index._pd.get_indexer(type(index._pd)(keys)).astype(np.int64)
        return np.where(pos < 0, self.n_slices - 1, pos).astype(np.int64)

    def bucketize(self, columns: Mapping[str, Any]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], int]:
        """``(slice index per row, global bucket index (columns x rows), rows)`` of a batch.

        ``columns`` maps every reference column (and slice column) to equal-length 1-D values;
        extra columns are ignored. A bad batch raises :class:`ValidationError` and changes nothing.
        """
        if not isinstance(columns, Mapping):
            raise ValidationError(f"columns must be a mapping of name -> values, got {type(columns).__name__}")
        missing = [n for n in (*self.names, *self.slice_columns) if n not in columns]
        if missing:
            raise ValidationError(f"batch lacks reference columns {sorted(set(missing))}")
        slice_idx, idx, n, _ = self.bucketize_batch(columns)
        return slice_idx, idx, n

    def bucketize_batch(self, columns: Mapping[str, Any]) -> tuple[
            npt.NDArray[np.int64], npt.NDArray[np.int64], int, npt.NDArray[np.float64]]:
        """:meth:`bucketize`, plus the numeric columns' values as one ``(numeric columns, rows)``
        float64 matrix (for the moments). Every numeric column is bucketed at once on stacked
        lookup grids (:class:`raymlops.monitor.bucketing.GridSet`)."""
        if not isinstance(columns, Mapping):
            raise ValidationError(f"columns must be a mapping of name -> values, got {type(columns).__name__}")
        missing = [n for n in (*self.names, *self.slice_columns) if n not in columns]
        if missing:
            raise ValidationError(f"batch lacks reference columns {sorted(set(missing))}")
        first = np.asarray(columns[self.columns[0].name])
        n = int(first.shape[0]) if first.ndim == 1 else -1
        rows = max(n, 0)
        numeric = self._numeric_rows
        idx = np.empty((len(self.columns), rows), dtype=np.int64)
        x = np.empty((numeric.size, rows), dtype=np.float64)
        j = 0
        for i, col in enumerate(self.columns):
            values = np.asarray(columns[col.name])
            if values.ndim != 1 or values.shape[0] != n:
                raise ValidationError(f"column {col.name!r}: expected 1-D values of length {n}, got {values.shape}")
            if col.kind == NUMERIC:
                x[j] = values if values.dtype.kind in "biuf" else _to_float(values, col.name)
                j += 1
            else:
                np.add(col.bucketize(values), self.offsets[i], out=idx[i])
        slice_idx = self.slice_of(columns, n)
        if numeric.size and rows:
            lo, hi = int(numeric[0]), int(numeric[-1]) + 1
            if hi - lo == numeric.size:  # the numeric columns are adjacent: write in place
                self._grids.lookup(x, idx[lo:hi])
            else:
                out = np.empty((numeric.size, rows), dtype=np.int64)
                self._grids.lookup(x, out)
                idx[numeric] = out
        return slice_idx, idx, n, x

    # -- persistence --------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": _FORMAT, "columns": [c.to_dict() for c in self.columns],
                "slice_columns": list(self.slice_columns), "slices": list(self.slices),
                "slice_keys": None if self.slice_keys is None else list(self.slice_keys),
                "counts": self.counts.tolist()}

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MonitorReference:
        if not isinstance(data, Mapping) or data.get("format") != _FORMAT:
            raise ValidationError(f"not a raymlops monitor reference: expected format {_FORMAT!r}")
        try:
            return cls(columns=tuple(ColumnReference.from_dict(c) for c in data["columns"]),
                       slice_columns=tuple(data["slice_columns"]), slices=tuple(data["slices"]),
                       counts=np.asarray(data["counts"], dtype=np.int64).reshape(len(data["slices"]), -1),
                       slice_keys=None if data.get("slice_keys") is None else tuple(data["slice_keys"]))
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ValidationError):
                raise
            raise ValidationError(f"malformed monitor reference: {exc!r}") from exc

    @classmethod
    def from_json(cls, data: bytes) -> MonitorReference:
        return cls.from_dict(json.loads(data))

    @property
    def digest(self) -> str:
        """sha256 of the canonical JSON: equal digests, same reference."""
        cached = self.__dict__.get("_digest")
        if cached is None:
            cached = hashlib.sha256(self.to_json()).hexdigest()
            object.__setattr__(self, "_digest", cached)
        return str(cached)

    def same_as(self, other: MonitorReference) -> bool:
        return self is other or self.digest == other.digest


def _column(columns: Mapping[str, Any], name: str, n: int) -> npt.NDArray[Any]:
    values = np.asarray(columns[name])
    if values.ndim != 1 or values.shape[0] != n:
        raise ValidationError(f"column {name!r}: expected 1-D values of length {n}, got shape {values.shape}")
    return values


def build_reference(
    columns: Mapping[str, npt.ArrayLike],
    *,
    categorical: Sequence[str] = (),
    slice_columns: Sequence[str] = (),
    n_bins: int = 10,
    fine_bins: int = 100,
    max_categories: int = 50,
    max_slices: int = 20,
    monitored: Sequence[str] | None = None,
    category_names: Mapping[str, Mapping[str, str]] | None = None,
    discrete_max_values: int = 50,
) -> MonitorReference:
    """Build a reference from equal-length reference columns.

    Columns of string, object or boolean dtype, and those named in ``categorical``, are
    categorical; the rest numeric. ``monitored`` picks the monitored columns (default: every
    column that is not only a slice column). A column named :data:`PREDICTION` holds
    reference predictions (prediction drift). ``category_names``: per categorical column, label ->
    what reports call it (a string feature monitored as its category codes, see
    :attr:`~raymlops.monitor.columns.ColumnReference.display`). ``discrete_max_values``
    (``monitor.discrete_max_values``): a numeric column of integers on at most this many values is
    bucketed per value and tested on that support (chi-square), as the offline check tests it; 0: never.
    """
    n_bins = check_int(n_bins, "n_bins", 2)
    fine_bins = check_int(fine_bins, "fine_bins", n_bins)
    max_categories = check_int(max_categories, "max_categories", 1)
    max_slices = check_int(max_slices, "max_slices", 1)
    if not isinstance(columns, Mapping) or not columns:
        raise ValidationError("columns must be a non-empty mapping of name -> values")
    lengths = {name: np.asarray(v).shape for name, v in columns.items()}
    if len(set(lengths.values())) > 1 or any(len(s) != 1 for s in lengths.values()):
        raise ValidationError(f"columns must be 1-D and all of the same length, got shapes {lengths}")
    n = next(iter(lengths.values()))[0]
    if n == 0:
        raise ValidationError("the reference has no rows")
    for name in (*categorical, *slice_columns, *(monitored or ())):
        if name not in columns:
            raise ValidationError(f"column {name!r} is not in the reference data; columns: {list(columns)}")
    names = list(monitored) if monitored is not None else [c for c in columns if c not in slice_columns]
    if not names:
        raise ValidationError("no column left to monitor")
    cols = []
    for name in names:
        values = np.asarray(columns[name])
        if name in categorical or values.dtype.kind in "OUSb":
            cols.append(categorical_column(name, values, max_categories, (category_names or {}).get(name)))
        else:
            cols.append(numeric_column(name, values, fine_bins, n_bins, discrete_max_values))
    slices: tuple[str, ...] = (ALL_SLICE,)
    keys: tuple[str, ...] | None = None
    if slice_columns:
        # a slice is looked up by its values' labels and named by how reports show them (a string
        # feature: its category, not the code it is monitored as)
        shown = [(category_names or {}).get(c) or {} for c in slice_columns]
        parts = [np.asarray(labels_of(np.asarray(columns[c]))[0]).astype(str) for c in slice_columns]
        if len(slice_columns) == 1:
            lookup = parts[0]
        else:
            lookup = np.array([",".join(f"{c}={v}" for c, v in zip(slice_columns, row, strict=True))
                               for row in zip(*parts, strict=True)], dtype=object).astype(str)
        uniq, first, counts = np.unique(lookup, return_index=True, return_counts=True)
        order = sorted(range(uniq.size), key=lambda i: (-int(counts[i]), str(uniq[i])))[:max_slices]
        keys = tuple(str(uniq[i]) for i in order)
        named = [",".join(f"{c}={m.get(str(p[first[i]]), str(p[first[i]]))}" for c, m, p in
                          zip(slice_columns, shown, parts, strict=True)) for i in order]
        slices = (*named, OTHER_SLICE)
    shell = MonitorReference(columns=tuple(cols), slice_columns=tuple(slice_columns), slices=slices,
                             counts=np.zeros((len(slices), sum(c.n_buckets for c in cols)), dtype=np.int64),
                             slice_keys=keys)
    slice_idx, idx, _ = shell.bucketize(columns)
    total = shell.n_buckets
    flat = (slice_idx[None, :] * total + idx).ravel()
    counts = np.bincount(flat, minlength=len(slices) * total).reshape(len(slices), total)
    return MonitorReference(columns=shell.columns, slice_columns=shell.slice_columns, slices=slices, counts=counts,
                            slice_keys=shell.slice_keys)

