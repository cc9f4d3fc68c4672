"""Whole tables from files or snapshots, as Arrow (for offline checks; no Ray, no pandas).

:func:`read_table` reads a CSV file, a Parquet file or a folder of Parquet files with pyarrow
(multithreaded), or a snapshot of the raymlops home by id, prefix or tag.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from raymlops.exceptions import NotFound, ValidationError
from raymlops.store.home import Store

__all__ = ["read_table"]


def read_table(ref: str, home: str | Path | None = None) -> tuple[pa.Table, str]:
    """``(table, description)`` from a CSV/Parquet path or a snapshot reference, as Arrow."""
    p = Path(ref)
    try:
        if p.is_dir() or p.suffix.lower() in (".parquet", ".pq"):
            if not p.exists():
                raise NotFound(f"{ref}: no such file")
            import pyarrow.parquet as pq

            return pq.read_table(p), f"parquet {p}"
        if p.suffix.lower() in (".csv", ".tsv", ".txt") or p.is_file():
            if not p.is_file():
                raise NotFound(f"{ref}: no such file")
            import pyarrow.csv as pcsv

            delimiter = "\t" if p.suffix.lower() == ".tsv" else ","
            return pcsv.read_csv(p, parse_options=pcsv.ParseOptions(delimiter=delimiter)), f"csv {p}"
    except (ValueError, OSError, pa.ArrowException) as exc:
        raise ValidationError(f"{ref}: cannot read it as a table: {exc}") from None
    # pandas and scipy (~1 s): only when the table is a snapshot, not a file (`raymlops monitor check a.csv b.csv`)
    from raymlops.data.snapshot_read import read_snapshot

    info, table = read_snapshot(Store.open(home), ref)
    return table, f"snapshot {info.short}"
