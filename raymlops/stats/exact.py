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
    computed exactly. When both samples hold at most 10,000 values the p-value is exact: without
    ties in the pooled values, :func:`scipy.stats.ks_2samp` itself (its exact distribution); with
    ties (rounded measurements: every column of scikit-learn's wine, breast_cancer, diabetes, iris),
    the exact distribution of the statistic given the ties, :mod:`raymlops.stats.ks_ties` (the
    permutation null R's ``ks.test(exact=TRUE)`` uses; scipy's no-ties distribution is
    conservative there: on 200 random halvings of those datasets its p-values averaged 0.56 and
    4.0 % fell below 0.05). Above 10,000 values, the p-value as ``ks_2samp(method="auto")``
    gives it, ties or not: Smirnov's distribution
    ``scipy.stats.kstwo.sf(D, round(n * m / (n + m)))``, except far in the tail (the limiting
    Kolmogorov distribution, :func:`scipy.special.kolmogorov`, says p < ``KS_TAIL_P`` = 1e-9),
    where that value is reported instead: within 1 % of kstwo's at a million rows (a factor of a
    few at ten thousand, where p is ~1e-160), and ``kstwo.sf`` would spend 1-2 s per column there at
    a million rows without changing any decision. Where kstwo is scipy's Pelz-Good series or a
    closed form (an undrifted large column), :mod:`raymlops.stats.kolmogorov` computes it, bit for
    bit, without importing scipy. Also the exact Wasserstein-1 distance
    divided by the reference standard deviation, and PSI on about ``n_bins`` bins of equal
    reference mass.

The p-value reported (``p_value``) is randomised within the statistic's atom where the exact law
is known (KS up to ``KS_EXACT_MAX_N`` values a side; chi-square tables of at most that many values
a side or with an expected count below 5, by their permutation law): uniform under no drift, with
``U`` fixed by the data (:mod:`raymlops.stats.randomised` says why); ``p_value_upper`` is
``P(T >= t)``, and ``compare(randomise=False)`` reports the p-values above as they are.

Missing values (NaN, None) and infinities are left out of every test; their share is reported
(``missing_rate``).

How the exact KS statistic and Wasserstein distance are computed fast: :mod:`raymlops.stats.ks`
(one linear pass per sample over equal-width bins, refining only the bins where the largest gap
or a sign change can lie; no sort of the whole sample). The same pass gives the column's mean,
standard deviation, PSI counts and out-of-range share. The result equals the statistic of the
sorted values (the tests hold it to ``scipy.stats.ks_2samp`` and
``scipy.stats.wasserstein_distance`` on ties, atoms, heavy tails and tiny samples).

