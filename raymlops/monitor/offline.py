"""Offline drift check of two whole datasets, with exact tests (no Ray, no sketches).

:func:`check` is :func:`raymlops.stats.offline.check_tables` (exact tests of every column; see
:mod:`raymlops.stats.exact` for which column gets which test, and why; the dataset verdict is
:mod:`raymlops.stats.verdict`'s rule), plus, with ``histograms``, every column's plot data from
both datasets' rows (:func:`raymlops.monitor.histograms.rows_histograms`) for reports.
:func:`read_table` reads a CSV or Parquet file (or folder of Parquet files), or a snapshot of the
raymlops home by id, prefix or tag, as Arrow; :func:`load_table` the same into pandas.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raymlops.config import MonitorConfig
from raymlops.data.tables import read_table
from raymlops.monitor.histograms import rows_histograms
from raymlops.stats.exact import CATEGORICAL
from raymlops.stats.offline import check_tables

__all__ = ["check", "load_table", "read_table"]


def load_table(ref: str, home: str | Path | None = None) -> tuple[Any, str]:
    """``(pandas DataFrame, description)``: :func:`read_table` converted to pandas."""
    table, desc = read_table(ref, home)
    return table.to_pandas(), desc


def check(reference: Any, current: Any, config: MonitorConfig | None = None,
          slice_columns: Sequence[str] = (), columns: Sequence[str] | None = None,
          histograms: bool = False, threads: int | None = None) -> dict[str, Any]:
    """Drift of ``current`` against ``reference`` (pandas DataFrames or Arrow tables): the JSON of
    :func:`raymlops.stats.offline.check_tables`; with ``histograms`` also ``"histograms"``, every
    column's reference vs current plot data from both datasets' rows. ``threads``: columns tested
    at once (default: the CPUs)."""
    result = check_tables(reference, current, config, slice_columns=slice_columns, columns=columns,
                          threads=threads)
    if histograms:
        kinds = {name: (CATEGORICAL if f["kind"] == CATEGORICAL else "numeric")
                 for name, f in result["features"].items()}
        result["histograms"] = rows_histograms(reference, current, kinds)
    return result
