"""The training arrays of a snapshot: one definition for the pipeline and for ``reproduce``."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from raymlops.config import PipelineConfig
from raymlops.data.schema import column_array, missing_labels, missing_labels_error, table_columns
from raymlops.data.snapshot_read import read_snapshot
from raymlops.data.split import split_mask
from raymlops.exceptions import ValidationError
from raymlops.store.home import Store

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def holdout_of(table: pa.Table, config: PipelineConfig) -> np.ndarray:
    """The holdout mask of a snapshot's rows: a hash of ``data.split_key`` (or of the row index)
    and ``seed``, so a re-run, and a reproduction, gets the same split."""
    holdout = split_mask(table, config.data.holdout_fraction, config.seed, key=config.data.split_key)
    if holdout.all() or not holdout.any():
        raise ValidationError(f"data.holdout_fraction {config.data.holdout_fraction} leaves no train or holdout rows"
                              f" ({table.num_rows} rows)")
    return holdout


def split_table(table: pa.Table, features: list[str], config: PipelineConfig) -> Arrays:
    """``(X_train, y_train, X_holdout, y_holdout)`` of a snapshot's table."""
    X = table_columns(table, features)
    infinite = np.isinf(X)
    if infinite.any():  # sklearn, XGBoost and LightGBM refuse them; a missing value is null (NaN)
        counts = infinite.sum(axis=0)
        j = int(np.argmax(counts > 0))
        row = int(np.argmax(infinite[:, j]))
        raise ValidationError(f"column {features[j]!r}: {int(counts[j])} infinite value{'s' if counts[j] > 1 else ''} "
                              f"(the first in row {row}); a model cannot train on them: drop or cap them with "
                              "data.rules / data.transforms (a missing value is null)")
    target = table.column(config.data.target)
    missing, first = missing_labels(target)
    if missing:
        raise missing_labels_error(config.data.target, missing, table.num_rows, first)
    y = column_array(target)
    holdout = holdout_of(table, config)
    return X[~holdout], y[~holdout], X[holdout], y[holdout]


def split_snapshot(store: Store, snap_id: str, features: list[str], config: PipelineConfig) -> Arrays:
    """:func:`split_table` of the snapshot, read (and hash-checked) once."""
    _, table = read_snapshot(store, snap_id)
    return split_table(table, features, config)