:func:`compare` runs every column on a thread pool (numpy's passes release the GIL) and the
chi-square tests of all categorical and discrete columns in one vectorised call
(:func:`raymlops.stats.drift.compare_rows`). A large-sample KS p-value that is a long
``scipy.special.smirnov`` sum (about a second at a million rows, holding the GIL) is computed in a
forked child process meanwhile (:func:`raymlops.stats.ks.ks_2samp_p_later`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from raymlops.stats.drift import KS_EXACT_MAX_N, compare_rows, unseen_share
from raymlops.stats.drift import psi as psi_index
from raymlops.stats.ks import KS_TAIL_P, ks_2samp_p, ks_2samp_p_later, ks_profile, ks_wasserstein, mean_std
from raymlops.stats.ks_ties import ks_2samp_randomised
from raymlops.stats.randomised import chi2_permutation, data_digest, permuted_rows, uniform_of

__all__ = [
    "CATEGORICAL",
    "CONTINUOUS",
    "DISCRETE",
    "KS_EXACT_MAX_N",
    "KS_TAIL_P",
    "ColumnTest",
    "column_kind",
    "compare",
    "ks_2samp_p",
    "ks_profile",
    "ks_wasserstein",
]

CATEGORICAL, DISCRETE, CONTINUOUS = "categorical", "discrete", "continuous"

FloatArray = npt.NDArray[np.float64]


# ------------------------------------------------------------------------------ columns


def _finite(values: npt.ArrayLike) -> FloatArray:
    return _finite_range(values)[0]


def _finite_range(values: npt.ArrayLike) -> tuple[FloatArray, float, float]:
    """``(finite values as float64, their min, their max)`` (``inf``, ``-inf`` when there are none):
    the range comes from the passes that find the non-finite values, so no later pass looks for it."""
    arr = np.asarray(values)
    arr = arr.astype(np.float64) if arr.dtype.kind in "iub" else np.asarray(arr, dtype=np.float64)
    if arr.size == 0:
        return arr, math.inf, -math.inf
    # min and max are finite only when every value is (NaN propagates): two passes, no mask
    lo, hi = float(arr.min()), float(arr.max())
    if not (math.isfinite(lo) and math.isfinite(hi)):
        arr = arr[np.isfinite(arr)]
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (math.inf, -math.inf)
    return arr, lo, hi


def _is_numeric(values: Any) -> bool:
    t = getattr(values, "type", None)
    if t is not None and type(values).__module__.startswith("pyarrow"):  # np.asarray would import pandas
        import pyarrow as pa

        return bool(pa.types.is_integer(t) or pa.types.is_floating(t))
    return np.asarray(values).dtype.kind in "iuf"


def distinct_integers(a: FloatArray, b: FloatArray, limit: int, lo: float | None = None, hi: float | None = None
                       ) -> FloatArray | None:
    """The sorted distinct values of both samples if they are all integers and at most ``limit``
    of them; None otherwise (cheap: looks at a strided sample first). ``lo`` / ``hi``: the pooled
    range, when the caller knows it."""
    if limit <= 0:
        return None
    for x in (a, b):
        probe = x[:: max(x.size // 4096, 1)]
        if not np.array_equal(probe, np.floor(probe)) or np.unique(probe).size > limit:
            return None
    for x in (a, b):
        if not np.array_equal(x, np.floor(x)):
            return None
    if lo is None or hi is None:
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
    return DISCRETE if distinct_integers(a, b, discrete_max_values) is not None else CONTINUOUS


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
    ref_constant: bool = False  # numbers: one value in every reference row (no scale for a distance)
    #: categorical: the share of a fresh sample of the reference's own distribution expected outside the
    #: reference's categories (Good-Turing: its categories seen once, over its values)
    unseen_expected: float = 0.0
    #: ``P(T >= t)``, the p-value without randomisation (:mod:`raymlops.stats.randomised`): scipy's
    #: ``ks_2samp`` / ``chi2_contingency``'s where those are exact; ``p_value`` where nothing is randomised
    p_value_upper: float = math.nan


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
        freq = np.array(counts.field("counts").to_pylist(), dtype=np.int64)  # (np.asarray would import pandas)
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


def _rows_uniform(ref: Any, cur: Any, kind: str) -> float:
    """The ``U`` of a chi-square test's randomised p-value, from both samples' rows in order: their
    numbers as doubles, or each label's rank among the sorted labels (the same for the same rows
    read as string, large_string or dictionary, from CSV or Parquet)."""
    if kind == DISCRETE:
        return uniform_of(data_digest(np.asarray(ref, dtype=np.float64), np.asarray(cur, dtype=np.float64)))
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        arrays = [a if isinstance(a, (pa.Array, pa.ChunkedArray)) else pa.array(np.asarray(a)) for a in (ref, cur)]
        arrays = [a.cast(a.type.value_type) if pa.types.is_dictionary(a.type) else a for a in arrays]
        # (pa.chunked_array of a list would import pandas, to look for its objects in the list)
        labels = pc.unique(pa.concat_arrays([pc.unique(a.cast(arrays[0].type)) for a in arrays]))
        labels = pc.take(labels, pc.sort_indices(labels))
        codes = [_codes_numpy(pc.index_in(a, value_set=labels, skip_nulls=False)) for a in arrays]
    except (pa.ArrowException, TypeError, ValueError):  # labels of two types: hash each side as it is
        return uniform_of(data_digest(ref, cur))
    return uniform_of(data_digest(*codes))


def _codes_numpy(arr: Any) -> npt.NDArray[np.int32]:
    """Arrow ``index_in`` codes (int32, none null: the labels hold null where the data does) as
    numpy, from the buffers (to_numpy would import pandas, which ``monitor check`` does not)."""
    chunks = [c for c in getattr(arr, "chunks", [arr]) if len(c)]
    parts = [np.frombuffer(c.buffers()[1], dtype=np.int32, count=len(c), offset=c.offset * 4) for c in chunks]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)


def _psi_edges(a: FloatArray, n_bins: int) -> FloatArray:
    """Edges of ``n_bins`` bins of about equal reference mass: the reference's quantiles (of a
    strided sample of at most about 100,000 values on big columns)."""
    step = max(a.size // 50_000, 1)
    return np.asarray(np.unique(np.quantile(a[::step], np.linspace(0, 1, n_bins + 1)[1:-1])), dtype=np.float64)


def _continuous(name: str, r_all: npt.NDArray[Any], c_all: npt.NDArray[Any], a: FloatArray, b: FloatArray,
                n_bins: int, ranges: tuple[float, float, float, float] | None = None, randomise: bool = True
                ) -> tuple[ColumnTest, Callable[[], float] | None]:
    """KS (and W1, PSI, moments) of one numeric column: ``r_all`` / ``c_all`` as given, ``a`` /
    ``b`` their finite values as float64 (``ranges``: their min and max, ``a``'s then ``b``'s, when
    known); and, for large samples, the function that gives the p-value
    (:func:`raymlops.stats.ks.ks_2samp_p_later`; the test's ``p_value`` is NaN until then)."""
    n, m = a.size, b.size
    base = dict(column=name, kind=CONTINUOUS, test="ks", rows=int(c_all.size), reference_rows=int(r_all.size),
                values=m, reference_values=n, missing_rate=1 - m / c_all.size if c_all.size else math.nan,
                ref_missing_rate=1 - n / r_all.size if r_all.size else math.nan, unseen_rate=math.nan, categories=0)
    if n == 0 or m == 0:
        return ColumnTest(statistic=math.nan, p_value=1.0, p_value_upper=1.0, wasserstein=math.nan, js=math.nan,
                          psi=math.nan, out_of_range_rate=math.nan, **base), None  # type: ignore[arg-type]
    edges = _psi_edges(a, n_bins)
    if ranges is None:
        ranges = (float(a.min()), float(a.max()), float(b.min()), float(b.max()))
    r_lo, r_hi = ranges[0], ranges[1]
    # one pass: D, W1, moments, and the counts at or below the PSI edges and around the reference range
    prof = ks_profile(a, b, np.concatenate([edges, [np.nextafter(r_lo, -np.inf), r_hi]]),
                      span=(min(ranges[0], ranges[2]), max(ranges[1], ranges[3])))
    d, p, upper, later = prof.d, math.nan, math.nan, None
    if max(n, m) <= KS_EXACT_MAX_N:  # the exact distribution: ks_2samp itself, or given the ties
        d, p, upper = ks_2samp_randomised(a, b, randomise)
    else:
        later = ks_2samp_p_later(d, n, m)
    k = edges.size
    psi = psi_index(np.diff(np.concatenate([[0], prof.below_a[:k], [n]])),
                     np.diff(np.concatenate([[0], prof.below_b[:k], [m]])))
    outside = int(prof.below_b[k] + (m - prof.below_b[k + 1]))
    ref_std = 0.0 if r_lo == r_hi else prof.std_a  # a constant: no rounding error left in it
    return ColumnTest(statistic=d, p_value=p, wasserstein=prof.w1 / (ref_std if ref_std > 0 else 1.0), js=math.nan,
                      psi=psi, out_of_range_rate=outside / m, mean=prof.mean_b,
                      std=0.0 if ranges[2] == ranges[3] else prof.std_b, ref_constant=r_lo == r_hi,
                      p_value_upper=upper, **base), later  # type: ignore[arg-type]


def _discrete_table(r_all: npt.NDArray[Any], c_all: npt.NDArray[Any], a: FloatArray, b: FloatArray, limit: int,
                    lo: float | None = None, hi: float | None = None
                    ) -> tuple[FloatArray, FloatArray, int, int, float, float, float, float] | None:
    values = distinct_integers(a, b, limit, lo, hi)
    if values is None:
        return None
    r = np.bincount(np.searchsorted(values, a), minlength=values.size).astype(np.float64)
    c = np.bincount(np.searchsorted(values, b), minlength=values.size).astype(np.float64)
    unseen = float(c[r == 0].sum() / c.sum()) if c.sum() else math.nan
    mean, std = mean_std(b)
    return r, c, int(r_all.size - a.size), int(c_all.size - b.size), unseen, mean, std, _discrete_wasserstein(
        values, r, c, mean_std(a)[1])


def _discrete_wasserstein(values: FloatArray, r: FloatArray, c: FloatArray, ref_std: float) -> float:
    """The Wasserstein-1 distance of two samples on the same sorted integer ``values`` (their
    counts ``r`` and ``c``): the area between the two step CDFs, divided by the reference's
    standard deviation as for continuous columns (1 where it is 0). Exact, as
    ``scipy.stats.wasserstein_distance`` of the samples gives it."""
    if not (r.sum() and c.sum()):
        return math.nan
    gap = np.abs(np.cumsum(r)[:-1] / r.sum() - np.cumsum(c)[:-1] / c.sum())
    return float(gap @ np.diff(values)) / (ref_std if ref_std > 0 else 1.0)


def compare(reference: Mapping[str, Any], current: Mapping[str, Any], columns: Sequence[str] | None = None,
            categorical: Sequence[str] = (), discrete_max_values: int = 50, n_bins: int = 10,
            threads: int | None = None, continuous: Sequence[str] = (), randomise: bool = True) -> list[ColumnTest]:
    """Every column of ``columns`` (default: those of ``reference``) compared exactly, in order
    (see the module docstring). ``reference`` / ``current``: name -> 1-D array (numpy, or a
    pyarrow array for categorical columns). ``threads``: the pool size (default: the CPUs).
    ``categorical`` / ``continuous``: columns tested as such whatever their values (times are
    continuous: a week of dates is a few integers, not categories). ``randomise``: randomised exact
    p-values where the statistic's atoms matter (:mod:`raymlops.stats.randomised`), else
    ``P(T >= t)``."""
    names = list(columns) if columns is not None else list(reference)
    forced, smooth = set(categorical), set(continuous)
    workers = max(1, min(threads or os.cpu_count() or 1, len(names)))

    def one(name: str) -> tuple[str, Any]:
        ref, cur = reference[name], current[name]
        numeric = name not in forced and _is_numeric(ref) and _is_numeric(cur)
        if numeric:
            r_all, c_all = np.asarray(ref), np.asarray(cur)
            (a, a_lo, a_hi), (b, b_lo, b_hi) = _finite_range(r_all), _finite_range(c_all)
            table = None if name in smooth else _discrete_table(r_all, c_all, a, b, discrete_max_values,
                                                                min(a_lo, b_lo), max(a_hi, b_hi))
            if table is None:
                return CONTINUOUS, _continuous(name, r_all, c_all, a, b, n_bins, (a_lo, a_hi, b_lo, b_hi), randomise)
            return DISCRETE, table
        r, c, r_miss, c_miss, unseen = _table_categorical(ref, cur)
        return CATEGORICAL, (r, c, r_miss, c_miss, unseen, None, None, math.nan)

    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="raymlops-exact") as pool:
            done = list(pool.map(one, names))
        # the largest columns first would balance better; map keeps the order and is enough here
    else:
        done = [one(n) for n in names]
    # large-sample KS p-values come in now (some were computed in side processes: ks_2samp_p_later)
    done = [(kind, (t[0] if t[1] is None else dataclasses.replace(t[0], p_value=(p := t[1]()), p_value_upper=p))
             if kind == CONTINUOUS else t) for kind, t in done]
    tables = [(i, kind, t) for i, (kind, t) in enumerate(done) if kind != CONTINUOUS]
    out: list[ColumnTest | None] = [t if kind == CONTINUOUS else None for kind, t in done]
    if tables:
        width = max(t[0].size for _, _, t in tables)
        r = np.zeros((len(tables), width))
        c = np.zeros((len(tables), width))
        for j, (_, _, t) in enumerate(tables):
            r[j, : t[0].size], c[j, : t[1].size] = t[0], t[1]
        stat, p, js, psi = compare_rows(r, c)
        upper = p.copy()
        for j in np.flatnonzero(permuted_rows(r, c, KS_EXACT_MAX_N)).tolist() if randomise else []:
            i, kind, _ = tables[j]  # the permutation null; U from the column's rows
            p[j], upper[j] = chi2_permutation(r[j], c[j], float(p[j]), _rows_uniform(
                reference[names[i]], current[names[i]], kind))
        for j, (i, kind, t) in enumerate(tables):
            rv, cv = int(r[j].sum()), int(c[j].sum())
            r_rows, c_rows = rv + t[2], cv + t[3]
            out[i] = ColumnTest(
                column=names[i], kind=kind, test="chi2", statistic=float(stat[j]), p_value=float(p[j]),
                p_value_upper=float(upper[j]),
                wasserstein=t[7], js=float(js[j]), psi=float(psi[j]), rows=c_rows, reference_rows=r_rows,
                values=cv, reference_values=rv, missing_rate=t[3] / c_rows if c_rows else math.nan,
                ref_missing_rate=t[2] / r_rows if r_rows else math.nan,
                out_of_range_rate=math.nan, unseen_rate=t[4], categories=int(((r[j] + c[j]) > 0).sum()),
                mean=t[5], std=t[6], ref_constant=kind == DISCRETE and int(np.count_nonzero(r[j])) == 1,
                unseen_expected=unseen_share(r[j]) if kind == CATEGORICAL else 0.0)
    return [o for o in out if o is not None]
