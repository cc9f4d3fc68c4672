"""Drift statistics on counts, the KS p-value, and p-value correction: one implementation each.

Every count statistic here is :func:`compare_rows`, vectorised over rows: two ``(..., bins)``
arrays of non-negative counts over the same bins (as :func:`raymlops.stats.bins.bin_counts`
returns them, or the monitor's stacked windows) give the Pearson chi-square test of homogeneity
(statistic and p-value), the Jensen-Shannon distance and the PSI of every row pair in a few
whole-array passes (its halves, :func:`chi2_rows` and :func:`distance_rows`, for callers that
need only one). It trusts its input (the streaming monitor calls it on every window);
:func:`chi2_test`, :func:`jensen_shannon` and :func:`psi` are the same numbers for one pair of
vectors after checking them (bad input raises :class:`ValidationError` naming the problem).

:func:`ks_p_values` is the one two-sample Kolmogorov-Smirnov p-value, from public scipy: by
default Smirnov's distribution as :func:`scipy.stats.ks_2samp` uses it (``method="asymp"``, and
``"auto"`` above :data:`KS_EXACT_MAX_N` values per sample); ``method="stephens"`` is the
limiting Kolmogorov distribution with Stephens' small-sample correction, within about 0.01 of it
from ~20 rows and a thousand times cheaper (the streaming monitor's windows). Where the samples
are at hand and small, callers call :func:`scipy.stats.ks_2samp` itself (its exact distribution):
:func:`ks_binned` does so on the binned counts, :mod:`raymlops.stats.exact` on the raw values.
Tests on whole samples (exact KS, Wasserstein) are :mod:`raymlops.stats.exact`'s.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from raymlops.exceptions import ValidationError
from raymlops.stats.ks import KS_TAIL_P, ks_2samp_p

__all__ = [
    "CORRECTIONS",
    "KS_EXACT_MAX_N",
    "KS_METHODS",
    "KS_TAIL_P",
    "chi2_rows",
    "chi2_test",
    "compare_rows",
    "correct",
    "distance_from_shares",
    "distance_rows",
    "jensen_shannon",
    "ks_binned",
    "ks_p_values",
    "psi",
    "row_shares",
    "unseen_share",
    "wasserstein_binned",
]

def _special() -> Any:
    """:mod:`scipy.special`, imported on first use: 0.2 s that ``monitor check`` of large numeric
    columns (whose p-values need no scipy) does not spend."""
    from scipy import special

    return special


#: the p-value corrections :func:`correct` knows
CORRECTIONS: tuple[str, ...] = ("bonferroni", "holm", "bh")
#: :func:`ks_p_values`' methods
KS_METHODS: tuple[str, ...] = ("smirnov", "stephens")
#: scipy's ``ks_2samp(method="auto")`` uses the exact distribution up to this many values per sample
KS_EXACT_MAX_N = 10_000
#: PSI clips proportions below at this, so a bin empty on one side adds a large but finite term
PSI_EPS = 1e-4

FloatArray = npt.NDArray[np.float64]


# ------------------------------------------------------------------ counts: chi-square, JS, PSI


def compare_rows(ref: npt.ArrayLike, cur: npt.ArrayLike, eps: float = PSI_EPS
                 ) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """``(chi2 statistic, chi2 p-value, Jensen-Shannon distance, PSI)`` of every row pair of two
    ``(..., bins)`` count arrays (last axis: bins; zero-padded bins change nothing):
    :func:`chi2_rows`, then :func:`distance_rows`. Input is trusted (non-negative counts); 1-D
    inputs give 0-d arrays."""
    r, c = np.asarray(ref, dtype=np.float64), np.asarray(cur, dtype=np.float64)
    return (*chi2_rows(r, c), *distance_rows(r, c, eps))


def chi2_rows(ref: npt.ArrayLike, cur: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Pearson's chi-square test of homogeneity of every row pair's 2 x k table: ``(statistic,
    p-value)``. Bins empty on both sides are dropped (a bin empty only in the reference still
    counts), no continuity correction, as :func:`scipy.stats.chi2_contingency` with
    ``correction=False``; ``(0, 1)`` with < 2 bins; a row pair where either side is empty gives
    ``(NaN, 1)``."""
    r, c = np.asarray(ref, dtype=np.float64), np.asarray(cur, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        total_r, total_c = r.sum(axis=-1, keepdims=True), c.sum(axis=-1, keepdims=True)
        keep = (r > 0) | (c > 0)
        kept = keep.sum(axis=-1)
        col = r + c
        n = total_r + total_c
        e_r, e_c = col * (total_r / n), col * (total_c / n)
        terms = np.where(keep, (r - e_r) ** 2 / e_r + (c - e_c) ** 2 / e_c, 0.0).sum(axis=-1)
        few = kept < 2
        stat = np.where(few, 0.0, terms)
        p_value = np.where(few, 1.0, _special().chdtrc(np.maximum(kept - 1, 1), terms))
    have = (total_r[..., 0] > 0) & (total_c[..., 0] > 0)
    if have.all():
        return stat, p_value
    return np.where(have, stat, np.nan), np.where(have, p_value, 1.0)


def distance_rows(ref: npt.ArrayLike, cur: npt.ArrayLike, eps: float = PSI_EPS) -> tuple[FloatArray, FloatArray]:
    """``(Jensen-Shannon distance, PSI)`` of every row pair's shares:

    - Jensen-Shannon *distance* (base 2, so in [0, 1]) of the two shares;
    - PSI ``sum((q - p) * ln(q / p))`` of the shares ``p`` (reference) and ``q``, each clipped
      below at ``eps``. Rules of thumb: < 0.1 stable, 0.1-0.2 moderate, > 0.2 significant.

    A row pair where either side is empty gives NaN."""
    return distance_from_shares(row_shares(ref, eps), cur, eps)


def row_shares(counts: npt.ArrayLike, eps: float = PSI_EPS) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(row totals (keepdims), shares, shares clipped below at eps)`` of ``(..., bins)`` counts:
    the reference side of :func:`distance_rows`, which a caller comparing many current rows
    with the same reference rows computes once (:func:`distance_from_shares`)."""
    r = np.asarray(counts, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        total = r.sum(axis=-1, keepdims=True)
        p = r / total
    return total, p, np.clip(p, eps, None)


def distance_from_shares(ref: tuple[FloatArray, FloatArray, FloatArray], cur: npt.ArrayLike, eps: float = PSI_EPS
                         ) -> tuple[FloatArray, FloatArray]:
    """:func:`distance_rows` of the reference side's :func:`row_shares` and current counts (the
    same operations in the same order, so the same values to the bit; halving is a
    multiplication by 0.5, which rounds as the division by 2 does)."""
    total_r, p, p_c = ref
    c = np.asarray(cur, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        total_c = c.sum(axis=-1, keepdims=True)
        q = c / total_c
        m = p + q
        m *= 0.5
        kl = (np.where(p > 0, p * np.log2(p / m), 0.0) + np.where(q > 0, q * np.log2(q / m), 0.0)).sum(axis=-1)
        kl *= 0.5
        js = np.sqrt(np.maximum(kl, 0.0))
        q_c = np.clip(q, eps, None)
        psi_v = np.sum((q_c - p_c) * np.log(q_c / p_c), axis=-1)
    have = (total_r[..., 0] > 0) & (total_c[..., 0] > 0)
    if have.all():
        return js, psi_v
    return np.where(have, js, np.nan), np.where(have, psi_v, np.nan)


def _as_vector(values: npt.ArrayLike, name: str) -> FloatArray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{name} must be numeric: {exc}") from exc
    if arr.ndim != 1:
        raise ValidationError(f"{name} must be 1-dimensional, got an array of shape {arr.shape}")
    if arr.size == 0:
        raise ValidationError(f"{name} is empty")
    return arr


def _counts_pair(ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
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


def psi(ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike, eps: float = PSI_EPS) -> float:
    """Population stability index of two count vectors on the same bins (:func:`distance_rows`)."""
    if not (0.0 < eps < 1.0):
        raise ValidationError(f"eps must be in (0, 1), got {eps!r}")
    ref, cur = _counts_pair(ref_counts, cur_counts)
    return float(distance_rows(ref, cur, eps)[1])


def unseen_share(counts: npt.ArrayLike) -> float:
    """The share of a fresh sample expected off the values a sample of these ``counts`` (one per
    value) saw: Good-Turing's estimate, its values seen once over its size (0 for an empty one)."""
    c = np.asarray(counts)
    total = c.sum()
    return float(np.count_nonzero(c == 1) / total) if total else 0.0


