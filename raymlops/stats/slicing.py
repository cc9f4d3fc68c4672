"""The slices of an offline check: each row's slice label, and what a report says about slices
(more reference values than ``max_slices``; current rows in no reference slice)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["slice_labels", "slice_note", "unmatched_note"]


def slice_labels(values: Any) -> np.ndarray:
    """Each value as a slice label (``<missing>`` for a null or NaN)."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        values = values.to_pylist()
    return np.asarray(["<missing>" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                       for v in np.asarray(values, dtype=object).tolist()], dtype=object)


def slice_note(ref_cols: Mapping[str, Any], slices: Sequence[str], max_slices: int) -> str | None:
    """A word when the slice columns have more combinations in the reference than ``max_slices``
    (a continuous column given as a slice, say): most of its rows are then ``other``."""
    parts = [slice_labels(ref_cols[s]) for s in slices]
    combos, counts = np.unique(np.asarray(["\x1f".join(x) for x in zip(*parts, strict=True)], dtype=object),
                               return_counts=True)
    if combos.size <= max_slices:
        return None
    rest = int(np.sort(counts)[: combos.size - max_slices].sum())
    return (f"{', '.join(slices)}: {combos.size} distinct values in the reference; the {max_slices} most frequent are "
            f"slices, the other {rest} rows are 'other' (a slice column is a category: bin a number with "
            "data.transforms derive)")


def unmatched_note(labels: np.ndarray, total: int) -> str | None:
    """A word for the current rows whose slice the reference has no rows of (``labels``: their
    slice labels): a new segment of traffic, or rows without a slice value, has no reference to be
    judged against, so it is in no slice's verdict (it vanished from the report without a word)."""
    if labels.size == 0:
        return None
    values, counts = np.unique(labels, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    shown = ", ".join(f"{values[i]} ({int(counts[i])} rows)" for i in order[:5])
    more = f" and {values.size - 5} more" if values.size > 5 else ""
    return (f"{labels.size} of {total} current rows ({labels.size / total:.1%}) are in slices the reference has no "
            f"rows of, so no slice verdict judges them: {shown}{more}")
