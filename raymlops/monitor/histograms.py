"""Reference vs current histograms of a monitor state, for reports (plain JSON, no plotting).

A numeric column's fine quantile buckets are grouped into at most ``max_bins`` runs of about
equal reference mass (the way the coarse PSI bins are made); each run keeps its real edges, so
``count / (rows * width)`` is a density. Values below or above the reference range and missing
ones are counted apart (they have no width). A categorical column keeps its buckets (the
categories, ``(other)``, ``(missing)``); past ``max_bins`` of them the rarest are summed into
``(rest)``. Everything comes from the counts the streaming state already holds: any window of
the live monitor can be drawn without its rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from raymlops.exceptions import ValidationError
from raymlops.monitor.reference import CATEGORICAL, ColumnReference, _coarse_groups, check_int
from raymlops.monitor.state import StreamState

__all__ = ["column_histogram", "histograms"]

REST = "(rest)"


def _numeric(col: ColumnReference, ref: npt.NDArray[np.int64], cur: npt.NDArray[np.int64],
             max_bins: int) -> dict[str, Any]:
    groups = _coarse_groups(ref, max_bins)  # 0 below, 1..g interior, g+1 above, g+2 missing
    n_inner = int(groups[-1]) - 2
    first = np.searchsorted(groups[1:-2], np.arange(1, n_inner + 1), side="left") + 1  # first fine bucket of a run
    last = np.searchsorted(groups[1:-2], np.arange(1, n_inner + 1), side="right")  # last fine bucket of a run
    edges = np.concatenate([col.edges[first - 1], col.edges[last[-1:]]])
    ref_g = np.bincount(groups, weights=ref, minlength=n_inner + 3).astype(np.int64)
    cur_g = np.bincount(groups, weights=cur, minlength=n_inner + 3).astype(np.int64)

    def outside(c: npt.NDArray[np.int64]) -> dict[str, int]:
        return {"below": int(c[0]), "above": int(c[-2]), "missing": int(c[-1])}

    return {"kind": "numeric", "edges": edges.tolist(), "reference": ref_g[1:-2].tolist(),
            "current": cur_g[1:-2].tolist(), "reference_outside": outside(ref_g), "current_outside": outside(cur_g)}


def _categorical(col: ColumnReference, ref: npt.NDArray[np.int64], cur: npt.NDArray[np.int64],
                 max_bins: int) -> dict[str, Any]:
    labels = col.bucket_labels()
    ref_l, cur_l = ref.tolist(), cur.tolist()
    if len(labels) > max_bins:
        share = ref / max(int(ref.sum()), 1) + cur / max(int(cur.sum()), 1)
        keep = sorted(np.argsort(-share, kind="stable")[: max_bins - 1].tolist())
        rest = sorted(set(range(len(labels))) - set(keep))
        labels = [labels[i] for i in keep] + [REST]
        ref_l = [ref_l[i] for i in keep] + [int(ref[rest].sum())]
        cur_l = [cur_l[i] for i in keep] + [int(cur[rest].sum())]
    return {"kind": "categorical", "labels": labels, "reference": ref_l, "current": cur_l}


def column_histogram(state: StreamState, name: str, slice_index: int | None = None,
                     max_bins: int = 20) -> dict[str, Any]:
    """One column's histogram on ``state`` (all rows, or one slice); see the module docstring."""
    max_bins = check_int(max_bins, "max_bins", 2)
    ref_state = state.reference
    col = ref_state.column(name)
    ref = ref_state.column_counts(name, slice_index)
    cur = state.column_counts(name, slice_index)
    out = _categorical(col, ref, cur, max_bins) if col.kind == CATEGORICAL else _numeric(col, ref, cur, max_bins)
    out.update(reference_rows=int(ref.sum()), current_rows=int(cur.sum()))
    return out


def histograms(state: StreamState, max_bins: int = 20) -> dict[str, dict[str, Any]]:
    """Every monitored column's histogram over all rows of ``state``."""
    if not isinstance(state, StreamState):
        raise ValidationError(f"state must be a StreamState, got {type(state).__name__}")
    return {c.name: column_histogram(state, c.name, None, max_bins) for c in state.reference.columns}
