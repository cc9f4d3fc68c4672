"""Exact two-sample Kolmogorov-Smirnov statistic and Wasserstein-1 distance, in linear passes.

``sup |F_a - F_b|`` and ``integral |F_a - F_b|`` only need the two empirical CDFs, so no sort of
millions of values is needed. :func:`ks_profile` makes one pass over each sample, a block of
``_CHUNK`` values at a time into buffers it reuses (so the work stays in the CPU cache and
allocates no array of the sample's size but a 2-byte bin index per value), that counts it on up
to 65,536 equal-width bins of the pooled range and sums each bin's values. At every bin boundary
both CDFs are then known exactly, and inside a bin ``F_a - F_b`` moves by at most that bin's
counts; so only the bins where the gap could exceed the largest gap seen at a boundary, or where
it changes sign, are refined: their values (a small share) are picked out with the stored bin
index, sorted and evaluated point by point (:func:`_leaf`), and a bin that holds many values
(heavy tails, atoms) is binned again the same way (up to ``_MAX_DEPTH`` levels). Everywhere else
the integral is exact from the per-bin sums. The same pass gives the mean and variance, and the
counts at or below a few given points (the PSI bin edges, the reference range) come from the
boundary counts plus the refined values of the points' bins, with no extra pass.

:func:`ks_2samp_p` gives the p-value as :func:`scipy.stats.ks_2samp` computes it for large
samples. Pure numpy (and scipy for the p-value): no Ray, no pandas.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from raymlops.stats.kolmogorov import kolmogorov_sf
from raymlops.stats.kolmogorov import kstwo_sf as series_sf
from raymlops.stats.sidecar import forked, preload_scipy, running_helper, start_helper

__all__ = ["KS_TAIL_P", "KsProfile", "ks_2samp_p", "ks_2samp_p_later", "ks_profile", "ks_wasserstein", "mean_std",
           "start_p_value_helper"]

#: below this p-value (by the limiting distribution) large-sample KS p-values come from the limiting
#: Kolmogorov distribution instead of ``kstwo.sf``: same decision, 1-2 s less per drifted column
KS_TAIL_P = 1e-9

_BINS = 1 << 16  # equal-width bins of the first pass (the stored bin index is 2 bytes)
_LEAF = 1 << 12  # at most this many values: sort them and evaluate point by point
_MAX_DEPTH = 8
#: a binned variance below this share of the mean square is mostly rounding: it is computed again
_CANCELLED = 1e-6
_CHUNK = 1 << 18  # values binned at once, in buffers reused across blocks (few calls: each needs the GIL)

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class KsProfile:
    """What one pass over two samples gives: the KS statistic ``d``, the Wasserstein-1 distance
    ``w1``, each sample's mean and (population) standard deviation, and the counts of each sample
    at or below each of the requested points."""

    d: float
    w1: float
    mean_a: float
    std_a: float
    mean_b: float
    std_b: float
    below_a: IntArray
    below_b: IntArray


def _leaf(sa: FloatArray, sb: FloatArray, bin_a: IntArray, bin_b: IntArray, below_a: FloatArray,
          below_b: FloatArray, left: FloatArray, right: FloatArray, n: int, m: int) -> tuple[float, float]:
    """Largest gap and area of ``F_a - F_b`` over a set of bins, point by point.

    ``sa`` / ``sb``: the sorted values of both samples in these bins (every value of each bin);
    ``bin_a`` / ``bin_b``: their bin (``0..k-1``, non-decreasing); ``below_a[j]`` /
    ``below_b[j]``: values of each whole sample below bin ``j``; ``left`` / ``right``: its edges.
    Both CDFs are evaluated after the last of each run of equal values, from a merge of the two
    sorted samples and running counts (no binary search).
    """
    k = left.size
    # selected values before bin j, to turn a rank among the selected into a rank in the sample
    sel_a = np.concatenate([[0], np.cumsum(np.bincount(bin_a, minlength=k))[:-1]])
    sel_b = np.concatenate([[0], np.cumsum(np.bincount(bin_b, minlength=k))[:-1]])
    start = np.abs(below_a / n - below_b / m)  # the gap just left of each bin's first value
    pts = np.concatenate([sa, sb])
    if pts.size == 0:
        return float(start.max(initial=0.0)), float(np.sum(start * (right - left)))
    from_a = np.zeros(pts.size, dtype=bool)
    from_a[: sa.size] = True
    order = np.argsort(pts, kind="stable")  # a merge of two sorted runs
    pts, from_a = pts[order], from_a[order]
    bins = np.concatenate([bin_a, bin_b])[order]
    end = np.flatnonzero(np.append(pts[1:] != pts[:-1], True))  # last of each run of equal values
    a_upto = np.cumsum(from_a)[end]  # selected values of a at or below each distinct value
    b_upto = end + 1 - a_upto
    be, v = bins[end], pts[end]
    diff = np.abs((below_a[be] + a_upto - sel_a[be]) / n - (below_b[be] + b_upto - sel_b[be]) / m)
    same = np.append(be[1:] == be[:-1], False)
    nxt = np.where(same, np.append(v[1:], 0.0), right[be])  # the next distinct value, or the bin's end
    first = np.insert(~same[:-1], 0, True)
    area = float(np.sum(diff * (nxt - v)) + np.sum(start[be[first]] * (v[first] - left[be[first]])))
    empty = np.ones(k, dtype=bool)
    empty[be] = False  # only the top-level call can pass one: a gap with no values
    area += float(np.sum(start[empty] * (right[empty] - left[empty])))
    return float(max(diff.max(initial=0.0), start.max(initial=0.0))), area


class _Binned:
    """One sample counted on ``nb`` equal-width bins from ``vmin`` (``scale`` bins per unit): per
    bin the count and the sum of the values' positions in bin widths; the bin of every value
    (2 bytes each); the sums of the positions and of their squares (for the mean and variance)."""

    def __init__(self, x: FloatArray, vmin: float, scale: float, nb: int) -> None:
        n = x.size
        self.counts = np.zeros(nb, dtype=np.int64)
        self.sums = np.zeros(nb, dtype=np.float64)
        self.index: npt.NDArray[np.integer[Any]] = np.empty(n, dtype=np.uint16 if nb <= 1 << 16 else np.int32)
        self.sq = 0.0
        step = max(min(_CHUNK, n), 1)
        t_buf = np.empty(step, dtype=np.float64)
        i_buf = np.empty(step, dtype=np.intp)
        for s in range(0, n, step):
            xs = x[s:s + step]
            t, ii = t_buf[: xs.size], i_buf[: xs.size]
            np.subtract(xs, vmin, out=t)
            np.multiply(t, scale, out=t)
            np.copyto(ii, t, casting="unsafe")  # t >= 0: truncation is the floor
            np.minimum(ii, nb - 1, out=ii)
            self.counts += np.bincount(ii, minlength=nb)
            self.sums += np.bincount(ii, weights=t, minlength=nb)
            self.index[s:s + xs.size] = ii
            # not np.dot (BLAS would start its threads for each block) nor square-then-sum (two passes)
            self.sq += float(np.einsum("i,i->", t, t))

    def pick(self, x: FloatArray, mark: npt.NDArray[np.bool_]) -> FloatArray:
        """The values of ``x`` whose bin is marked, sorted."""
        step = _CHUNK
        parts = [x[s:s + step][np.take(mark, self.index[s:s + step])] for s in range(0, x.size, step)]
        out = np.concatenate(parts) if parts else np.empty(0, dtype=np.float64)
        out.sort()
        return out

    def only(self, x: FloatArray, j: int) -> FloatArray:
        return x[self.index == j]


def mean_std(x: FloatArray) -> tuple[float, float]:
    """The mean and (population) standard deviation of finite values, without overflow: values past
    about 1e154 square past the largest double, so such samples are divided by their largest
    magnitude first."""
    if x.size == 0:
        return math.nan, math.nan
    big = float(np.max(np.abs(x)))
    if big <= _SQUARES_SAFE:
        return float(x.mean()), float(x.std())
    y = x / big
    return float(y.mean()) * big, float(y.std()) * big


#: below this magnitude, sums of squares of millions of values stay finite
_SQUARES_SAFE = 1e150


def _bin_of(v: FloatArray, vmin: float, scale: float, nb: int) -> IntArray:
    """The bin of each value, by the same arithmetic as :class:`_Binned` (clipped to the range)."""
    t = np.subtract(v, vmin)
    np.multiply(t, scale, out=t)
    return np.clip(np.floor(t), 0, nb - 1).astype(np.int64)


def _scan(a: FloatArray, b: FloatArray, base_a: int, base_b: int, lo: float, hi: float, n: int, m: int,
          best: float, depth: int, points: FloatArray | None = None, stats: list[float] | None = None,
          span: tuple[float, float] | None = None) -> tuple[float, float, IntArray, IntArray]:
    """``(largest |F_a - F_b|, integral of |F_a - F_b| over [lo, hi], counts of a and of b at or
    below each of ``points``)``, where ``a`` and ``b`` are every value of each sample in
    ``[lo, hi]`` and ``base_a`` / ``base_b`` count those below. ``best`` is a gap already attained
    elsewhere (bins that cannot beat it are not refined). ``stats``, when given, receives the
    means and standard deviations of ``a`` and ``b``. ``span``: the smallest and largest value of ``a`` and
    ``b`` together, when the caller knows them (else two passes over each find them)."""
    pts = np.empty(0, dtype=np.float64) if points is None else np.asarray(points, dtype=np.float64)
    size = a.size + b.size
    g0 = base_a / n - base_b / m
    if span is None:
        span = (min(a.min(initial=np.inf), b.min(initial=np.inf)), max(a.max(initial=-np.inf), b.max(initial=-np.inf)))
    vmin, vmax = span
    width = vmax - vmin
    n_bins = min(_BINS, max(size // 4, 16))
    scale = n_bins / width if width > 0 else math.inf
    if size <= _LEAF or depth >= _MAX_DEPTH or not math.isfinite(scale):
        sa, sb = np.sort(a), np.sort(b)
        if stats is not None:
            stats.extend([*mean_std(a), *mean_std(b)])
        ca_pts = np.searchsorted(sa, pts, side="right").astype(np.int64)
        cb_pts = np.searchsorted(sb, pts, side="right").astype(np.int64)
        if size == 0:
            return max(best, abs(g0)), abs(g0) * (hi - lo), ca_pts, cb_pts
        one = np.zeros(1, dtype=np.float64)
        d, area = _leaf(sa, sb, np.zeros(sa.size, dtype=np.int64), np.zeros(sb.size, dtype=np.int64),
                        one + base_a, one + base_b, one + lo, one + hi, n, m)
        return max(best, d), area, ca_pts, cb_pts
    ha, hb = _Binned(a, vmin, scale, n_bins), _Binned(b, vmin, scale, n_bins)
    ca, cb = ha.counts, hb.counts
    if stats is not None:
        for h, x in ((ha, a), (hb, b)):
            mt, ms = float(h.sums.sum()) / x.size, h.sq / x.size
            var = ms - mt * mt
            # mean of squares minus squared mean cancels when the values barely vary (a constant column
            # reads as a tiny variance, and the reference's standard deviation scales the distance):
            # there, the variance of the values themselves
            # (in bin widths: the spread of values near 1e300 is found without squaring them)
            std = mean_std(x)[1] if var <= _CANCELLED * ms else math.sqrt(var) / scale
            stats.extend([vmin + mt / scale, std])
    # sum over a bin's values of (right edge - value) / bin width: the exact integral of its CDF step
    k1 = np.arange(1, n_bins + 1, dtype=np.float64)
    ra = ca * k1 - ha.sums
    rb = cb * k1 - hb.sums
    below_a = base_a + np.concatenate([[0], np.cumsum(ca)])
    below_b = base_b + np.concatenate([[0], np.cumsum(cb)])
    gap = below_a / n - below_b / m  # F_a - F_b at every bin boundary: exact
    start = gap[:-1]
    best = max(best, float(np.abs(gap).max()))
    edges = vmin + np.arange(n_bins + 1, dtype=np.float64) / scale
    edges[-1] = vmax
    step = edges[1:] - edges[:-1]
    upper = start + ca / n  # F_a - F_b inside a bin stays within [lower, upper]
    lower = start - cb / m
    integral = step * (start + ra / n - rb / m)  # of F_a - F_b over the bin: exact
    crosses = (lower < 0) & (upper > 0)
    tol = 1e-12
    refine = ((ca + cb) > 0) & (crosses | (np.maximum(upper, -lower) > best - tol))
    heavy_limit = max(_LEAF, size // 16)
    pt_bins = _bin_of(pts, vmin, scale, n_bins)
    want = refine.copy()
    want[pt_bins] = True  # the points' bins: their values give the counts at or below each point
    light = want & ((ca + cb) <= heavy_limit)
    area = abs(g0) * (vmin - lo) + abs(float(gap[-1])) * (hi - vmax) + float(np.abs(integral[~refine]).sum())
    pa_cnt = np.zeros(pts.size, dtype=np.int64)
    pb_cnt = np.zeros(pts.size, dtype=np.int64)
    if light.any():
        sa, sb = ha.pick(a, light), hb.pick(b, light)
        bin_a, bin_b = _bin_of(sa, vmin, scale, n_bins), _bin_of(sb, vmin, scale, n_bins)
        if pts.size:
            lp = light[pt_bins]
            pa_cnt[lp] = (below_a[pt_bins[lp]] - base_a + np.searchsorted(sa, pts[lp], side="right")
                          - np.searchsorted(bin_a, pt_bins[lp], side="left"))
            pb_cnt[lp] = (below_b[pt_bins[lp]] - base_b + np.searchsorted(sb, pts[lp], side="right")
                          - np.searchsorted(bin_b, pt_bins[lp], side="left"))
        chosen = np.flatnonzero(refine & light)
        if chosen.size:
            local = np.full(n_bins, -1, dtype=np.int64)
            local[chosen] = np.arange(chosen.size)
            la, lb = local[bin_a], local[bin_b]
            ka, kb = la >= 0, lb >= 0
            d, part = _leaf(sa[ka], sb[kb], la[ka], lb[kb], below_a[chosen].astype(np.float64),
                            below_b[chosen].astype(np.float64), edges[chosen], edges[chosen + 1], n, m)
            best = max(best, d)
            area += part
    for j in np.flatnonzero(want & ~light).tolist():  # heavy bins: binned again
        on = pt_bins == j
        if refine[j] and (crosses[j] or max(upper[j], -lower[j]) > best - tol):
            best, part, ca_j, cb_j = _scan(ha.only(a, j), hb.only(b, j), int(below_a[j]), int(below_b[j]),
                                           float(edges[j]), float(edges[j + 1]), n, m, best, depth + 1, pts[on])
            area += part
        else:
            if refine[j]:
                area += abs(float(integral[j]))
            if not on.any():
                continue
            ca_j = np.searchsorted(np.sort(ha.only(a, j)), pts[on], side="right").astype(np.int64)
            cb_j = np.searchsorted(np.sort(hb.only(b, j)), pts[on], side="right").astype(np.int64)
        pa_cnt[on] = below_a[j] - base_a + ca_j
        pb_cnt[on] = below_b[j] - base_b + cb_j
    return best, area, pa_cnt, pb_cnt


def ks_profile(a: FloatArray, b: FloatArray, points: npt.ArrayLike = (), span: tuple[float, float] | None = None
               ) -> KsProfile:
    """One pass over two non-empty samples of finite float64 values (see the module docstring):
    the exact KS statistic and Wasserstein-1 distance, means, variances, and the counts at or below
    each of ``points``. ``span``: the smallest and largest value of both samples, when known."""
    if span is None:
        span = (float(min(a.min(), b.min())), float(max(a.max(), b.max())))
    lo, hi = span
    moments: list[float] = []
    d, w1, pa_cnt, pb_cnt = _scan(a, b, 0, 0, lo, hi, a.size, b.size, 0.0, 0,
                                  np.asarray(points, dtype=np.float64).ravel(), moments, span)
    return KsProfile(d, w1, moments[0], moments[1], moments[2], moments[3], pa_cnt, pb_cnt)


def ks_wasserstein(reference: npt.ArrayLike, current: npt.ArrayLike) -> tuple[float, float]:
    """``(D, W1)``: the two-sample Kolmogorov-Smirnov statistic ``sup |F_ref - F_cur|`` and the
    Wasserstein-1 distance ``integral |F_ref - F_cur| dx`` of two samples of finite values,
    exactly (see the module docstring for how). Either sample empty: ``(nan, nan)``."""
    a = np.ascontiguousarray(reference, dtype=np.float64).ravel()
    b = np.ascontiguousarray(current, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0:
        return math.nan, math.nan
    p = ks_profile(a, b)
    return p.d, p.w1


def _smirnov_regime(d: FloatArray, en: FloatArray) -> npt.NDArray[np.bool_]:
    """Where ``scipy.stats.kstwo.sf(d, en)`` is ``2 * scipy.special.smirnov(en, d)`` (clipped to
    [0, 1]): ``en > 140``, ``1 < en * d < en - 1``, ``d < 0.5`` and ``2.2 <= en * d**2 < 370``
    (scipy's ``_kolmogn`` dispatch, held equal to ``kstwo.sf`` by the tests)."""
    t = en * d
    return (en > 140) & (t > 1.0) & (t < en - 1) & (d < 0.5) & (t * d >= 2.2) & (t * d < 370.0)


def ks_2samp_p(d: npt.ArrayLike, n: npt.ArrayLike, m: npt.ArrayLike) -> FloatArray:
    """Two-sided p-values of KS statistics ``d`` for sample sizes ``n`` and ``m`` by Smirnov's
    distribution, as :func:`scipy.stats.ks_2samp` computes them with ``method="asymp"`` (and with
    ``"auto"`` above 10,000 values per sample): ``kstwo.sf(d, round(n * m / (n + m)))``.

    Where ``kstwo.sf`` is a closed form or the Pelz-Good series, :func:`raymlops.stats.kolmogorov.kstwo_sf`
    gives it without scipy; where it is ``2 * scipy.special.smirnov`` (:func:`_smirnov_regime`)
    that is called directly; :mod:`scipy.stats` is imported only for the rest (the exact
    recursions of smaller samples)."""
    d_, n_, m_ = (np.asarray(x, dtype=np.float64) for x in (d, n, m))
    en = np.round(n_ * m_ / (n_ + m_))
    d_, en = np.broadcast_arrays(d_, en)
    shape = d_.shape
    d_, en = d_.ravel(), en.ravel()
    # Far in the tail (the limiting distribution says p < KS_TAIL_P) kstwo.sf takes 1-2 s per call
    # at a million rows and no decision can depend on the digits it adds: report the limiting
    # Kolmogorov value there (within 1 % of kstwo's at a million rows, both far below any corrected alpha).
    out = kolmogorov_sf(d_ * np.sqrt(en))
    todo = ~(out < KS_TAIL_P)
    for i in np.flatnonzero(todo).tolist():
        got = series_sf(int(en[i]), float(d_[i])) if math.isfinite(en[i]) and en[i] > 0 else None
        if got is not None:
            out[i], todo[i] = got, False
    direct = todo & _smirnov_regime(d_, en)
    if direct.any():
        from scipy.special import smirnov  # 0.2 s to import: only when a p-value needs it

        out[direct] = 2.0 * smirnov(en[direct], d_[direct])
    rest = todo & ~direct
    if rest.any():
        from scipy.stats import kstwo  # most of a second to import: only for the recursions of smaller samples

        out[rest] = kstwo.sf(d_[rest], en[rest])
    return np.asarray(np.clip(out, 0.0, 1.0), dtype=np.float64).reshape(shape)


def _helper_p_value(d: float, n: float, m: float) -> float:
    return float(ks_2samp_p(d, n, m))


def start_p_value_helper() -> None:
    """For a command about to check large samples: a :class:`raymlops.stats.sidecar.Helper`, forked
    now while the process is small, imports scipy.special beside the command's start-up and then
    computes the long ``smirnov`` sums :func:`ks_2samp_p_later` sends it (instead of forking the
    process, grown by then, once per such column)."""
    start_helper(_helper_p_value, warm=("scipy.special",))


#: above this ``en``, a p-value by ``scipy.special.smirnov`` (which holds the GIL for the whole sum,
#: about a second at en = 500,000) is computed in a forked process, beside the other columns
SIDE_PROCESS_MIN_N = 20_000


def ks_2samp_p_later(d: float, n: int, m: int) -> Callable[[], float]:
    """:func:`ks_2samp_p` of one statistic, as a function that returns it. When it is a long
    ``smirnov`` sum (``en`` above ``SIDE_PROCESS_MIN_N``), it runs at once in a forked child
    process, so that it neither waits for nor blocks the other columns' work (scipy's loop holds
    the GIL), or in the command's helper process when one runs (:func:`start_p_value_helper`);
    the function then waits for the answer. When it needs :mod:`scipy.stats`, that starts
    importing now, on a thread (:func:`raymlops.stats.sidecar.preload_scipy`). Elsewhere (or where
    ``os.fork`` is missing or fails) it is computed when the function is called."""
    en = float(np.round(n * m / (n + m)))

    def now() -> float:
        return float(ks_2samp_p(d, n, m))

    if kolmogorov_sf(d * math.sqrt(en)) < KS_TAIL_P:
        return now  # the limiting tail: no scipy
    series = series_sf(int(en), d)
    if series is not None:  # a closed form or the Pelz-Good series, as ks_2samp_p gives it: no scipy
        value = min(max(series, 0.0), 1.0)
        return lambda: value
    if not _smirnov_regime(np.asarray(d, dtype=np.float64), np.asarray(en, dtype=np.float64)):
        preload_scipy()  # kstwo.sf's recursions: scipy.stats
        return now
    helper = running_helper()
    if helper is not None and en > SIDE_PROCESS_MIN_N:  # started by the command: scipy.special is there
        answer = helper.submit(d, n, m)

        def later() -> float:
            got = answer()
            return got if got is not None and math.isfinite(got) else now()

        return later
    from scipy.special import smirnov  # noqa: F401  (imported here, not in the child)

    if en <= SIDE_PROCESS_MIN_N or not hasattr(os, "fork"):
        return now
    return forked(now, now)
