"""The linear-pass exact KS (raymlops.stats.ks) against scipy on adversarial data, its p-values
against ks_2samp / kstwo, and the counts and moments it gives on the way."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from raymlops.stats import kolmogorov, ks, sidecar
from raymlops.stats.exact import KS_EXACT_MAX_N, compare
from raymlops.stats.ks_ties import has_ties, ks_2samp_ties


def _adversarial(kind: str, n: int, m: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if kind == "ties":  # a few hundred distinct values, heavily repeated on both sides
        return np.round(rng.normal(size=n), 2), np.round(rng.normal(0.05, 1.0, m), 2)
    if kind == "integer_floats":  # integer-valued floats with too many values for the chi-square route
        return rng.integers(0, 5_000, n).astype(np.float64), rng.integers(0, 5_100, m).astype(np.float64)
    if kind == "cauchy":  # heavy tails: nearly every value in one first-level bin, refined again
        return rng.standard_cauchy(n), rng.standard_cauchy(m) * 1.1
    if kind == "pareto":
        return rng.pareto(0.7, n), rng.pareto(0.75, m)
    if kind == "atoms":  # point masses shared by both samples, plus a continuous part
        a = np.where(rng.random(n) < 0.4, rng.choice([-1.0, 0.0, 2.5], n), rng.normal(size=n))
        b = np.where(rng.random(m) < 0.5, rng.choice([-1.0, 0.0, 2.5], m), rng.normal(size=m))
        return a, b
    if kind == "disjoint":  # every reference value below every current one: D = 1
        return rng.normal(size=n), rng.normal(size=m) + 100.0
    if kind == "tiny_spread":  # values a few ulps apart around a large offset
        return 1e9 + rng.integers(0, 4, n) * 2**-20, 1e9 + rng.integers(0, 5, m) * 2**-20
    raise AssertionError(kind)


KINDS = ["ties", "integer_floats", "cauchy", "pareto", "atoms", "disjoint", "tiny_spread"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("n", "m"), [(120_000, 45_000), (2_000, 9_000), (3, 1), (1, 1)])
def test_statistic_and_wasserstein_equal_scipy_on_adversarial_data(kind: str, n: int, m: int) -> None:
    rng = np.random.default_rng(n * 7 + m + len(kind))
    a, b = _adversarial(kind, n, m, rng)
    d, w = ks.ks_wasserstein(a, b)
    assert d == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
    assert w == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_compare_gives_ks_2samp_statistic_and_p_value(kind: str) -> None:
    rng = np.random.default_rng(len(kind))
    for n, m in ((60_000, 25_000), (800, 300), (5, 9)):
        a, b = _adversarial(kind, n, m, rng)
        (t,) = compare({"x": a}, {"x": b}, discrete_max_values=0)  # KS on every column, integers too
        ref = stats.ks_2samp(a, b)
        assert t.test == "ks"
        assert t.statistic == pytest.approx(ref.statistic, abs=1e-12)
        if max(n, m) <= KS_EXACT_MAX_N and has_ties(a, b):  # the exact distribution given the ties
            assert t.p_value_upper == pytest.approx(ks_2samp_ties(a, b)[1], rel=1e-12, abs=1e-300)
            assert t.p_value_upper <= ref.pvalue * (1 + 1e-9)  # scipy's (no ties assumed) is conservative there
        elif ref.pvalue >= 10 * ks.KS_TAIL_P:
            assert t.p_value_upper == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)
        else:  # far in the tail: the limiting distribution (documented), still far below any alpha
            assert t.p_value < 1e-8
        assert t.p_value <= t.p_value_upper  # randomised within the atom of d where exact


def test_identical_samples_and_constant_columns() -> None:
    x = np.random.default_rng(1).normal(size=50_000)
    assert ks.ks_wasserstein(x, x) == (0.0, 0.0)
    assert ks.ks_wasserstein(x, x[::-1].copy()) == (0.0, 0.0)  # same values, other order
    (t,) = compare({"x": x}, {"x": x.copy()})
    assert t.statistic == 0.0 and t.p_value == 1.0 and t.wasserstein == 0.0
    const = np.full(30_000, 2.5)
    (t,) = compare({"x": const}, {"x": np.full(20_000, 2.5)}, discrete_max_values=0)
    assert t.statistic == 0.0 and t.p_value == 1.0 and t.std == 0.0
    (t,) = compare({"x": const}, {"x": x}, discrete_max_values=0)  # constant reference vs a spread
    ref = stats.ks_2samp(const, x)
    assert t.statistic == pytest.approx(ref.statistic, abs=1e-12)
    assert t.p_value == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)


def test_missing_values_are_left_out_as_before() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=40_000), rng.normal(0.02, 1.0, 30_000)
    a_nan = np.where(rng.random(a.size) < 0.1, np.nan, a)
    b_inf = np.where(rng.random(b.size) < 0.05, np.inf, b)
    b_inf[:10] = -np.inf
    (t,) = compare({"x": a_nan}, {"x": b_inf})
    fa, fb = a_nan[np.isfinite(a_nan)], b_inf[np.isfinite(b_inf)]
    ref = stats.ks_2samp(fa, fb)
    assert t.statistic == pytest.approx(ref.statistic, abs=1e-12)
    assert t.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert t.ref_missing_rate == pytest.approx(np.mean(~np.isfinite(a_nan)))
    assert t.missing_rate == pytest.approx(np.mean(~np.isfinite(b_inf)))
    assert t.mean == pytest.approx(fb.mean(), rel=1e-12) and t.std == pytest.approx(fb.std(), rel=1e-9)


@pytest.mark.parametrize("kind", ["ties", "cauchy", "atoms", "tiny_spread"])
def test_counts_at_points_and_moments_are_exact(kind: str) -> None:
    rng = np.random.default_rng(3)
    a, b = _adversarial(kind, 90_000, 40_000, rng)
    points = np.concatenate([np.quantile(a, [0.0, 0.1, 0.5, 0.9, 1.0]), [np.nextafter(a.min(), -np.inf)],
                             [b.min() - 1.0, b.max() + 1.0], rng.choice(b, 5)])
    prof = ks.ks_profile(a, b, points)
    np.testing.assert_array_equal(prof.below_a, [np.count_nonzero(a <= p) for p in points])
    np.testing.assert_array_equal(prof.below_b, [np.count_nonzero(b <= p) for p in points])
    scale = max(abs(a).max(), 1.0)
    assert prof.mean_a == pytest.approx(a.mean(), rel=1e-12, abs=1e-12 * scale)
    assert prof.std_a**2 == pytest.approx(a.var(), rel=1e-8, abs=1e-12 * scale**2)
    assert prof.std_b**2 == pytest.approx(b.var(), rel=1e-8, abs=1e-12 * scale**2)


def test_psi_and_out_of_range_equal_the_direct_counts() -> None:
    from raymlops.stats.drift import psi

    rng = np.random.default_rng(4)
    a, b = rng.normal(size=80_000), rng.normal(0.3, 1.2, 50_000)
    (t,) = compare({"x": a}, {"x": b}, n_bins=10)
    edges = np.unique(np.quantile(a[:: max(a.size // 50_000, 1)], np.linspace(0, 1, 11)[1:-1]))
    below_a = np.array([0, *(np.count_nonzero(a <= e) for e in edges), a.size])
    below_b = np.array([0, *(np.count_nonzero(b <= e) for e in edges), b.size])
    assert t.psi == pytest.approx(psi(np.diff(below_a), np.diff(below_b)), rel=1e-12)
    assert t.out_of_range_rate == pytest.approx(np.mean((b < a.min()) | (b > a.max())))


def test_p_values_by_smirnov_directly_equal_kstwo() -> None:
    """Where kstwo.sf is 2 * smirnov, the direct call gives the same number, bit for bit."""
    n_m = [(600, 400), (5_000, 4_000), (30_000, 20_000), (400_000, 300_000)]
    for n, m in n_m:
        en = round(n * m / (n + m))
        d = np.sqrt(np.array([2.3, 4.0, 9.0, 15.0, 20.0]) / en)  # en * d**2 in [2.2, 370): the smirnov regime
        assert ks._smirnov_regime(d, np.full(d.size, float(en))).all()
        ours = ks.ks_2samp_p(d, n, m)
        theirs = stats.kstwo.sf(d, en)
        above = theirs >= ks.KS_TAIL_P * 10
        np.testing.assert_array_equal(ours[above], theirs[above])
        # and outside it (Pelz-Good, the exact small-sample routines) kstwo itself is used
        d_low = np.sqrt(np.array([0.2, 0.8, 1.5, 2.1]) / en)
        np.testing.assert_array_equal(ks.ks_2samp_p(d_low, n, m), stats.kstwo.sf(d_low, en))


def test_a_slow_p_value_computed_in_a_side_process_is_the_same_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ks, "SIDE_PROCESS_MIN_N", 1_000)
    n, m = 6_000, 4_000
    en = round(n * m / (n + m))
    d = math.sqrt(5.0 / en)
    later = ks.ks_2samp_p_later(d, n, m)
    assert later() == float(stats.kstwo.sf(d, en))
    # a statistic outside that regime is computed in the process, to the same number as well
    assert ks.ks_2samp_p_later(math.sqrt(0.5 / en), n, m)() == float(stats.kstwo.sf(math.sqrt(0.5 / en), en))


def test_a_failed_child_falls_back_to_computing_here() -> None:
    def boom() -> float:
        raise RuntimeError("child fails")

    assert sidecar.forked(boom, lambda: 0.25)() == 0.25


def test_the_series_p_values_are_kstwo_bit_for_bit() -> None:
    """Where raymlops.stats.kolmogorov carries scipy's branch (closed forms, Pelz-Good) its value is
    kstwo.sf's, bit for bit; elsewhere it answers None (and the caller asks scipy)."""
    rng = np.random.default_rng(11)
    carried = declined = 0
    # (scipy's own routines for the declined cases cost up to a second each at millions of rows: the
    # grid keeps to the series' regime there, and probes the others at smaller sizes)
    for en in [141, 5_000, 99_999, 100_000, 100_001, 500_000, 2_000_000, *rng.integers(141, 3_000_000, 25).tolist()]:
        d = np.concatenate([np.sqrt(rng.uniform(0, 2.15, 20) / en), rng.uniform(0.05, 1, 3),
                            [0.0, 1.0, 0.4 / en, 0.9 / en, 1 - 0.5 / en]])
        if en <= 100_001:
            d = np.concatenate([d, np.sqrt(rng.uniform(2.2, 4, 3) / en), [1.5 / en, (1.4 / en) ** (2 / 3)]])
        theirs = stats.kstwo.sf(d, en)
        for x, want in zip(d.tolist(), theirs.tolist(), strict=True):
            got = kolmogorov.kstwo_sf(en, x)
            if got is None:
                declined += 1
                continue
            carried += 1
            assert got == want, (en, x)
    # an undrifted large column (en * d**2 < 2.2) is carried; mild shifts and smaller samples are not
    assert kolmogorov.kstwo_sf(500_000, math.sqrt(1.0 / 500_000)) is not None
    assert kolmogorov.kstwo_sf(500_000, math.sqrt(5.0 / 500_000)) is None  # 2 * smirnov
    assert kolmogorov.kstwo_sf(50_000, 2e-4) is None  # the Durbin matrix
    assert kolmogorov.kstwo_sf(100, 0.1) is None  # n <= 140
    assert carried > 800 and declined > 40


