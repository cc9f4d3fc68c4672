"""The training arrays of a snapshot: one definition for the pipeline and for ``reproduce``."""

from __future__ import annotations

import numpy as np

from raymlops.config import PipelineConfig
from raymlops.data.schema import table_columns
from raymlops.data.snapshot import read_snapshot
from raymlops.data.split import holdout_mask
from raymlops.exceptions import ValidationError
from raymlops.store.home import Store

Arrays = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def split_snapshot(store: Store, snap_id: str, features: list[str], config: PipelineConfig) -> Arrays:
    """``(X_train, y_train, X_holdout, y_holdout)``: the snapshot read (and hash-checked) once,
    split deterministically by ``config.seed`` and ``config.data.holdout_fraction``."""
    _, table = read_snapshot(store, snap_id)
    X = table_columns(table, features)
    y = table.column(config.data.target).to_numpy(zero_copy_only=False)
    holdout = holdout_mask(len(y), config.data.holdout_fraction, config.seed)
    if holdout.all() or not holdout.any():
        raise ValidationError(f"data.holdout_fraction {config.data.holdout_fraction} leaves no train or holdout rows")
    return X[~holdout], y[~holdout], X[holdout], y[holdout]
