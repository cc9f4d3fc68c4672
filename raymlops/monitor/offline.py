"""Offline drift check: the streaming core on two whole datasets (no Ray).

``check(reference, current, config, slice_columns)`` builds a reference from the first table,
feeds the second through one :class:`StreamState` and returns the verdicts as plain JSON:
``{"drift", "rows", "features": {name: {"test", "statistic", "p_value", "drift", ...}},
"slices": {slice: {"drift", "rows", "features": {...}}}}``. :func:`load_table` reads a CSV or
Parquet file (or folder of Parquet files), or a snapshot of the raymlops home by id, prefix or tag.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raymlops.config import MonitorConfig
from raymlops.exceptions import NotFound, ValidationError
from raymlops.monitor.histograms import histograms as column_histograms
from raymlops.monitor.reference import build_reference
from raymlops.monitor.state import StreamState
from raymlops.monitor.verdicts import SliceVerdict, _clean, evaluate

__all__ = ["check", "load_table"]


def load_table(ref: str, home: str | Path | None = None) -> tuple[pd.DataFrame, str]:
    """``(table, description)`` from a CSV/Parquet path or a snapshot reference."""
    p = Path(ref)
    try:
        if p.is_dir() or p.suffix.lower() in (".parquet", ".pq"):
            if not p.exists():
                raise NotFound(f"{ref}: no such file")
            return pd.read_parquet(p), f"parquet {p}"
        if p.suffix.lower() in (".csv", ".tsv", ".txt") or p.is_file():
            if not p.is_file():
                raise NotFound(f"{ref}: no such file")
            return pd.read_csv(p, sep="\t" if p.suffix.lower() == ".tsv" else ","), f"csv {p}"
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise ValidationError(f"{ref}: cannot read it as a table: {exc}") from None
    from raymlops.data.snapshot import read_snapshot
    from raymlops.store.home import Store

    info, table = read_snapshot(Store.open(home), ref)
    return table.to_pandas(), f"snapshot {info.short}"


def _features(v: SliceVerdict) -> dict[str, Any]:
    return {c.column: {"test": c.test, "statistic": c.statistic, "p_value": c.p_value,
                       "adjusted_p_value": c.adjusted_p_value, "drift": c.drift, "psi": c.psi,
                       "psi_band": c.psi_band, "kind": c.kind, "rows": c.rows, "missing_rate": c.missing_rate,
                       "out_of_range_rate": c.out_of_range_rate, "unseen_rate": c.unseen_rate}
            for c in v.columns}


def check(reference: pd.DataFrame, current: pd.DataFrame, config: MonitorConfig | None = None,
          slice_columns: Sequence[str] = (), columns: Sequence[str] | None = None,
          histograms: bool = False) -> dict[str, Any]:
    """Drift of ``current`` against ``reference`` (see the module docstring); with ``histograms``
    also every column's reference vs current histogram (:mod:`raymlops.monitor.histograms`)."""
    cfg = config or MonitorConfig()
    slices = list(slice_columns) or list(cfg.slice_columns)
    names = list(columns) if columns is not None else [c for c in reference.columns if c not in slices]
    missing = [c for c in (*names, *slices) if c not in current.columns]
    if missing:
        raise ValidationError(f"the current data lacks columns {missing}")
    absent = [c for c in (*names, *slices) if c not in reference.columns]
    if absent:
        raise ValidationError(f"the reference data lacks columns {absent}")
    if len(current) == 0:
        raise ValidationError("the current data has no rows")

    def cols(df: pd.DataFrame) -> dict[str, np.ndarray]:
        out = {}
        for c in dict.fromkeys([*names, *slices]):
            s = df[c]
            numeric = pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)
            out[c] = s.to_numpy(dtype=np.float64, na_value=np.nan) if numeric else s.to_numpy(dtype=object)
        return out

    ref = build_reference(cols(reference), categorical=[c for c in cfg.categorical if c in names],
                          slice_columns=slices, n_bins=cfg.n_bins, fine_bins=cfg.fine_bins,
                          max_categories=cfg.max_categories, max_slices=cfg.max_slices, monitored=names)
    state = StreamState(ref)
    state.update(cols(current))
    verdict = evaluate(state, cfg)
    o = verdict.overall
    hists = column_histograms(state) if histograms else None
    return _clean({
        "drift": o.dataset_drift,
        "rows": {"reference": int(len(reference)), "current": int(len(current))},
        "share_drifted": o.share_drifted,
        "drifted_features": list(o.drifted),
        "correction": cfg.correction,
        "features": _features(o),
        "slices": {s.name: {"drift": s.dataset_drift or bool(s.drifted), "rows": s.rows, "judged": s.judged,
                            "drifted_features": list(s.drifted), "features": _features(s)} for s in verdict.slices},
    } | ({} if hists is None else {"histograms": hists}))
