"""When two models' predictions agree (champion vs challenger, shadow or canary).

A classifier's two labels agree when they are equal. A regression's predictions are numbers, and
two models almost never give the same float: they agree when they differ by at most a
*tolerance*, by default half the champion's holdout mean absolute error (a challenger whose answer
lies well within the champion's typical error gives the same answer for the user's purpose). The
serving replicas (shadow records), the monitor's differential check and the promotion rules use
this one definition.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["MAE_SHARE", "MAX_REGRESSION_LABEL", "agreeing", "labels_agree", "regression_tolerance"]

#: a regression's default tolerance, as a share of the champion's holdout MAE
MAE_SHARE = 0.5
#: the largest magnitude of a regression label compared with a served answer (``/feedback``, the
#: monitor): sums of millions of absolute errors of such labels stay finite
MAX_REGRESSION_LABEL = 1e150


def regression_tolerance(metrics: Mapping[str, Any] | None, share: float = MAE_SHARE) -> float | None:
    """``share`` x the holdout MAE in a model version's ``metrics``; None when it has none (then
    predictions agree only when equal)."""
    mae = (metrics or {}).get("mae")
    if isinstance(mae, int | float) and math.isfinite(mae) and mae > 0:
        return float(share * mae)
    return None


def agreeing(a: npt.ArrayLike, b: npt.ArrayLike, tolerance: float | None = None) -> npt.NDArray[np.bool_]:
    """Row by row, whether predictions ``a`` and ``b`` agree: equal, or (``tolerance``, numbers)
    at most that far apart."""
    x, y = np.asarray(a), np.asarray(b)
    if tolerance is None or x.dtype.kind not in "biuf" or y.dtype.kind not in "biuf":
        return np.asarray(x == y, dtype=bool)
    return np.asarray(np.abs(x.astype(np.float64) - y.astype(np.float64)) <= tolerance, dtype=bool)


def labels_agree(a: str, b: str, tolerance: float | None = None) -> bool:
    """:func:`agreeing` for one pair of predictions written as labels (the monitor pairs rows by
    request id as :func:`raymlops.monitor.columns.labels_of` writes them); a missing prediction
    agrees only with another."""
    if a == b or tolerance is None:
        return a == b
    try:
        return abs(float(a) - float(b)) <= tolerance
    except ValueError:
        return False
