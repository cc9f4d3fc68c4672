"""Synthetic data of the closed-loop demo (``raymlops demo``, ``configs/demo.yaml``).

A binary label from four numeric features ``x1..x4`` and a categorical ``region`` (codes 0-3,
also a feature, and the monitor's slice column). Three worlds:

- ``none``: the world the first model is trained on;
- ``slice``: ``x1`` moves by +3 standard deviations in ``region`` 2 only;
- ``global``: ``x1``, ``x2`` and ``x3`` move in every region and ``x2``'s effect on the label
  flips (concept drift): the old model is now wrong where the new data is, and a model
  retrained on a fresh snapshot of it is better.

``baseline`` and ``drifted`` are ``callable:`` sources (functions of no arguments).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["DRIFT_SLICE", "FEATURES", "ROWS", "baseline", "drifted", "make_table", "requests"]

FEATURES = ("x1", "x2", "x3", "x4", "region")
REGIONS = (0, 1, 2, 3)
REGION_SHARE = (0.3, 0.3, 0.2, 0.2)
DRIFT_SLICE = 2  # the region whose x1 drifts first
ROWS = 3000


def _columns(n: int, seed: int, drift: str) -> dict[str, np.ndarray]:
    if drift not in ("none", "slice", "global"):
        raise ValueError(f"drift must be none, slice or global, found {drift!r}")
    rng = np.random.default_rng(seed)
    region = rng.choice(np.array(REGIONS), size=n, p=np.array(REGION_SHARE))
    x = rng.normal(0.0, 1.0, size=(n, 4))
    w2 = -1.2
    if drift == "slice":
        x[region == DRIFT_SLICE, 0] += 3.0
    elif drift == "global":
        x[:, 0] += 1.5
        x[:, 1] += 1.2
        x[:, 2] = x[:, 2] * 1.6 + 1.0
        w2 = 1.2  # the label now rises with x2
    centred = x - (np.array([1.5, 1.2, 1.0, 0.0]) if drift == "global" else 0.0)
    logit = 1.6 * centred[:, 0] + w2 * centred[:, 1] + 0.8 * centred[:, 2] + 0.5 * x[:, 3] + 0.4 * (region - 1.5)
    y = (logit + rng.logistic(0.0, 0.6, size=n) > 0).astype(np.int64)
    return {"x1": x[:, 0], "x2": x[:, 1], "x3": x[:, 2], "x4": x[:, 3], "region": region.astype(np.int64), "y": y}


def make_table(n: int = ROWS, seed: int = 0, drift: str = "none") -> pa.Table:
    """``n`` rows of the ``drift`` world as Arrow (x1..x4 float64, region int64, y int64)."""
    cols = _columns(n, seed, drift)
    return pa.table({k: pa.array(v) for k, v in cols.items()})


def baseline() -> pa.Table:
    """The training data of the first champion."""
    return make_table(ROWS, seed=0, drift="none")


def drifted() -> pa.Table:
    """A fresh snapshot of the world after the global drift (what retraining reads)."""
    return make_table(ROWS, seed=1, drift="global")


def requests(n: int, seed: int, drift: str, batch: int = 20) -> list[list[dict[str, Any]]]:
    """``n`` rows of the ``drift`` world as request bodies' ``instances`` (``batch`` rows each)."""
    cols = _columns(n, seed, drift)
    rows = [{f: float(cols[f][i]) for f in FEATURES} for i in range(n)]
    return [rows[i:i + batch] for i in range(0, n, batch)]
