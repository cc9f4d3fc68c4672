"""Exact two-sample drift tests on whole samples (pure numpy/scipy, no Ray).

An offline check (``raymlops monitor check``, ``monitor report`` on two files) holds both
datasets whole, so it needs no sketch: every statistic here is the one computed from the raw
values. Which test each column gets (:func:`column_kind`), and why:

``categorical``
    Strings, booleans, dictionary columns, and numeric columns named in ``categorical``:
    Pearson's chi-square test of homogeneity on the 2 x k table of both datasets' counts over the
    union of the categories either one holds (:func:`scipy.stats.chi2_contingency` with
    ``correction=False``; a category one side never saw counts too). Also the Jensen-Shannon
    distance and PSI of the two shares.
``discrete``
    Numeric columns whose finite values are all integers, with at most ``discrete_max_values``
    (50 by default) distinct values in the union of both datasets (counts, ratings, pixel
    intensities, small codes): the same chi-square test on that exact support. KS assumes a
    continuous distribution; on a handful of tied values its p-values are too large (the test is
    conservative and loses power), while the contingency table uses exactly what the data holds.
    This is what alibi-detect does for a column it is told is categorical.
``continuous``
    Every other numeric column: the two-sample Kolmogorov-Smirnov test, with the statistic
    computed exactly and the p-value as :func:`scipy.stats.ks_2samp` (``method="auto"``) gives
    it: scipy's exact distribution when both samples hold at most 10,000 values (then
    ``ks_2samp`` itself is called), else Smirnov's distribution
    ``scipy.stats.kstwo.sf(D, round(n * m / (n + m)))`` (:func:`raymlops.stats.drift.ks_p_values`,
    which reports the limiting Kolmogorov distribution's value far in the tail, p < 1e-9). Also
    the exact Wasserstein-1 distance divided by the reference standard deviation, and PSI on
    about ``n_bins`` bins of equal reference mass.

Missing values (NaN, None) and infinities are left out of every test; their share is reported
(``missing_rate``).

How the exact KS statistic and Wasserstein distance are computed fast (:func:`ks_wasserstein`):
``sup |F_ref - F_cur|`` and ``integral |F_ref - F_cur|`` only need the two empirical CDFs. One
pass counts both samples on 65,536 equal-width bins of the pooled range (a multiply and a
``bincount``, no sort); at every bin boundary both CDFs are then known exactly, and inside a bin
``F_ref - F_cur`` moves by at most that bin's counts. Only bins where the gap could exceed the
largest gap seen at a boundary, or where it changes sign, are refined; their values (a few
thousand, typically) are sorted and evaluated point by point, and a bin that holds many values
(heavy tails) is split again the same way. Everywhere else the integral is exact from per-bin
sums of the values. The result equals the statistic of the sorted values (the tests hold it
to ``scipy.stats.ks_2samp`` and ``scipy.stats.wasserstein_distance``); the work is a few linear
passes per column instead of sorting millions of values.

:func:`compare` runs every column on a thread pool (numpy's passes release the GIL) and the
chi-square tests of all categorical and discrete columns in one vectorised call
(:func:`raymlops.stats.drift.compare_rows`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from raymlops.stats.drift import KS_EXACT_MAX_N, compare_rows, ks_p_values

__all__ = [
    "CATEGORICAL",
    "CONTINUOUS",
    "DISCRETE",
    "ColumnTest",
    "column_kind",
    "compare",
    "ks_wasserstein",
]

CATEGORICAL, DISCRETE, CONTINUOUS = "categorical", "discrete", "continuous"
_BINS = 1 << 16  # equal-width bins of the first pass
_LEAF = 1 << 12  # at most this many values: sort them and evaluate point by point
_MAX_DEPTH = 8

FloatArray = npt.NDArray[np.float64]


# ------------------------------------------------------------------ exact KS and Wasserstein


def _leaf(sa: FloatArray, sb: FloatArray, bin_a: npt.NDArray[np.int64], bin_b: npt.NDArray[np.int64],
          below_a: FloatArray, below_b: FloatArray, left: FloatArray, right: FloatArray, n: int, m: int
          ) -> tuple[float, float]:
    """Largest gap and area of ``F_a - F_b`` over a set of bins, point by point.

    ``sa`` / ``sb``: the sorted values of both samples in these bins (every value of each bin);
    ``bin_a`` / ``bin_b``: their bin (``0..k-1``, non-decreasing); ``below_a[j]`` /
    ``below_b[j]``: values of each whole sample below bin ``j``; ``left`` / ``right``: its edges.
    """
    k = left.size
    ca = np.bincount(bin_a, minlength=k)
    cb = np.bincount(bin_b, minlength=k)
    # selected values before bin j, to turn a rank among the selected into a rank in the sample
    sel_a = np.concatenate([[0], np.cumsum(ca)[:-1]])
    sel_b = np.concatenate([[0], np.cumsum(cb)[:-1]])
    pts = np.concatenate([sa, sb])
    bins = np.concatenate([bin_a, bin_b])
    order = np.argsort(pts, kind="stable")
    pts, bins = pts[order], bins[order]
    fa = below_a[bins] + (np.searchsorted(sa, pts, side="right") - sel_a[bins])
    fb = below_b[bins] + (np.searchsorted(sb, pts, side="right") - sel_b[bins])
    diff = np.abs(fa / n - fb / m)
    start = np.abs(below_a / n - below_b / m)  # the gap just left of each bin's first value
    same = np.zeros(pts.size, dtype=bool)
    same[:-1] = bins[1:] == bins[:-1]
    nxt = np.empty_like(pts)
    nxt[:-1] = pts[1:]
    nxt = np.where(same, nxt, right[bins])
    first = np.ones(pts.size, dtype=bool)
    first[1:] = ~same[:-1]
    area = float(np.sum(diff * (nxt - pts)) + np.sum(start[bins[first]] * (pts[first] - left[bins[first]])))
    empty = (ca + cb) == 0  # only the top-level call can pass one: a gap with no values
    area += float(np.sum(start[empty] * (right[empty] - left[empty])))
    return float(max(diff.max(initial=0.0), start.max(initial=0.0))), area


def _scan(a: FloatArray, b: FloatArray, base_a: int, base_b: int, lo: float, hi: float, n: int, m: int,
          best: float, depth: int) -> tuple[float, float]:
    """``(largest |F_a - F_b|, integral of |F_a - F_b| over [lo, hi])``, where ``a`` and ``b``
    are every value of each sample in ``[lo, hi]`` and ``base_a`` / ``base_b`` count those below.
    ``best`` is a gap already attained elsewhere (bins that cannot beat it are not refined)."""
    size = a.size + b.size
    g0 = base_a / n - base_b / m
    if size == 0:
        return max(best, abs(g0)), abs(g0) * (hi - lo)
    vmin = min(a.min(initial=np.inf), b.min(initial=np.inf))
    vmax = max(a.max(initial=-np.inf), b.max(initial=-np.inf))
    width = vmax - vmin
    n_bins = min(_BINS, max(size // 4, 16))
    scale = n_bins / width if width > 0 else math.inf
    if size <= _LEAF or depth >= _MAX_DEPTH or not math.isfinite(scale):
        sa, sb = np.sort(a), np.sort(b)
        one = np.zeros(1, dtype=np.float64)
        d, area = _leaf(sa, sb, np.zeros(sa.size, dtype=np.int64), np.zeros(sb.size, dtype=np.int64),
                        one + base_a, one + base_b, one + lo, one + hi, n, m)
        return max(best, d), area
    ta = np.subtract(a, vmin)
    ta *= scale
    tb = np.subtract(b, vmin)
    tb *= scale
    ia = ta.astype(np.int64)
    ib = tb.astype(np.int64)
    np.minimum(ia, n_bins - 1, out=ia)
    np.minimum(ib, n_bins - 1, out=ib)
    ca = np.bincount(ia, minlength=n_bins)
    cb = np.bincount(ib, minlength=n_bins)
    # sum over a bin's values of (right edge - value) / bin width: the exact integral of its CDF step
    k1 = np.arange(1, n_bins + 1, dtype=np.float64)
    ra = ca * k1 - np.bincount(ia, weights=ta, minlength=n_bins)
    rb = cb * k1 - np.bincount(ib, weights=tb, minlength=n_bins)
    del ta, tb
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
    area = abs(g0) * (vmin - lo) + abs(float(gap[-1])) * (hi - vmax) + float(np.abs(integral[~refine]).sum())
    chosen = np.flatnonzero(refine)
    if chosen.size:
        heavy = (ca[chosen] + cb[chosen]) > max(_LEAF, size // 16)
        light = chosen[~heavy]
        if light.size:
            local = np.full(n_bins, -1, dtype=np.int64)
            local[light] = np.arange(light.size)
            la, lb = local[ia], local[ib]
            ka, kb = la >= 0, lb >= 0
            sa, sb = a[ka], b[kb]
            oa, ob = np.argsort(sa), np.argsort(sb)
            sa, sb = sa[oa], sb[ob]
            d, part = _leaf(sa, sb, la[ka][oa], lb[kb][ob], below_a[light].astype(np.float64),
                            below_b[light].astype(np.float64), edges[light], edges[light + 1], n, m)
            best = max(best, d)
            area += part
        for j in chosen[heavy].tolist():
            if not crosses[j] and max(upper[j], -lower[j]) <= best - tol:
                area += abs(float(integral[j]))
                continue
            best, part = _scan(a[ia == j], b[ib == j], int(below_a[j]), int(below_b[j]), float(edges[j]),
                               float(edges[j + 1]), n, m, best, depth + 1)
            area += part
    return best, area


def ks_wasserstein(reference: npt.ArrayLike, current: npt.ArrayLike) -> tuple[float, float]:
    """``(D, W1)``: the two-sample Kolmogorov-Smirnov statistic ``sup |F_ref - F_cur|`` and the
    Wasserstein-1 distance ``integral |F_ref - F_cur| dx`` of two samples of finite values,
    exactly (see the module docstring for how). Either sample empty: ``(nan, nan)``."""
    a = np.ascontiguousarray(reference, dtype=np.float64).ravel()
    b = np.ascontiguousarray(current, dtype=np.float64).ravel()
    if a.size == 0 or b.size == 0:
        return math.nan, math.nan
    lo = float(min(a.min(), b.min()))
    hi = float(max(a.max(), b.max()))
    return _scan(a, b, 0, 0, lo, hi, a.size, b.size, 0.0, 0)


# ------------------------------------------------------------------------------ columns


def _finite(values: npt.ArrayLike) -> FloatArray:
    arr = np.asarray(values)
    if arr.dtype.kind in "iub":
        return arr.astype(np.float64)
    arr = np.asarray(arr, dtype=np.float64)
    ok = np.isfinite(arr)
    return arr if ok.all() else arr[ok]


def _is_numeric(values: npt.ArrayLike) -> bool:
    return np.asarray(values).dtype.kind in "iuf"


def _distinct_integers(a: FloatArray, b: FloatArray, limit: int) -> FloatArray | None:
    """The sorted distinct values of both samples if they are all integers and at most ``limit``
    of them; None otherwise (cheap: looks at a strided sample first)."""
    if limit <= 0:
        return None
    for x in (a, b):
        probe = x[:: max(x.size // 4096, 1)]
        if not np.array_equal(probe, np.floor(probe)) or np.unique(probe).size > limit:
            return None
    for x in (a, b):
        if not np.array_equal(x, np.floor(x)):
            return None
    lo = min(a.min(initial=np.inf), b.min(initial=np.inf))
    hi = max(a.max(initial=-np.inf), b.max(initial=-np.inf))
    if not math.isfinite(lo):
        return None
    if hi - lo < 1 << 20:
        seen = np.zeros(int(hi - lo) + 1, dtype=bool)
        seen[(a - lo).astype(np.int64)] = True
        seen[(b - lo).astype(np.int64)] = True
        values = np.flatnonzero(seen).astype(np.float64) + lo
    else:
        values = np.unique(np.concatenate([a, b]))
    return values if values.size <= limit else None


def column_kind(reference: npt.ArrayLike, current: npt.ArrayLike, categorical: bool = False,
                discrete_max_values: int = 50) -> str:
    """Which test a column gets (see the module docstring): ``categorical`` when named so or not
    numeric (strings, booleans, objects), ``discrete`` when every finite value of both samples is
    an integer and there are at most ``discrete_max_values`` distinct ones, else ``continuous``."""
    if categorical or not (_is_numeric(reference) and _is_numeric(current)):
        return CATEGORICAL
    a, b = _finite(reference), _finite(current)
    return DISCRETE if _distinct_integers(a, b, discrete_max_values) is not None else CONTINUOUS


@dataclass(frozen=True)
class ColumnTest:
    """One column's exact comparison. ``test`` is ``ks`` (continuous) or ``chi2`` (categorical,
    discrete); ``statistic`` / ``p_value`` are that test's. ``wasserstein`` (continuous: W1 over the
    reference standard deviation), ``js`` (categorical, discrete), ``psi`` and the rates are always
    filled where they apply (NaN where not)."""

    column: str
    kind: str
    test: str
    statistic: float
    p_value: float
    wasserstein: float
    js: float
    psi: float
    rows: int
    reference_rows: int
    values: int  # non-missing values of the current sample that were tested
    reference_values: int
    missing_rate: float
    ref_missing_rate: float
    out_of_range_rate: float
    unseen_rate: float
    categories: int  # size of the tested support (categorical, discrete); 0 for continuous
    mean: float | None = None
    std: float | None = None


def _labels(values: Any) -> tuple[list[Any], npt.NDArray[np.int64], int]:
    """``(distinct labels, count of each, missing)`` of a categorical column (any array-like)."""
    try:
        import pyarrow as pa
        import pyarrow.compute as pc

        arr = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(np.asarray(values))
        if pa.types.is_dictionary(arr.type):
            arr = arr.cast(arr.type.value_type)
        if pa.types.is_floating(arr.type):
            arr = pc.if_else(pc.is_nan(arr), None, arr)
        counts = pc.value_counts(arr)
        labels = counts.field("values").to_pylist()
        freq = np.asarray(counts.field("counts"), dtype=np.int64)
        keep = np.array([v is not None for v in labels], dtype=bool)
        missing = int(freq[~keep].sum()) if keep.size else 0
        return [v for v, k in zip(labels, keep, strict=True) if k], freq[keep], missing
    except (ImportError, TypeError, ValueError):  # objects pyarrow cannot type: count in Python
        from collections import Counter

        c: Counter[Any] = Counter()
        missing = 0
        for v in np.asarray(values, dtype=object).ravel().tolist():
            if v is None or (isinstance(v, float) and math.isnan(v)):
                missing += 1
            else:
                c[v] += 1
        return list(c), np.fromiter(c.values(), dtype=np.int64, count=len(c)), missing


def _table_categorical(ref: Any, cur: Any) -> tuple[FloatArray, FloatArray, int, int, float]:
    """Counts of both samples on the union of their labels, missing counts, unseen share."""
    rl, rc, r_miss = _labels(ref)
    cl, cc, c_miss = _labels(cur)
    index = {v: i for i, v in enumerate(rl)}
    for v in cl:
        index.setdefault(v, len(index))
    r = np.zeros(len(index), dtype=np.float64)
    c = np.zeros(len(index), dtype=np.float64)
    r[: len(rl)] = rc
    c[[index[v] for v in cl]] = cc
    unseen = float(c[len(rl):].sum() / c.sum()) if c.sum() else math.nan
    return r, c, r_miss, c_miss, unseen


def _psi_equal_mass(a: FloatArray, b: FloatArray, n_bins: int) -> float:
    """PSI on ``n_bins`` bins of about equal reference mass (edges: the reference's quantiles, of
    a strided sample of at most about 100,000 values on big columns)."""
    step = max(a.size // 50_000, 1)
    edges = np.unique(np.quantile(a[::step], np.linspace(0, 1, n_bins + 1)[1:-1]))
    # values <= each edge, one vectorised comparison per edge (cheaper than a search per value)
    below_a = np.array([0, *(np.count_nonzero(a <= e) for e in edges), a.size])
    below_b = np.array([0, *(np.count_nonzero(b <= e) for e in edges), b.size])
    return float(compare_rows(np.diff(below_a), np.diff(below_b))[3])


def _continuous(name: str, ref: npt.ArrayLike, cur: npt.ArrayLike, n_bins: int) -> ColumnTest:
    r_all, c_all = np.asarray(ref), np.asarray(cur)
    a, b = _finite(r_all), _finite(c_all)
    n, m = a.size, b.size
    base = dict(column=name, kind=CONTINUOUS, test="ks", rows=int(c_all.size), reference_rows=int(r_all.size),
                values=m, reference_values=n, missing_rate=1 - m / c_all.size if c_all.size else math.nan,
                ref_missing_rate=1 - n / r_all.size if r_all.size else math.nan, unseen_rate=math.nan, categories=0)
    if n == 0 or m == 0:
        return ColumnTest(statistic=math.nan, p_value=1.0, wasserstein=math.nan, js=math.nan, psi=math.nan,
                          out_of_range_rate=math.nan, **base)  # type: ignore[arg-type]
    d, w1 = ks_wasserstein(a, b)
    if max(n, m) <= KS_EXACT_MAX_N:  # scipy's exact distribution: ks_2samp itself
        from scipy.stats import ks_2samp

        res = ks_2samp(a, b, method="auto")
        d, p = float(res.statistic), float(res.pvalue)
    else:
        p = float(ks_p_values(d, n, m))
    ref_std = float(a.std())
    r_lo, r_hi = a.min(), a.max()
    outside = int(np.count_nonzero(b < r_lo) + np.count_nonzero(b > r_hi))
    return ColumnTest(statistic=d, p_value=p, wasserstein=w1 / (ref_std if ref_std > 0 else 1.0), js=math.nan,
                      psi=_psi_equal_mass(a, b, n_bins), out_of_range_rate=outside / m, mean=float(b.mean()),
                      std=float(b.std()), **base)  # type: ignore[arg-type]


def _discrete_table(ref: npt.ArrayLike, cur: npt.ArrayLike, limit: int
                    ) -> tuple[FloatArray, FloatArray, int, int, float, float, float] | None:
    r_all, c_all = np.asarray(ref), np.asarray(cur)
    a, b = _finite(r_all), _finite(c_all)
    values = _distinct_integers(a, b, limit)
    if values is None:
        return None
    r = np.bincount(np.searchsorted(values, a), minlength=values.size).astype(np.float64)
    c = np.bincount(np.searchsorted(values, b), minlength=values.size).astype(np.float64)
    unseen = float(c[r == 0].sum() / c.sum()) if c.sum() else math.nan
    mean = float(b.mean()) if b.size else math.nan
    std = float(b.std()) if b.size else math.nan
    return r, c, int(r_all.size - a.size), int(c_all.size - b.size), unseen, mean, std


def compare(reference: Mapping[str, Any], current: Mapping[str, Any], columns: Sequence[str] | None = None,
            categorical: Sequence[str] = (), discrete_max_values: int = 50, n_bins: int = 10,
            threads: int | None = None) -> list[ColumnTest]:
    """Every column of ``columns`` (default: those of ``reference``) compared exactly, in order
    (see the module docstring). ``reference`` / ``current``: name -> 1-D array (numpy, or a
    pyarrow array for categorical columns). ``threads``: the pool size (default: the CPUs)."""
    names = list(columns) if columns is not None else list(reference)
    forced = set(categorical)
    workers = max(1, min(threads or os.cpu_count() or 1, len(names)))

    def one(name: str) -> tuple[str, Any]:
        ref, cur = reference[name], current[name]
        numeric = name not in forced and _is_numeric(ref) and _is_numeric(cur)
        if numeric:
            table = _discrete_table(ref, cur, discrete_max_values)
            if table is None:
                return CONTINUOUS, _continuous(name, ref, cur, n_bins)
            return DISCRETE, table
        r, c, r_miss, c_miss, unseen = _table_categorical(ref, cur)
        return CATEGORICAL, (r, c, r_miss, c_miss, unseen, None, None)

    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="raymlops-exact") as pool:
            done = list(pool.map(one, names))
        # the largest columns first would balance better; map keeps the order and is enough here
    else:
        done = [one(n) for n in names]
    tables = [(i, kind, t) for i, (kind, t) in enumerate(done) if kind != CONTINUOUS]
    out: list[ColumnTest | None] = [t if kind == CONTINUOUS else None for kind, t in done]
    if tables:
        width = max(t[0].size for _, _, t in tables)
        r = np.zeros((len(tables), width))
        c = np.zeros((len(tables), width))
        for j, (_, _, t) in enumerate(tables):
            r[j, : t[0].size], c[j, : t[1].size] = t[0], t[1]
        stat, p, js, psi = compare_rows(r, c)
        for j, (i, kind, t) in enumerate(tables):
            rv, cv = int(r[j].sum()), int(c[j].sum())
            r_rows, c_rows = rv + t[2], cv + t[3]
            out[i] = ColumnTest(
                column=names[i], kind=kind, test="chi2", statistic=float(stat[j]), p_value=float(p[j]),
                wasserstein=math.nan, js=float(js[j]), psi=float(psi[j]), rows=c_rows, reference_rows=r_rows,
                values=cv, reference_values=rv, missing_rate=t[3] / c_rows if c_rows else math.nan,
                ref_missing_rate=t[2] / r_rows if r_rows else math.nan,
                out_of_range_rate=math.nan, unseen_rate=t[4], categories=int(((r[j] + c[j]) > 0).sum()),
                mean=t[5], std=t[6])
    return [o for o in out if o is not None]
