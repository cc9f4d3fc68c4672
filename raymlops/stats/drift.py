"""Drift tests between a reference and a current distribution, and p-value correction.

Functions on *counts* take two equal-length vectors of non-negative bin counts over the same
bins (as :func:`raymlops.stats.bins.bin_counts` returns them). Tests on whole samples (exact KS,
Wasserstein) are :mod:`raymlops.stats.exact`'s. Bad input raises :class:`ValidationError` naming
the problem.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from raymlops.exceptions import ValidationError

__all__ = [
    "CORRECTIONS",
    "chi2_test",
    "correct",
    "jensen_shannon",
    "ks_binned",
    "ks_pvalue",
    "psi",
    "wasserstein_binned",
]

#: the p-value corrections :func:`correct` knows
CORRECTIONS: tuple[str, ...] = ("bonferroni", "holm", "bh")


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
    from scipy import stats  # scipy.stats costs most of a second to import: only when a test runs

    result = stats.chi2_contingency(np.vstack([ref[keep], cur[keep]]), correction=False)
    return float(result.statistic), float(result.pvalue)


def ks_pvalue(d: float, n1: int, n2: int) -> float:
    """Two-sided p-value of the KS statistic ``d`` for samples of ``n1`` and ``n2`` values, as
    :func:`scipy.stats.ks_2samp` computes it: exact when both are at most 10,000 (scipy's own
    routine), else Smirnov's distribution with ``en = n1 * n2 / (n1 + n2)`` (``kstwo``)."""
    if n1 <= 0 or n2 <= 0:
        raise ValidationError(f"KS needs two non-empty samples, got sizes {n1} and {n2}")
    d = float(min(max(d, 0.0), 1.0))
    if max(n1, n2) <= 10_000:
        try:  # scipy's exact two-sample routine (private; fall back to the asymptotic form)
            from scipy.stats._stats_py import _attempt_exact_2kssamp

            g = math.gcd(n1, n2)
            ok, _, prob = _attempt_exact_2kssamp(n1, n2, g, d, "two-sided")
            if ok:
                return float(min(max(prob, 0.0), 1.0))
        except (ImportError, TypeError, ValueError):
            pass
    from scipy import stats

    m, n = sorted([float(n1), float(n2)], reverse=True)
    en = m * n / (m + n)
    return float(min(max(stats.kstwo.sf(d, np.round(en)), 0.0), 1.0))


def ks_binned(ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike) -> tuple[float, float]:
    """Two-sample KS test on counts over the same ordered bins: ``(statistic, p)``.

    The statistic is ``max |F_ref - F_cur|`` at the bin edges, where both empirical CDFs are
    known exactly; it is a lower bound of the statistic on the raw values, short of it by at most
    the largest bin's share of the rows (fine bins make that small). The p-value is
    :func:`ks_pvalue` for the two totals.
    """
    ref, cur = _counts_pair(ref_counts, cur_counts)
    f_ref = np.cumsum(ref) / ref.sum()
    f_cur = np.cumsum(cur) / cur.sum()
    d = float(np.max(np.abs(f_ref - f_cur))) if ref.size else 0.0
    return d, ks_pvalue(d, int(round(ref.sum())), int(round(cur.sum())))


def wasserstein_binned(
    edges: npt.ArrayLike,
    ref_counts: npt.ArrayLike,
    cur_counts: npt.ArrayLike,
    lo: float,
    hi: float,
    ref_std: float,
) -> float:
    """Wasserstein-1 distance from counts on the interior ``edges`` (``len(edges) + 1`` bins
    spanning ``[lo, hi]``), divided by ``ref_std`` (1 if that is 0).

    ``W1 = integral |F_ref(x) - F_cur(x)| dx``, with both CDFs known exactly at the edges and
    taken as linear inside each bin (trapezoids); the error is within the bins' widths times the
    CDF gap, small on fine bins.
    """
    ref, cur = _counts_pair(ref_counts, cur_counts)
    e = np.asarray(edges, dtype=np.float64)
    if ref.size != e.size + 1:
        raise ValidationError(f"expected {e.size + 1} counts for {e.size} edges, got {ref.size}")
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValidationError("lo and hi must be finite")
    xs = np.concatenate([[min(lo, e[0]) if e.size else lo], e, [max(hi, e[-1]) if e.size else hi]])
    gap = np.abs(np.concatenate([[0.0], np.cumsum(ref) / ref.sum() - np.cumsum(cur) / cur.sum()]))
    gap[-1] = 0.0
    w = float(np.sum((gap[:-1] + gap[1:]) / 2.0 * np.diff(xs)))
    scale = ref_std if ref_std > 0 else 1.0
    return w / scale


def jensen_shannon(ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike) -> float:
    """Jensen-Shannon *distance* (base 2, so in [0, 1]) between the two count vectors."""
    from scipy.spatial import distance  # scipy.spatial costs a fifth of a second to import: only here

    ref, cur = _counts_pair(ref_counts, cur_counts)
    return float(distance.jensenshannon(ref / ref.sum(), cur / cur.sum(), base=2))


def correct(p_values: npt.ArrayLike, method: str = "bonferroni") -> npt.NDArray[np.float64]:
    """Adjust ``p_values`` for multiple testing; returns a new array in the input order.

    ``"bonferroni"`` multiplies by the number of tests; ``"holm"`` is Holm's step-down (the
    ``i``-th smallest becomes ``max_{j <= i} (m - j + 1) * p_(j)``: the same family-wise error
    bound as Bonferroni, never larger p-values); ``"bh"`` is Benjamini-Hochberg (false
    discovery rate): the ``i``-th smallest of ``m`` p-values becomes
    ``min_{j >= i} m * p_(j) / j``, which is monotone in the raw p-values. All are clipped to 1.
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
    if method == "holm":
        stepped = np.maximum.accumulate(p[order] * (m - np.arange(m)))
        out = np.empty(m, dtype=np.float64)
        out[order] = np.minimum(stepped, 1.0)
        return out
    scaled = p[order] * m / np.arange(1, m + 1)
    monotone = np.minimum.accumulate(scaled[::-1])[::-1]
    adjusted = np.empty(m, dtype=np.float64)
    adjusted[order] = np.minimum(monotone, 1.0)
    return adjusted