def chi2_test(ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike) -> tuple[float, float]:
    """Pearson chi-square test of homogeneity of two count vectors: ``(statistic, p)``
    (:func:`chi2_rows`); ``(0.0, 1.0)`` when fewer than two bins hold values."""
    ref, cur = _counts_pair(ref_counts, cur_counts)
    stat, p = chi2_rows(ref, cur)
    return float(stat), float(p)


def jensen_shannon(ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike) -> float:
    """Jensen-Shannon *distance* (base 2, so in [0, 1]) between two count vectors."""
    ref, cur = _counts_pair(ref_counts, cur_counts)
    return float(distance_rows(ref, cur)[0])


# ------------------------------------------------------------------------------ KS p-values


def ks_p_values(d: npt.ArrayLike, n: npt.ArrayLike, m: npt.ArrayLike, method: str = "smirnov") -> FloatArray:
    """Two-sided p-values of two-sample KS statistics ``d`` for sample sizes ``n`` and ``m``
    (broadcast together), from public scipy.

    ``smirnov`` (default): Smirnov's distribution as :func:`scipy.stats.ks_2samp` computes it
    with ``method="asymp"`` (and with ``"auto"`` above :data:`KS_EXACT_MAX_N` values per
    sample): ``kstwo.sf(d, round(n * m / (n + m)))``, except far in the tail, where the limiting
    Kolmogorov distribution says p < :data:`KS_TAIL_P` and that value is reported (within 1 %
    of kstwo's at a million rows, a factor of a few at ten thousand where p is ~1e-160;
    ``kstwo.sf`` would spend 1-2 s per value there at a million rows).
    ``stephens``: the Kolmogorov distribution at ``d * (sqrt(en) + 0.12 + 0.11 / sqrt(en))``,
    ``en = n * m / (n + m)`` (Stephens' correction; within about 0.01 of the above from ~20 rows
    and microseconds per value: the streaming monitor's choice).
    A size of 0 gives p = 1."""
    if method not in KS_METHODS:
        raise ValidationError(f"KS p-value method must be one of {', '.join(KS_METHODS)}, got {method!r}")
    d_, n_, m_ = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in (d, n, m)))
    empty = (n_ <= 0) | (m_ <= 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        en = n_ * m_ / (n_ + m_)
        if method == "stephens":
            s = np.sqrt(en)
            out = np.asarray(_special().kolmogorov(d_ * (s + 0.12 + 0.11 / s)), dtype=np.float64)
        else:  # the one implementation, shared with the exact offline check
            out = ks_2samp_p(np.where(empty, 0.0, d_), np.where(empty, 1.0, n_), np.where(empty, 1.0, m_))
    out = np.where(empty, 1.0, np.clip(out, 0.0, 1.0))
    return np.asarray(out, dtype=np.float64)


def ks_binned(ref_counts: npt.ArrayLike, cur_counts: npt.ArrayLike) -> tuple[float, float]:
    """Two-sample KS test on counts over the same ordered bins: ``(statistic, p)``.

    The statistic is ``max |F_ref - F_cur|`` at the bin edges, where both empirical CDFs are
    known exactly; it is a lower bound of the statistic on the raw values, short of it by at most
    the largest bin's share of the rows (fine bins make that small). The p-value is the one
    :func:`scipy.stats.ks_2samp` gives for this statistic: when both totals are at most
    :data:`KS_EXACT_MAX_N`, ``ks_2samp`` itself on the bin indices repeated by their counts (the
    same statistic; its exact distribution), else :func:`ks_p_values`.
    """
    ref, cur = _counts_pair(ref_counts, cur_counts)
    n, m = int(round(ref.sum())), int(round(cur.sum()))
    d = float(np.max(np.abs(np.cumsum(ref) / ref.sum() - np.cumsum(cur) / cur.sum())))
    if max(n, m) <= KS_EXACT_MAX_N and np.array_equal(ref, np.rint(ref)) and np.array_equal(cur, np.rint(cur)):
        from scipy.stats import ks_2samp

        bins = np.arange(ref.size, dtype=np.float64)
        res = ks_2samp(np.repeat(bins, ref.astype(np.int64)), np.repeat(bins, cur.astype(np.int64)), method="auto")
        return float(res.statistic), float(res.pvalue)
    return d, float(ks_p_values(d, n, m))


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


# ------------------------------------------------------------------------------ correction


def correct(p_values: npt.ArrayLike, method: str = "bonferroni") -> FloatArray:
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
