"""The exact two-sample Kolmogorov-Smirnov p-value of samples with ties (pure numpy/scipy).

With ties in the pooled sample, the empirical CDFs of both samples only jump at the distinct
values, so the statistic ``D = sup |F_a - F_b|`` is the largest gap at the ends of the tie blocks
of the pooled sorted values. The usual exact distribution of ``D`` (scipy's ``ks_2samp``,
``method="exact"``) assumes no ties: it is the distribution of the largest gap at *every* position
of the pooled order. That maximum is never smaller than the one at the block ends alone, so with
ties its p-value is valid but too large (on 200 random halvings of each of the datasets shipped
with scikit-learn, whose values are rounded, it averaged 0.56 with 4.0 % below 0.05).

:func:`ks_2samp_ties` computes the p-value of the permutation (conditional) null instead: given
the pooled values with their ties, every assignment of ``n`` of them to the first sample is
equally likely, and the p-value is the share of assignments whose statistic, taken at the tie
block ends, is at least the observed one (as recent R computes ``ks.test(x, y, exact=TRUE)`` on
tied data, ``psmirnov`` with ``z``). It is never above scipy's, so no test loses power; without
ties it is scipy's exact p-value.

How: an assignment is a lattice path from ``(0, 0)`` to ``(n, m)`` (``i`` values of the first
sample and ``j`` of the second among the ``k = i + j`` smallest pooled values), uniform under the
null. A dynamic programme over the anti-diagonals ``k`` carries the probability of reaching each
``(i, j)`` without having crossed the boundary ``|i m - j n| >= D n m`` at a block end (integers:
exact); the mass that crosses is the p-value, summed as it leaves (so small p-values keep their
digits). Cells from which every path crosses at the next block end are let go at once, which
keeps each diagonal to a band of about ``2 D n m / (n + m)`` cells plus the length of the
current tie block. Each step, or each stretch inside a tie block (no check there), is one
``numpy.convolve`` (:func:`_upper_tail` says how). At 10,000 values per sample that is 5-20 ms
per column on rounded data, 80 ms without ties; without ties scipy's own p-value is used.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from raymlops.stats.randomised import data_digest, uniform_of, within_atom

__all__ = ["has_ties", "ks_2samp_exact", "ks_2samp_randomised", "ks_2samp_ties", "ks_2samp_ties_above"]

FloatArray = npt.NDArray[np.float64]


def has_ties(a: FloatArray, b: FloatArray) -> bool:
    """Whether the pooled values of two samples hold a value twice (one sort of both)."""
    z = np.sort(np.concatenate([a.ravel(), b.ravel()]))
    return bool(z.size > 1 and np.any(z[1:] == z[:-1]))


def ks_2samp_exact(a: FloatArray, b: FloatArray) -> tuple[float, float]:
    """``(D, p)`` of two non-empty samples of finite values by the exact test: without ties in the
    pooled sample, :func:`scipy.stats.ks_2samp` itself (``method="auto"``: its exact distribution
    up to 10,000 values per sample); with ties, :func:`ks_2samp_ties` (the same test's exact
    distribution given the ties; scipy's would be conservative there)."""
    if has_ties(a, b):
        return ks_2samp_ties(a, b)
    from scipy.stats import ks_2samp

    res = ks_2samp(a, b, method="auto")
    return float(res.statistic), float(res.pvalue)


def ks_2samp_randomised(a: FloatArray, b: FloatArray, randomise: bool = True) -> tuple[float, float, float]:
    """``(D, p, p_upper)``: :func:`ks_2samp_exact`'s ``(D, p_upper)`` and, with ``randomise``, the
    randomised p-value ``P(D' > D) + U P(D' = D)`` (:mod:`raymlops.stats.randomised`; ``U`` from
    the samples' values, so the same data gives the same p-value), exactly uniform under no drift."""
    d, upper = ks_2samp_exact(a, b)
    if not randomise:
        return d, upper, upper
    above = ks_2samp_ties_above(a, b)
    if d == 0.0 and above == 0.0:  # every assignment gives D = 0 (one value in both samples): nothing to test
        return d, 1.0, 1.0
    return d, within_atom(upper, above, uniform_of(data_digest(a, b))), upper


def _blocks(a: npt.ArrayLike, b: npt.ArrayLike) -> tuple[int, int, npt.NDArray[np.int64], int]:
    """``(n, m, ends, dmax)``: the sizes, the pooled counts at the ends of the tie blocks, and the
    observed statistic times ``n m`` (an integer)."""
    x = np.sort(np.asarray(a, dtype=np.float64).ravel())
    y = np.asarray(b, dtype=np.float64).ravel()
    n, m = x.size, y.size
    if n == 0 or m == 0:
        raise ValueError("ks_2samp_ties needs two non-empty samples")
    z = np.sort(np.concatenate([x, y]))
    ends = np.append(np.flatnonzero(z[1:] != z[:-1]) + 1, n + m).astype(np.int64)
    i_end = np.searchsorted(x, z[ends - 1], side="right").astype(np.int64)
    gap = i_end * m - (ends - i_end) * n  # (F_a - F_b) * n * m at each block end: integers
    return n, m, ends, int(np.abs(gap).max())


def ks_2samp_ties(a: npt.ArrayLike, b: npt.ArrayLike) -> tuple[float, float]:
    """``(D, p)``: the two-sample KS statistic of two non-empty samples of finite values and its
    exact two-sided p-value ``P(D' >= D)`` under the permutation null given the pooled ties (see
    the module docstring). Without ties, ``p`` is scipy's exact ``ks_2samp`` p-value (to rounding)."""
    n, m, ends, dmax = _blocks(a, b)
    if dmax == 0:
        return 0.0, 1.0
    return dmax / (n * m), _upper_tail(n, m, dmax, ends)


def ks_2samp_ties_above(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """``P(D' > D)`` under the same null: with :func:`ks_2samp_ties`'s ``P(D' >= D)``, the
    probability of the observed value. ``p - U * (p - above)`` (``U`` uniform) is then exactly
    uniform under the null: a sharp check that the p-values are exact, not only valid (the
    calibration benchmark uses it; users get the p-value itself)."""
    n, m, ends, dmax = _blocks(a, b)
    return _upper_tail(n, m, dmax + 1, ends) if dmax < n * m else 0.0


def _bands(n: int, m: int, dmax: int, ends: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.int64], ...]:
    """Per anti-diagonal ``k = 0..n+m``: the range ``[lo, hi]`` of ``i`` whose cells can still end
    inside the boundary at the next block end, ``r`` steps on (``r = 0`` on a block end), and the
    first block end after ``k``. The gap ``g = i m - j n`` moves by ``+m`` or ``-n`` a step, so
    every path from ``g`` crosses at that end when ``g - r n >= dmax`` or ``g + r m <= -dmax``."""
    total = n + m
    k = np.arange(total + 1, dtype=np.int64)
    marks = np.concatenate([[0], ends])
    r = marks[np.searchsorted(marks, k, side="left")] - k
    after = marks[np.minimum(np.searchsorted(marks, k, side="right"), marks.size - 1)]
    # g = i * total - k * n: live when -dmax - r m < g < dmax + r n
    hi = (dmax + (r + k) * n - 1) // total
    lo = (k * n - dmax - r * m) // total + 1
    lo = np.maximum(lo, np.maximum(k - m, 0))
    hi = np.minimum(hi, np.minimum(k, n))
    return lo, hi, after


#: the most anti-diagonals crossed by one convolution inside a tie block (no block end between)
MAX_JUMP = 256


def _upper_tail(n: int, m: int, dmax: int, ends: npt.NDArray[np.int64], max_jump: int = MAX_JUMP) -> float:
    """P(the uniform path crosses ``|i m - j n| >= dmax`` at some block end).

    The programme runs on the walk that takes a step of the first sample with the constant
    probability ``n / (n + m)``: a step, or ``s`` steps with no block end between, is then one
    convolution (with ``[m, n] / (n + m)``, or the binomial law of ``s`` steps). A path has the
    same probability under the uniform law as under that walk times
    ``C(n + m - k, n - i) / C(n + m, n) / (n^i m^j / (n + m)^k)``; the mass that leaves the band is
    recorded with its cell and weighted so at the end. That ratio is at most about
    ``sqrt(n + m)``, so walk mass too small for a float carries no uniform mass that matters."""
    from scipy.special import gammaln

    total = n + m
    lo, hi, after = _bands(n, m, dmax, ends)
    lo_l, hi_l, after_l = lo.tolist(), hi.tolist(), after.tolist()
    lgf = np.asarray(gammaln(np.arange(total + 1, dtype=np.float64) + 1.0), dtype=np.float64)
    log_pn, log_pm = math.log(n / total), math.log(m / total)
    kernels: dict[int, FloatArray] = {}
    left: list[FloatArray] = []  # the mass that left the band, with its diagonal and first i
    left_k: list[int] = []
    left_i: list[int] = []
    q = np.ones(1, dtype=np.float64)  # the walk's mass on diagonal k over i = a..a+len(q)-1 (none elsewhere)
    a, k = 0, 0
    while k < total and q.size:
        s = min(after_l[k] - k, max_jump)
        kern = kernels.get(s)
        if kern is None:
            t = np.arange(s + 1, dtype=np.int64)
            kern = np.exp(lgf[s] - lgf[t] - lgf[s - t] + t * log_pn + (s - t) * log_pm)
            kernels[s] = kern
        out = np.convolve(q, kern)  # over i = a..a+len(q)+s-1 on diagonal k + s
        k += s
        lo_in, hi_in = max(lo_l[k] - a, 0), min(hi_l[k] - a + 1, out.size)
        if hi_in <= lo_in:
            lo_in = hi_in = out.size
        if lo_in:
            left.append(out[:lo_in])
            left_k.append(k)
            left_i.append(a)
        if hi_in < out.size:
            left.append(out[hi_in:])
            left_k.append(k)
            left_i.append(a + hi_in)
        q = out[lo_in:hi_in]
        a += lo_in
    if not left:
        return 0.0
    mass = np.concatenate(left)
    sizes = np.array([x.size for x in left], dtype=np.int64)
    kk = np.repeat(np.asarray(left_k, dtype=np.int64), sizes)
    ii = np.repeat(np.asarray(left_i, dtype=np.int64) - np.cumsum(sizes) + sizes, sizes) + np.arange(mass.size)
    x, y = n - ii, m - (kk - ii)  # values of each sample left after the cell
    ok = (x >= 0) & (y >= 0) & (mass > 0)
    x, y, kk, ii, mass = x[ok], y[ok], kk[ok], ii[ok], mass[ok]
    log_w = (lgf[total - kk] - lgf[x] - lgf[y]) - (lgf[total] - lgf[n] - lgf[m]) - ii * log_pn - (kk - ii) * log_pm
    p = float(np.sum(mass * np.exp(log_w)))
    return min(max(p, 0.0), 1.0) if math.isfinite(p) else 1.0
