"""Whole tables from files or snapshots, as Arrow (for offline checks; no Ray, no pandas).

:func:`read_table` reads a CSV file, a Parquet file or a folder of Parquet files with pyarrow
(multithreaded), or a snapshot of the raymlops home by id, prefix or tag. :func:`open_table`
is the same, except that a Parquet file comes back as :class:`ParquetColumns`, read a column at
a time when asked (memory-mapped): a check that tests one column after another then holds only
the columns in flight, not the whole file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from raymlops.exceptions import NotFound, RaymlopsError, ValidationError
from raymlops.store.home import Store

__all__ = ["ParquetColumns", "open_table", "pandas_index_columns", "read_table"]

#: the name pandas gives an unnamed index that it stores as a column
_PANDAS_INDEX = re.compile(r"__index_level_\d+__")


def pandas_index_columns(schema: pa.Schema) -> list[str]:
    """The columns of ``schema`` that hold an unnamed pandas index, not data.

    ``DataFrame.to_parquet`` stores the index as a column whenever it is not a plain range (the
    rows were filtered, sampled or shuffled), names it ``__index_level_0__`` and lists it in the
    file's pandas metadata; pandas reads it back as the index, and alibi-detect, Evidently or
    scikit-learn, given that DataFrame, never see it. Read as a column it would be a feature
    (the row numbers: a leak into training, and a field every request would have to send), so
    the readers of user files leave these out. A named index (``df.set_index("id")``) is data
    the user named, and stays a column."""
    meta = schema.metadata or {}
    if b"pandas" not in meta:
        return []
    try:
        index = json.loads(meta[b"pandas"]).get("index_columns", [])
    except (ValueError, AttributeError):  # not pandas' JSON: nothing to leave out
        return []
    names = set(schema.names)
    return [c for c in index if isinstance(c, str) and _PANDAS_INDEX.fullmatch(c) and c in names]


def _without_pandas_index(table: pa.Table) -> pa.Table:
    index = pandas_index_columns(table.schema)
    return table.drop_columns(index) if index else table


def read_table(ref: str, home: str | Path | None = None) -> tuple[pa.Table, str]:
    """``(table, description)`` from a CSV, JSON (Lines) or Parquet path or a snapshot reference,
    as Arrow; as ``data.source`` reads them, the format is the file's extension."""
    p = Path(ref)
    table: pa.Table | None = None
    try:
        if p.is_dir() or p.suffix.lower() in (".parquet", ".pq"):
            if not p.exists():
                raise NotFound(f"{ref}: no such file")
            import pyarrow.parquet as pq

            # one file: read it directly (pq.read_table goes through pyarrow.dataset, which imports pandas)
            table = _without_pandas_index(pq.read_table(p) if p.is_dir() else pq.ParquetFile(p, memory_map=True).read())
            desc = f"parquet {p}"
        elif p.suffix.lower() in (".json", ".jsonl", ".ndjson"):
            if not p.is_file():
                raise NotFound(f"{ref}: no such file")
            table, desc = _read_json(p), f"json {p}"
        elif p.suffix.lower() in (".csv", ".tsv", ".txt") or p.is_file():
            if not p.is_file():
                raise NotFound(f"{ref}: no such file")
            import pyarrow.csv as pcsv

            delimiter = "\t" if p.suffix.lower() == ".tsv" else ","
            table = pcsv.read_csv(p, parse_options=pcsv.ParseOptions(delimiter=delimiter),
                                  convert_options=csv_convert_options())
            desc = f"csv {p}"
    except RaymlopsError:
        raise
    except (ValueError, OSError, pa.ArrowException) as exc:
        raise ValidationError(f"{ref}: cannot read it as a table: {exc}") from None
    if table is not None:
        _named_once(table.column_names, ref)
        return table, desc
    # pandas and scipy (~1 s): only when the table is a snapshot, not a file (`raymlops monitor check a.csv b.csv`)
    from raymlops.data.snapshot_read import read_snapshot

    info, table = read_snapshot(Store.open(home), ref)
    return table, f"snapshot {info.short}"


def _named_once(names: Sequence[str], ref: str) -> None:
    """A :class:`ValidationError` when a column name appears more than once (a column asked for by
    name would be ambiguous)."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValidationError(f"{ref}: column {name!r} appears {list(names).count(name)} times: "
                                  "give each column its own name")
        seen.add(name)


def _read_json(p: Path) -> pa.Table:
    """JSON Lines (one object per line, what Ray Data's ``read_json`` reads), or one JSON array of
    objects."""
    import pyarrow.json as pajson

    try:
        return pajson.read_json(p)
    except pa.ArrowInvalid:
        with p.open("rb") as f:
            first = f.read(64).lstrip()
        if not first.startswith(b"["):
            raise
    rows = json.loads(p.read_bytes())
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValidationError(f"{p}: expected JSON Lines or a JSON array of objects")
    return pa.Table.from_pylist(rows)


class ParquetColumns:
    """A Parquet file as a table whose columns are read when asked, one at a time (memory-mapped;
    safe to call from several threads: each read opens its own reader on the parsed footer).
    Quacks like :class:`pyarrow.Table` for what a check needs: ``column_names``, ``schema``,
    ``num_rows`` / ``len()`` and ``column(name)``. A stored pandas index is not one of its
    columns (:func:`pandas_index_columns`)."""

    def __init__(self, path: str | Path) -> None:
        import pyarrow.parquet as pq

        self.path = Path(path)
        first = pq.ParquetFile(self.path, memory_map=True)
        self._metadata = first.metadata
        schema = first.schema_arrow
        for name in pandas_index_columns(schema):
            schema = schema.remove(schema.get_field_index(name))
        self.schema: pa.Schema = schema
        _named_once(schema.names, str(path))
        self.column_names: list[str] = list(schema.names)
        self.num_rows: int = int(self._metadata.num_rows)

    def __len__(self) -> int:
        return self.num_rows

    def column(self, name: str) -> pa.ChunkedArray:
        import pyarrow.parquet as pq

        if name not in self.column_names:
            raise KeyError(name)
        try:
            reader = pq.ParquetFile(self.path, memory_map=True, metadata=self._metadata)
            return reader.read(columns=[name], use_threads=False).column(0)
        except (OSError, pa.ArrowException) as exc:
            raise ValidationError(f"{self.path}: cannot read column {name!r}: {exc}") from None


def csv_convert_options() -> Any:
    """How a CSV's cells become values: an empty cell (or NA, NULL, nan, N/A ...) is missing in a text
    column too, as pandas reads it, not the string ''. Arrow's default keeps '' in text columns:
    an unlabelled row then trained as a class '' and a blank category as a category."""
    import pyarrow.csv as pcsv

    return pcsv.ConvertOptions(strings_can_be_null=True)


def open_table(ref: str, home: str | Path | None = None) -> tuple[Any, str]:
    """``(table, description)`` as :func:`read_table`, except that a Parquet file (not a folder)
    comes back as :class:`ParquetColumns`: its columns are read when a check asks for them."""
    p = Path(ref)
    if p.suffix.lower() in (".parquet", ".pq") and p.is_file():
        try:
            return ParquetColumns(p), f"parquet {p}"
        except RaymlopsError:
            raise
        except (ValueError, OSError, pa.ArrowException) as exc:
            raise ValidationError(f"{ref}: cannot read it as a table: {exc}") from None
    return read_table(ref, home)
