"""Drift tests, p-value correction and binning in raymlops.stats (pure numpy/scipy, no Ray)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance

import raymlops.stats as rstats
from raymlops.exceptions import ValidationError
from raymlops.stats import (
    bin_counts,
    chi2_test,
    correct,
    jensen_shannon,
    psi,
    quantile_edges,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def _binned(ref: np.ndarray, cur: np.ndarray, n_bins: int = 10) -> tuple[np.ndarray, np.ndarray]:
    edges = quantile_edges(ref, n_bins)
    return bin_counts(ref, edges), bin_counts(cur, edges)


# ---------------------------------------------------------------------------------- PSI


def test_psi_of_identical_counts_is_zero() -> None:
    counts = np.array([10, 20, 30, 40, 0])
    assert psi(counts, counts) == 0.0
    assert psi(counts, counts * 7) == pytest.approx(0.0, abs=1e-12)  # proportions, not counts


def test_psi_matches_hand_computation() -> None:
    ref, cur = np.array([50, 30, 20]), np.array([30, 30, 40])
    p, q = np.array([0.5, 0.3, 0.2]), np.array([0.3, 0.3, 0.4])
    expected = float(np.sum((q - p) * np.log(q / p)))
    assert psi(ref, cur) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.2408, abs=1e-4)


def test_psi_small_for_same_distribution_and_large_for_shift(rng: np.random.Generator) -> None:
    ref = rng.normal(size=20_000)
    same = rng.normal(size=5_000)
    shifted = rng.normal(loc=1.0, size=5_000)
    ref_c, same_c = _binned(ref, same)
    _, shifted_c = _binned(ref, shifted)
    assert psi(ref_c, same_c) < 0.02
    assert psi(ref_c, shifted_c) > 0.2


def test_psi_clips_empty_bins_to_eps() -> None:
    ref, cur = np.array([100, 0]), np.array([50, 50])
    value = psi(ref, cur, eps=1e-4)
    assert np.isfinite(value)
    expected = (0.5 - 1.0) * np.log(0.5 / 1.0) + (0.5 - 1e-4) * np.log(0.5 / 1e-4)
    assert value == pytest.approx(expected, rel=1e-12)
    assert psi(ref, cur, eps=1e-6) > value  # smaller floor, larger penalty


@pytest.mark.parametrize(
    ("ref", "cur", "match"),
    [
        ([1, 2, 3], [1, 2], "same length"),
        ([1, -2, 3], [1, 2, 3], "negative"),
        ([], [], "empty"),
        ([0, 0], [1, 1], "sums to zero"),
        ([1, np.nan], [1, 1], "finite"),
        ([[1, 2]], [[1, 2]], "1-dimensional"),
    ],
)
def test_count_functions_reject_bad_counts(ref: list, cur: list, match: str) -> None:
    for fn in (psi, chi2_test, jensen_shannon):
        with pytest.raises(ValidationError, match=match):
            fn(ref, cur)


def test_psi_rejects_bad_eps() -> None:
    with pytest.raises(ValidationError, match="eps"):
        psi([1, 2], [1, 2], eps=0.0)


# ---------------------------------------------------------------------------------- chi-square


def test_chi2_agrees_with_scipy_contingency(rng: np.random.Generator) -> None:
    ref_c, cur_c = _binned(rng.normal(size=10_000), rng.normal(loc=0.1, size=3_000))
    statistic, p_value = chi2_test(ref_c, cur_c)
    keep = (ref_c > 0) | (cur_c > 0)  # the missing bucket is empty in both
    expected = stats.chi2_contingency(np.vstack([ref_c[keep], cur_c[keep]]), correction=False)
    assert statistic == pytest.approx(expected.statistic, rel=1e-12)
    assert p_value == pytest.approx(expected.pvalue, rel=1e-9)


def test_chi2_hand_worked_2x2() -> None:
    # table [[30, 10], [10, 30]]: expected 20 everywhere, statistic 4 * 10**2 / 20 = 20, dof 1
    statistic, p_value = chi2_test([30, 10, 0], [10, 30, 0])
    assert statistic == pytest.approx(20.0)
    assert p_value == pytest.approx(stats.chi2.sf(20.0, df=1))


def test_chi2_drops_bins_empty_in_both_but_keeps_one_sided_bins() -> None:
    with_empty = chi2_test([10, 0, 20, 30, 0], [12, 0, 18, 25, 0])
    without = chi2_test([10, 20, 30], [12, 18, 25])
    assert with_empty == pytest.approx(without)
    # a bucket only the current data fills (e.g. new missing values) is evidence, not an error
    statistic, p_value = chi2_test([100, 100, 0], [50, 50, 40])
    assert np.isfinite(statistic) and p_value < 1e-6


def test_chi2_identical_proportions_and_single_bin() -> None:
    statistic, p_value = chi2_test([10, 20, 30], [20, 40, 60])
    assert statistic == pytest.approx(0.0, abs=1e-12) and p_value == pytest.approx(1.0)
    assert chi2_test([5, 0], [7, 0]) == (0.0, 1.0)


def test_chi2_detects_shift_not_noise(rng: np.random.Generator) -> None:
    ref = rng.normal(size=20_000)
    ref_c, same_c = _binned(ref, rng.normal(size=2_000))
    _, shift_c = _binned(ref, rng.normal(loc=0.5, size=2_000))
    assert chi2_test(ref_c, same_c)[1] > 0.01
    assert chi2_test(ref_c, shift_c)[1] < 1e-10


# ---------------------------------------------------------------------------------- distances


def test_jensen_shannon_agrees_with_scipy_base2() -> None:
    ref, cur = np.array([10, 20, 30, 40]), np.array([40, 30, 20, 10])
    expected = distance.jensenshannon(ref / ref.sum(), cur / cur.sum(), base=2)
    assert jensen_shannon(ref, cur) == pytest.approx(expected)
    assert jensen_shannon(ref, ref * 3) == pytest.approx(0.0, abs=1e-7)
    assert jensen_shannon([1, 0], [0, 1]) == pytest.approx(1.0)  # disjoint support: the maximum


# ---------------------------------------------------------------------------------- correction


def test_bonferroni_multiplies_and_clips() -> None:
    adjusted = correct([0.01, 0.04, 0.3], "bonferroni")
    np.testing.assert_allclose(adjusted, [0.03, 0.12, 0.9])
    np.testing.assert_allclose(correct([0.2, 0.5]), [0.4, 1.0])  # default is bonferroni


def test_bh_hand_worked_example() -> None:
    # sorted p: 0.005, 0.01, 0.03, 0.04 -> m*p/rank = 0.02, 0.02, 0.04, 0.04 (already monotone)
    adjusted = correct([0.01, 0.04, 0.03, 0.005], "bh")
    np.testing.assert_allclose(adjusted, [0.02, 0.04, 0.04, 0.02])


def test_bh_enforces_monotonicity() -> None:
    # sorted p: 0.01, 0.02, 0.021, 0.5 -> m*p/rank = 0.04, 0.04, 0.028, 0.5; the running minimum
    # from the largest rank down lowers the first two to 0.028, so the order of p is preserved
    adjusted = correct([0.5, 0.021, 0.01, 0.02], "bh")
    np.testing.assert_allclose(adjusted, [0.5, 0.028, 0.028, 0.028])


def test_bh_agrees_with_scipy(rng: np.random.Generator) -> None:
    p = np.concatenate([rng.uniform(size=40), rng.uniform(high=1e-3, size=10)])
    np.testing.assert_allclose(correct(p, "bh"), stats.false_discovery_control(p, method="bh"))
    assert np.all(correct(p, "bh") >= p)
    assert np.all(correct(p, "bh") <= correct(p, "bonferroni"))


@pytest.mark.parametrize(
    ("p", "method", "match"),
    [
        ([0.1, 0.2], "sidak", "method must be one of"),
        ([0.1, 1.2], "bh", r"\[0, 1\]"),
        ([0.1, np.nan], "bonferroni", "NaN"),
        ([], "bh", "empty"),
    ],
)
def test_correct_rejects_bad_input(p: list, method: str, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        correct(p, method)


# ---------------------------------------------------------------------------------- bins


def test_quantile_edges_are_interior_quantiles() -> None:
    edges = quantile_edges(np.arange(100.0), n_bins=4)
    np.testing.assert_allclose(edges, [24.75, 49.5, 74.25])


def test_quantile_edges_ignore_missing_and_dedupe() -> None:
    values = np.array([np.nan, 1.0, np.inf, 2.0, 3.0, None, 4.0], dtype=object)
    np.testing.assert_allclose(quantile_edges(values, 2), [2.5])
    # heavy ties: most quantiles coincide and the one at the minimum is dropped
    skewed = np.array([0.0] * 90 + list(range(1, 11)), dtype=float)
    edges = quantile_edges(skewed, 10)
    assert edges.size == 1 and edges[0] > 0.0
    assert np.all(np.diff(quantile_edges(np.random.default_rng(0).normal(size=1000), 20)) > 0)


def test_quantile_edges_constant_or_empty_give_no_edges() -> None:
    assert quantile_edges(np.full(50, 3.0)).size == 0
    assert quantile_edges([np.nan, np.nan]).size == 0
    assert quantile_edges([1.0, 2.0, 3.0], n_bins=1).size == 0


@pytest.mark.parametrize("n_bins", [0, -3, 2.5, True])
def test_quantile_edges_rejects_bad_n_bins(n_bins: object) -> None:
    with pytest.raises(ValidationError, match="n_bins"):
        quantile_edges([1.0, 2.0], n_bins=n_bins)  # type: ignore[arg-type]


def test_bin_counts_intervals_then_missing() -> None:
    values = np.array([0.0, 1.0, 1.5, 2.0, 3.0, -np.inf, np.inf, np.nan, None], dtype=object)
    counts = bin_counts(values, [1.0, 2.0])
    # (-inf, 1): 0, -inf | [1, 2): 1, 1.5 | [2, inf): 2, 3, inf | missing: nan, None
    np.testing.assert_array_equal(counts, [2, 2, 3, 2])
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(bin_counts([1.0, np.nan, 5.0], []), [2, 1])


def test_bin_counts_rejects_bad_edges_and_values() -> None:
    with pytest.raises(ValidationError, match="strictly increasing"):
        bin_counts([1.0], [2.0, 1.0])
    with pytest.raises(ValidationError, match="finite"):
        bin_counts([1.0], [np.nan])
    with pytest.raises(ValidationError, match="numeric"):
        bin_counts(np.array(["a", "b"]), [1.0])
    with pytest.raises(ValidationError, match="str"):
        bin_counts(np.array([1.0, "x"], dtype=object), [1.0])


# ---------------------------------------------------------------------------------- package


def test_public_api_is_explicit() -> None:
    assert sorted(rstats.__all__) == sorted(
        [
            "CORRECTIONS",
            "as_float_array",
            "bin_counts",
            "chi2_test",
            "correct",
            "jensen_shannon",
            "psi",
            "quantile_edges",
        ]
    )
    assert all(hasattr(rstats, name) for name in rstats.__all__)


def test_stats_and_monitor_core_do_not_import_ray() -> None:
    code = "import sys, raymlops.stats, raymlops.monitor.monitor; print('ray' in sys.modules)"
    root = Path(__file__).resolve().parents[2]  # `python -c` puts the working directory first
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "False"
