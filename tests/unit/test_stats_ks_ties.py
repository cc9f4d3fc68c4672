"""The exact KS p-value given the ties (raymlops.stats.ks_ties): equal to the permutation
distribution enumerated by brute force, to scipy's exact p-value without ties, monotone, in [0, 1],
calibrated on simulated tied data, and what the offline check reports for tied columns."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from raymlops.stats import ks_ties
from raymlops.stats.exact import compare
from raymlops.stats.ks_ties import has_ties, ks_2samp_exact, ks_2samp_ties, ks_2samp_ties_above


def _brute(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """D at the distinct values, and the share of all C(n+m, n) splits of the pooled values whose
    D is at least the observed one (every split enumerated)."""
    z = np.concatenate([a, b])
    n, m, total = a.size, b.size, a.size + b.size
    values = np.unique(z)

    def stat(x: np.ndarray, y: np.ndarray) -> float:
        fx = np.searchsorted(np.sort(x), values, side="right") / x.size
        fy = np.searchsorted(np.sort(y), values, side="right") / y.size
        return float(np.max(np.abs(fx - fy)))

    d = stat(a, b)
    masks = np.zeros((math.comb(total, n), total), dtype=bool)
    for row, chosen in enumerate(itertools.combinations(range(total), n)):
        masks[row, list(chosen)] = True
    order = np.argsort(z, kind="stable")
    zs = z[order]
    ends = np.append(np.flatnonzero(zs[1:] != zs[:-1]) + 1, total)
    i = np.cumsum(masks[:, order], axis=1)[:, ends - 1]
    ds = np.max(np.abs(i * m - (ends - i) * n), axis=1) / (n * m)
    return d, float(np.mean(ds >= d - 1e-12))


@pytest.mark.parametrize("seed", range(12))
def test_equals_the_enumerated_permutation_distribution_on_tied_samples(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(4):
        n = int(rng.integers(1, 8))
        m = int(rng.integers(1, 15 - n))
        levels = int(rng.integers(1, 6))
        a = rng.integers(0, levels, n).astype(np.float64)
        b = (rng.integers(0, levels, m) + (seed % 3 == 0)).astype(np.float64)
        d, p = ks_2samp_ties(a, b)  # tie blocks crossed in one convolution each
        d0, p0 = _brute(a, b)
        assert d == pytest.approx(d0, abs=1e-12)
        assert p == pytest.approx(p0, abs=1e-12)
        if d > 0:  # one value at a time
            z = np.sort(np.concatenate([a, b]))
            ends = np.append(np.flatnonzero(z[1:] != z[:-1]) + 1, n + m).astype(np.int64)
            assert ks_ties._upper_tail(n, m, round(d * n * m), ends, max_jump=1) == pytest.approx(p0, abs=1e-12)


@pytest.mark.parametrize(("decimals", "n", "m"),
                         [(0, 1_500, 1_000), (1, 1_200, 1_300), (2, 1_800, 900), (3, 700, 1_200)])
def test_jumps_across_tie_blocks_equal_single_steps(decimals: int, n: int, m: int) -> None:
    rng = np.random.default_rng(decimals)
    for shift in (0.0, 0.1, 0.6):
        a, b = np.round(rng.normal(size=n), decimals), np.round(rng.normal(shift, 1.0, m), decimals)
        z = np.sort(np.concatenate([a, b]))
        ends = np.append(np.flatnonzero(z[1:] != z[:-1]) + 1, n + m).astype(np.int64)
        d, p = ks_2samp_ties(a, b)
        stepped = ks_ties._upper_tail(n, m, round(d * n * m), ends, max_jump=1)
        assert p == pytest.approx(stepped, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize(("n", "m"), [(1, 1), (1, 7), (5, 5), (13, 8), (40, 40), (97, 60), (300, 451), (2_000, 1_999),
                                    (3, 4_000), (2_500, 7), (1, 9_000)])
def test_equals_scipys_exact_p_value_without_ties(n: int, m: int) -> None:
    rng = np.random.default_rng(n * 1_000 + m)
    for shift in (0.0, 0.3, 1.5):
        a, b = rng.normal(size=n), rng.normal(shift, 1.0, m)
        d, p = ks_2samp_ties(a, b)
        ref = stats.ks_2samp(a, b, method="exact")
        assert d == pytest.approx(ref.statistic, abs=1e-12)
        assert p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)


def test_p_value_is_monotone_in_the_statistic_in_bounds_and_below_scipys_on_ties() -> None:
    rng = np.random.default_rng(5)
    a, b = np.round(rng.normal(size=70), 1), np.round(rng.normal(size=45), 1)
    n, m = a.size, b.size
    z = np.sort(np.concatenate([a, b]))
    ends = np.append(np.flatnonzero(z[1:] != z[:-1]) + 1, n + m).astype(np.int64)
    ps = [ks_ties._upper_tail(n, m, t, ends) for t in range(1, n * m + 1, 37)]
    assert all(0.0 <= p <= 1.0 for p in ps)
    assert all(x >= y for x, y in itertools.pairwise(ps))
    assert ps[-1] < 1e-30  # far out: small, not rounded to zero by 1 - P(inside)
    for shift in (0.0, 0.2, 0.5, 1.0):
        x, y = np.round(rng.normal(size=120), 1), np.round(rng.normal(shift, 1.0, 90), 1)
        d, p = ks_2samp_ties(x, y)
        ref = stats.ks_2samp(x, y, method="exact")  # computed as if there were no ties: conservative
        assert d == pytest.approx(ref.statistic, abs=1e-12)
        assert 0.0 < p <= ref.pvalue * (1 + 1e-9)


def test_degenerate_samples() -> None:
    same = np.array([1.0, 2.0, 2.0, 3.0])
    assert ks_2samp_ties(same, same[::-1].copy()) == (0.0, 1.0)
    assert ks_2samp_ties(np.full(5, 2.0), np.full(3, 2.0)) == (0.0, 1.0)
    d, p = ks_2samp_ties(np.zeros(4), np.ones(4))  # disjoint: 2 of the C(8, 4) splits reach D = 1
    assert d == 1.0 and p == pytest.approx(2 / math.comb(8, 4), rel=1e-12)
    with pytest.raises(ValueError):
        ks_2samp_ties(np.empty(0), np.ones(3))


def test_calibrated_on_simulated_tied_data() -> None:
    """No drift, rounded values (ties everywhere): P(p <= alpha) <= alpha, and the p-value randomised
    within its atom (P(D >= d) - U * P(D = d)) is uniform: the null distribution is the exact one."""
    rng = np.random.default_rng(11)
    ps, pit = [], []
    for _ in range(400):
        a, b = np.round(rng.normal(size=60), 1), np.round(rng.normal(size=45), 1)
        _, p = ks_2samp_ties(a, b)
        above = ks_2samp_ties_above(a, b)  # P(D' > D)
        assert 0.0 <= above < p
        ps.append(p)
        pit.append(p - rng.random() * (p - above))
    arr = np.asarray(ps)
    for alpha in (0.01, 0.05, 0.1):
        assert np.mean(arr <= alpha) <= alpha + 2.5 * math.sqrt(alpha * (1 - alpha) / arr.size)
    assert stats.kstest(pit, "uniform").pvalue > 0.01
    assert abs(float(arr.mean()) - 0.5) < 0.06  # scipy's no-ties p-values average about 0.6 here


def test_the_offline_check_uses_it_for_tied_columns_only() -> None:
    rng = np.random.default_rng(3)
    a, b = np.round(rng.normal(size=900), 1), np.round(rng.normal(0.1, 1.0, 700), 1)
    assert has_ties(a, b)
    (t,) = compare({"x": a}, {"x": b})
    d, p = ks_2samp_ties(a, b)
    assert t.test == "ks" and t.statistic == pytest.approx(d, abs=1e-12) and t.p_value_upper == p
    assert ks_2samp_ties_above(a, b) <= t.p_value <= p  # randomised within the atom of d
    assert ks_2samp_exact(a, b) == (d, p)
    x, y = rng.normal(size=900), rng.normal(size=700)  # no ties: scipy's ks_2samp itself
    assert not has_ties(x, y)
    (t,) = compare({"x": x}, {"x": y}, randomise=False)
    assert t.p_value == t.p_value_upper == pytest.approx(stats.ks_2samp(x, y).pvalue, rel=1e-12)