def test_the_limiting_tail_is_scipy_special_kolmogorov() -> None:
    from scipy import special

    z = np.linspace(kolmogorov.SERIES_MIN_Z, 30.0, 20_001)
    np.testing.assert_allclose(kolmogorov.kolmogorov_sf(z), special.kolmogorov(z), rtol=1e-14, atol=0)
    assert (kolmogorov.kolmogorov_sf([0.0, 0.5, 0.99]) == 1.0).all()  # below the series: "not tiny"


def test_a_p_value_that_needs_scipy_stats_starts_importing_it_at_once() -> None:
    """kstwo.sf's recursions (here the Durbin matrix, en = 50,000) are scipy.stats': the import starts
    on a thread when the statistic is known, beside the other columns' passes, and the value is kstwo's."""
    code = (
        "import sys, threading\n"
        "from raymlops.stats import ks\n"
        "assert 'scipy.stats' not in sys.modules\n"
        "later = ks.ks_2samp_p_later(2e-4, 100_000, 100_000)\n"
        "started = any(t.name == 'raymlops-preload' for t in threading.enumerate()) or 'scipy.stats' in sys.modules\n"
        "print(started, repr(later()))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    started, value = proc.stdout.split()
    assert started == "True"
    assert float(value) == float(stats.kstwo.sf(2e-4, 50_000))


@pytest.mark.parametrize("n", [1_500, 30_000])  # the sorted leaf, and the binned passes
@pytest.mark.parametrize("scale", [1e160, 1e300])
def test_values_near_the_largest_double_give_the_same_statistics_scaled(n: int, scale: float) -> None:
    """Squares of values past 1e154 overflow: the Wasserstein distance divided by an infinite
    standard deviation read 0 ('no drift' where the unscaled data drifted), and past 4,096 values the
    variance, divided by a squared bin scale that underflowed, raised ZeroDivisionError."""
    rng = np.random.default_rng(n)
    a, b = rng.normal(size=n), rng.normal(0.3, 1.0, n // 2)
    (plain,) = compare({"x": a}, {"x": b})
    with np.errstate(over="raise", divide="raise", invalid="raise"):  # no overflow on the way either
        (big,) = compare({"x": a * scale}, {"x": b * scale})
    assert big.statistic == plain.statistic and big.p_value_upper == plain.p_value_upper and big.test == plain.test
    assert big.wasserstein == pytest.approx(plain.wasserstein, rel=1e-9)
    assert big.mean == pytest.approx(plain.mean * scale, rel=1e-9)
    assert big.std == pytest.approx(plain.std * scale, rel=1e-9)


def test_the_helper_process_answers_each_request_in_order_and_a_dead_one_leaves_them_here() -> None:
    """The helper a large check forks at its start: requests from several threads at once each get
    their own answer (kstwo's, bit for bit); once it is gone, every answer is None (computed here)."""
    from concurrent.futures import ThreadPoolExecutor

    helper = sidecar.Helper(lambda d, n, m: float(ks.ks_2samp_p(d, n, m)), warm=("scipy.special",))
    try:
        sizes = [(40_000.0 + 1_000 * i, 30_000.0) for i in range(8)]
        ds = [math.sqrt((2.5 + i) * (n + m) / (n * m)) for i, (n, m) in enumerate(sizes)]  # the smirnov regime
        with ThreadPoolExecutor(4) as pool:
            answers = [pool.submit(helper.submit, d, n, m) for d, (n, m) in zip(ds, sizes, strict=True)]
            waits = [a.result() for a in answers]
        got = [wait() for wait in reversed(waits)][::-1]  # the last asked is read first
        want = [float(stats.kstwo.sf(d, round(n * m / (n + m)))) for d, (n, m) in zip(ds, sizes, strict=True)]
        assert got == want
    finally:
        os.kill(helper.pid, signal.SIGKILL)
        os.waitpid(helper.pid, 0)
    assert helper.submit(ds[0], *sizes[0])() is None
    helper.close()
