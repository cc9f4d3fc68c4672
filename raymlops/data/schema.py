"""Schema inference and checks on Arrow tables (pure: no Ray).

Features are numbers or strings. A string feature is a category, taken by every model as its
:func:`raymlops.features.category_code` (see there); a model's signature lists the categories it
was trained on, at most :data:`STRING_DOMAIN_MAX` per feature.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raymlops.exceptions import ValidationError
from raymlops.features import category_code, delimiter_hint
from raymlops.stats.profile import Profile

#: the most values a string column's inferred domain lists (more: free text, no domain)
STRING_DOMAIN_MAX = 100


@dataclass(frozen=True)
class ColumnSchema:
    """One column: Arrow type, whether it has nulls, numeric range, and (for strings, booleans
    and integers with few values) the domain of values seen."""

    name: str
    type: str
    nullable: bool
    min: float | None = None
    max: float | None = None
    domain: tuple[Any, ...] | None = None

    @property
    def numeric(self) -> bool:
        return self.type.startswith(("int", "uint", "float", "double", "bool", "halffloat"))

    @property
    def categorical(self) -> bool:
        """A string column (plain, large or dictionary-encoded): a categorical feature."""
        return is_string_type(self.type)


@dataclass(frozen=True)
class Schema:
    columns: tuple[ColumnSchema, ...]

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> ColumnSchema:
        for c in self.columns:
            if c.name == name:
                return c
        raise ValidationError(f"column {name!r} not in the schema (columns: {', '.join(self.names)})")

    def to_dict(self) -> list[dict[str, Any]]:
        return [asdict(c) for c in self.columns]

    @classmethod
    def from_dict(cls, data: Sequence[dict[str, Any]]) -> Schema:
        cols = []
        for c in data:
            c = dict(c)
            if c.get("domain") is not None:
                c["domain"] = tuple(c["domain"])
            cols.append(ColumnSchema(**c))
        return cls(tuple(cols))


def schema_from_profile(profile: Profile) -> Schema:
    """The schema of all the profiled rows: exact nullability and ranges, and domains of
    categorical columns (at most :data:`STRING_DOMAIN_MAX` string values)."""
    cols = []
    for c in profile.columns.values():
        domain = None
        if c.categories is not None and c.kind == "categorical" and len(c.categories) <= STRING_DOMAIN_MAX:
            domain = tuple(sorted(c.categories, key=lambda v: (str(type(v)), v)))
        cols.append(ColumnSchema(name=c.name, type=c.type, nullable=c.nulls > 0,
                                 min=c.min if c.mean is not None else None,
                                 max=c.max if c.mean is not None else None, domain=domain))
    return Schema(tuple(cols))


def infer_schema(table: pa.Table) -> Schema:
    """Types, nullability and numeric ranges of every column."""
    cols = []
    for name, col in zip(table.column_names, table.columns, strict=True):
        lo = hi = None
        if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
            mm = pc.min_max(col)
            if mm["min"].is_valid:
                lo, hi = float(mm["min"].as_py()), float(mm["max"].as_py())
        cols.append(ColumnSchema(name=name, type=str(col.type), nullable=col.null_count > 0, min=lo, max=hi))
    return Schema(tuple(cols))


def check_training_schema(schema: Schema, target: str, features: Sequence[str] | None,
                          target_checked: bool = False) -> list[str]:
    """Check that the table can train a model; returns the feature columns.

    Raises :class:`ValidationError` naming the first column that is missing, not numeric, without
    a name (unless ``features`` leaves it out), or (for the target) has missing values, unless
    ``target_checked``: the row checks refuse a missing target (``data.schema``'s ``nullable: false``),
    so that those rows fail or go to quarantine there, by ``data.on_invalid``.
    """
    names = schema.names
    if target not in names:
        raise ValidationError(f"data.target: column {target!r} not found (columns: {', '.join(names)})"
                              f"{delimiter_hint(names)}")
    if schema.column(target).nullable and not target_checked:
        raise ValidationError(
            f"data.target: column {target!r} has missing values; a model cannot learn from rows without a label. "
            f"Drop them at the source, or set them aside: data.schema: {{{target}: {{nullable: false}}}} with "
            "data.on_invalid: quarantine")
    if not features and "" in names:  # would be a feature nobody can name (in a request, a config, a report)
        raise ValidationError(
            f"column {names.index('') + 1} of the data has no name (pandas writes its index so: "
            "DataFrame.to_csv(path, index=False) leaves it out); name the column, or list the features in "
            "data.features")
    chosen = list(features) if features else [n for n in names if n != target]
    if target in chosen:
        raise ValidationError(f"data.features: the target {target!r} cannot also be a feature")
    for name in chosen:
        if name not in names:
            raise ValidationError(f"data.features: column {name!r} not found (columns: {', '.join(names)})"
                                  f"{delimiter_hint(names)}")
        col = schema.column(name)
        if not col.numeric and not col.categorical:
            raise ValidationError(f"column {name!r}: expected a number or a string (a category), found {col.type}; "
                                  "cast it with data.transforms, or leave it out with data.features")
    if not chosen:
        raise ValidationError("data.features: no feature columns left besides the target")
    return chosen


def is_string_type(type_name: str) -> bool:
    """Whether an Arrow type's name (``str(pa.DataType)``) is a string type, dictionary-encoded or not."""
    return type_name in ("string", "large_string", "utf8", "large_utf8") or type_name.startswith(
        ("dictionary<values=string", "dictionary<values=large_string"))


def category_codes(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """:func:`~raymlops.features.category_code` of every value of a string column (nulls become NaN)."""
    column = _plain(column)
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    encoded = pc.dictionary_encode(column)
    codes = np.array([category_code(v) for v in encoded.dictionary.to_pylist()] + [np.nan], dtype=np.float64)
    # a null's index is the NaN appended last
    idx = pc.fill_null(encoded.indices, len(encoded.dictionary)).to_numpy(zero_copy_only=False)
    return codes[idx]


def _plain(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A dictionary-encoded column (pandas' ``category``) as its values (chunks may differ in
    dictionary; Arrow's distinct counts take no dictionaries)."""
    return column.cast(column.type.value_type) if pa.types.is_dictionary(column.type) else column


def missing_labels(column: pa.Array | pa.ChunkedArray) -> tuple[int, int | None]:
    """``(rows with no value, the first of them)`` of a target column: nulls, and NaN in a float
    column (a CSV's empty cell, ``None`` in a DataFrame)."""
    gone = pc.is_null(column, nan_is_null=True)
    count = int(pc.sum(gone).as_py() or 0)
    return count, (int(pc.index(gone, True).as_py()) if count else None)


def missing_labels_error(target: str, count: int, rows: int, first: int | None) -> ValidationError:
    """The error of a target column with ``count`` of ``rows`` rows unlabelled (``first``: the first,
    0-based, counting the snapshot's rows)."""
    where = f" (the first is row {first})" if first is not None else ""
    return ValidationError(
        f"data.target {target!r}: {count} of {rows} rows have no value{where}; a model cannot learn from them. "
        f"Drop them at the source, or set them aside: data.schema: {{{target}: {{nullable: false}}}} with "
        "data.on_invalid: quarantine")


def column_array(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A column's values as numpy, a dictionary-encoded one decoded first: pyarrow's
    ``ChunkedArray.to_numpy`` gives a null of a dictionary column another row's value (26.0.1)."""
    return _plain(column).to_numpy(zero_copy_only=False)


def feature_values(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """One feature column as a model takes it: numbers as float64 (nulls NaN), strings as
    :func:`category_codes`."""
    if is_string_type(str(column.type)):
        return category_codes(column)
    return column.to_numpy(zero_copy_only=False).astype(np.float64)


def table_columns(table: pa.Table, names: Sequence[str]) -> np.ndarray:
    """The named feature columns as one float64 matrix (:func:`feature_values`; nulls become NaN)."""
    return np.column_stack([feature_values(table.column(n)) for n in names])


def feature_categories(schema: Schema, features: Sequence[str]) -> dict[str, list[str]]:
    """The categories of each string feature, as the (snapshot's) schema records them; a string
    column with too many distinct values to have a domain (free text, an id) is a ValidationError
    naming it."""
    out: dict[str, list[str]] = {}
    for name in features:
        col = schema.column(name)
        if not col.categorical:
            continue
        if col.domain is None:
            raise _too_many_categories(name)
        out[name] = [str(v) for v in col.domain]
    return out


def check_category_counts(table: pa.Table, features: Sequence[str]) -> None:
    """A ValidationError naming the first string feature with more than :data:`STRING_DOMAIN_MAX`
    distinct values in ``table`` (the schema step's sample: refused before anything is stored)."""
    for name in features:
        column = table.column(name)
        if is_string_type(str(column.type)) and pc.count_distinct(_plain(column)).as_py() > STRING_DOMAIN_MAX:
            raise _too_many_categories(name)


def _too_many_categories(name: str) -> ValidationError:
    return ValidationError(
        f"column {name!r}: a string feature is a category, and this one has more than {STRING_DOMAIN_MAX} "
        "distinct values (free text or an id?); leave it out with data.features, or derive a category "
        "from it with data.transforms")


def schema_changes(old: Schema, new: Schema) -> list[str]:
    """Columns added, removed, or with another type or nullability, from ``old`` to ``new``; and
    for a column whose values both schemas list (strings, booleans, integers with few values), the
    values new to it and those gone from it (as TFX's schema check reports unexpected values)."""
    a = {c.name: c for c in old.columns}
    b = {c.name: c for c in new.columns}
    out = [f"column {n!r} removed" for n in a if n not in b]
    out += [f"column {n!r} added ({b[n].type})" for n in b if n not in a]
    for n in a:
        if n in b:
            if a[n].type.removeprefix("large_") != b[n].type.removeprefix("large_"):  # one type, two encodings
                out.append(f"column {n!r}: type {a[n].type} -> {b[n].type}")
            if a[n].nullable != b[n].nullable:
                out.append(f"column {n!r}: {'now has' if b[n].nullable else 'no longer has'} nulls")
            dom_a, dom_b = a[n].domain, b[n].domain
            if dom_a is not None and dom_b is not None:
                before, after = set(map(str, dom_a)), set(map(str, dom_b))
                for word, values in (("new values", after - before), ("values gone", before - after)):
                    if values:
                        shown = sorted(values)
                        more = f" and {len(shown) - 5} more" if len(shown) > 5 else ""
                        out.append(f"column {n!r}: {word} {', '.join(map(repr, shown[:5]))}{more}")
    return out
