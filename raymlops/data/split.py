"""Deterministic train/holdout split, a hash and not a random draw (pure): of (row index,
seed) by default, or of (key column value, seed) with ``data.split_key``, which keeps each row on
its side however the rows are ordered and when rows are added."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raymlops.exceptions import ValidationError

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_NULL_KEY = np.uint64(0x6E756C6C6B657921)  # the hash every null key gets


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def holdout_mask(n_rows: int, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask, True for holdout rows: the same for the same (n_rows, fraction, seed)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout fraction must be in (0, 1), got {fraction}")
    idx = np.arange(n_rows, dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = _splitmix64(idx ^ _splitmix64(np.full(n_rows, seed & 0xFFFF_FFFF_FFFF_FFFF, dtype=np.uint64)))
    u = (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return u < fraction


def _unit(h: np.ndarray) -> np.ndarray:
    return np.asarray((h >> np.uint64(11)).astype(np.float64) / float(1 << 53), dtype=np.float64)


def key_hashes(keys: np.ndarray | pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit hash of each key value: pandas' keyed hash, the same in every process. Integers
    hash by value, strings by their UTF-8 text; nulls all hash alike."""
    import pandas as pd

    nulls = None
    if isinstance(keys, pa.Array | pa.ChunkedArray):
        if pa.types.is_integer(keys.type):  # by value, as int64, whether or not the column has nulls
            nulls = keys.is_null().to_numpy(zero_copy_only=False)
            keys = pc.fill_null(pc.cast(keys, pa.int64()), 0)
        keys = keys.to_numpy(zero_copy_only=False)
    arr = np.asarray(keys)
    if arr.dtype.kind in "iu":
        arr = arr.astype(np.int64)
    h = np.asarray(pd.util.hash_array(arr, categorize=False), dtype=np.uint64)
    if nulls is not None and nulls.any():
        h[nulls] = _NULL_KEY
    return h


def key_holdout_mask(keys: np.ndarray | pa.Array | pa.ChunkedArray, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask, True for holdout rows, from a hash of each row's key and the seed: a row
    keeps its side whatever the row order, and when rows are added or removed."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout fraction must be in (0, 1), got {fraction}")
    h = key_hashes(keys)
    with np.errstate(over="ignore"):
        mixed = _splitmix64(h ^ _splitmix64(np.array([seed & 0xFFFF_FFFF_FFFF_FFFF], dtype=np.uint64)))
    return np.asarray(_unit(mixed) < fraction)


def split_mask(table: pa.Table, fraction: float, seed: int, key: str | None = None) -> np.ndarray:
    """Holdout mask of a snapshot's rows: by ``key`` column (``data.split_key``) when given,
    else by row index (:func:`holdout_mask`). Deterministic given the seed and the snapshot."""
    if key is None:
        return holdout_mask(table.num_rows, fraction, seed)
    if key not in table.column_names:
        raise ValidationError(f"data.split_key: column {key!r} not found (columns: {', '.join(table.column_names)})")
    return key_holdout_mask(table.column(key), fraction, seed)
