"""Drift tests between a reference and a current distribution, and p-value correction.

Functions on *counts* take two equal-length vectors of non-negative bin counts over the same
bins (as :func:`raymlops.stats.bins.bin_counts` returns them); functions on *samples* take two
1-D arrays of finite values. Bad input raises :class:`ValidationError` naming the problem.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import stats
from scipy.spatial import distance

from raymlops.exceptions import ValidationError

__all__ = [
    "CORRECTIONS",
    "chi2_test",
    "correct",
    "jensen_shannon",
    "ks_test",
    "psi",
    "wasserstein_normed",
]

#: the p-value corrections :func:`correct` knows
CORRECTIONS: tuple[str, ...] = ("bonferroni", "bh")


def _as_vector(values: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{name} must be numeric: {exc}") from exc
    if arr.ndim != 1:
        raise ValidationError(f"{name} must be 1-dimensional, got an array of shape {arr.shape}")
    if arr.size == 0:
        raise ValidationError(f"{name} is empty")
    return arr


def _counts_pair(
    ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    ref = _as_vector(ref_counts, "ref_counts")
    cur = _as_vector(cur_counts, "cur_counts")
    if ref.size != cur.size:
        raise ValidationError(f"ref_counts and cur_counts must have the same length, got {ref.size} and {cur.size}")
    for name, arr in (("ref_counts", ref), ("cur_counts", cur)):
        if not np.all(np.isfinite(arr)):
            raise ValidationError(f"{name} must be finite")
        if np.any(arr < 0):
            raise ValidationError(f"{name} must not contain negative counts")
        if arr.sum() <= 0:
            raise ValidationError(f"{name} sums to zero; there is no distribution to compare")
    return ref, cur


def _sample(values: npt.ArrayLike, name: str) -> npt.NDArray[np.float64]:
    arr = _as_vector(values, name)
    if not np.all(np.isfinite(arr)):
        raise ValidationError(f"{name} must contain only finite values (no NaN or inf)")
    return arr


def psi(ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike, eps: float = 1e-4) -> float:
    """Population stability index ``sum((q - p) * ln(q / p))`` on the same bins.

    ``p`` and ``q`` are the reference and current proportions, each clipped below at ``eps`` so
    a bin empty on one side adds a large but finite term. Rules of thumb: < 0.1 stable,
    0.1-0.2 moderate shift, > 0.2 significant shift.
    """
    if not (0.0 < eps < 1.0):
        raise ValidationError(f"eps must be in (0, 1), got {eps!r}")
    ref, cur = _counts_pair(ref_counts, cur_counts)
    p = np.clip(ref / ref.sum(), eps, None)
    q = np.clip(cur / cur.sum(), eps, None)
    return float(np.sum((q - p) * np.log(q / p)))


def chi2_test(ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike) -> tuple[float, float]:
    """Pearson chi-square test of homogeneity of the two count vectors: ``(statistic, p)``.

    The 2 x k contingency table (reference row, current row) is tested with
    :func:`scipy.stats.chi2_contingency` without continuity correction, after dropping bins
    empty in both rows. A bin empty only in the reference (e.g. missing values that appear in
    production) still counts, unlike a goodness-of-fit test, which would divide by zero. If
    fewer than two bins are left, the distributions are identical and ``(0.0, 1.0)`` is returned.
    """
    ref, cur = _counts_pair(ref_counts, cur_counts)
    keep = (ref > 0) | (cur > 0)
    if int(keep.sum()) < 2:
        return 0.0, 1.0
    result = stats.chi2_contingency(np.vstack([ref[keep], cur[keep]]), correction=False)
    return float(result.statistic), float(result.pvalue)


def ks_test(ref_sample: npt.ArrayLike, cur_sample: npt.ArrayLike) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov test (:func:`scipy.stats.ks_2samp`): ``(statistic, p)``."""
    ref = _sample(ref_sample, "ref_sample")
    cur = _sample(cur_sample, "cur_sample")
    result = stats.ks_2samp(ref, cur)
    return float(result.statistic), float(result.pvalue)


def wasserstein_normed(ref_sample: npt.ArrayLike, cur_sample: npt.ArrayLike) -> float:
    """Wasserstein-1 distance divided by the reference standard deviation (1 if that is 0).

    Dividing by the reference spread makes the value unit-free: 1.0 means the current
    distribution is, on average, one reference standard deviation away.
    """
    ref = _sample(ref_sample, "ref_sample")
    cur = _sample(cur_sample, "cur_sample")
    std = float(np.std(ref))
    scale = std if std > 0 else 1.0
    return float(stats.wasserstein_distance(ref, cur)) / scale


def jensen_shannon(ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike) -> float:
    """Jensen-Shannon *distance* (base 2, so in [0, 1]) between the two count vectors."""
    ref, cur = _counts_pair(ref_counts, cur_counts)
    return float(distance.jensenshannon(ref / ref.sum(), cur / cur.sum(), base=2))


def correct(p_values: npt.ArrayLike, method: str = "bonferroni") -> npt.NDArray[np.float64]:
    """Adjust ``p_values`` for multiple testing; returns a new array in the input order.

    ``"bonferroni"`` multiplies by the number of tests; ``"bh"`` is Benjamini-Hochberg (false
    discovery rate): the ``i``-th smallest of ``m`` p-values becomes
    ``min_{j >= i} m * p_(j) / j``, which is monotone in the raw p-values. Both are clipped to 1.
    """
    if method not in CORRECTIONS:
        raise ValidationError(f"method must be one of {', '.join(CORRECTIONS)}; got {method!r}")
    p = _as_vector(p_values, "p_values")
    if np.any(np.isnan(p)) or np.any((p < 0) | (p > 1)):
        raise ValidationError("p_values must lie in [0, 1] (no NaN)")
    m = p.size
    if method == "bonferroni":
        return np.minimum(p * m, 1.0)
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    monotone = np.minimum.accumulate(scaled[::-1])[::-1]
    adjusted = np.empty(m, dtype=np.float64)
    adjusted[order] = np.minimum(monotone, 1.0)
    return adjusted
