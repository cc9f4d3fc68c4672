"""Exact two-sample tests (raymlops.stats.exact) against scipy, and the choice of test per column."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from raymlops.stats import ks
from raymlops.stats.exact import CATEGORICAL, CONTINUOUS, DISCRETE, column_kind, compare, ks_wasserstein


def _pair(kind: str, n: int, m: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if kind == "normal":
        return rng.normal(size=n), rng.normal(0.01, 1.0, m)
    if kind == "lognormal":  # heavy tail: most values in the first equal-width bin, refined again
        return rng.lognormal(0, 3, n), rng.lognormal(0.02, 3, m)
    if kind == "ties":  # many repeated values
        return np.round(rng.normal(size=n), 2), np.round(rng.normal(size=m), 2)
    if kind == "atom":  # half of the mass on one value
        return (np.concatenate([rng.normal(size=n // 2), np.full(n - n // 2, 1.5)]),
                np.concatenate([rng.normal(size=m // 2), np.full(m - m // 2, 1.5)]))
    if kind == "shifted":
        return rng.normal(size=n), rng.normal(2.0, 1.0, m)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["normal", "lognormal", "ties", "atom", "shifted"])
@pytest.mark.parametrize(("n", "m"), [(150_000, 90_000), (3_000, 700), (7, 5)])
def test_ks_and_wasserstein_equal_scipys_on_the_raw_values(kind: str, n: int, m: int) -> None:
    rng = np.random.default_rng(n + m + len(kind))
    a, b = _pair(kind, n, m, rng)
    d, w = ks_wasserstein(a, b)
    assert d == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
    assert w == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-9, abs=1e-12)


def test_the_refinement_recurses_and_stays_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ks, "_LEAF", 64)  # every refined bin above 64 values is split again
    monkeypatch.setattr(ks, "_BINS", 32)
    rng = np.random.default_rng(9)
    for kind in ("normal", "lognormal", "ties", "atom"):
        a, b = _pair(kind, 20_000, 15_000, rng)
        d, w = ks_wasserstein(a, b)
        assert d == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-12)
        assert w == pytest.approx(stats.wasserstein_distance(a, b), rel=1e-9)


@pytest.mark.parametrize(("n", "m", "shift"), [(400, 300, 0.2), (9_000, 10_000, 0.03), (60_000, 25_000, 0.0),
                                               (60_000, 25_000, 0.02), (200_000, 200_000, 0.5)])
def test_ks_p_values_match_ks_2samp(n: int, m: int, shift: float) -> None:
    rng = np.random.default_rng(n + m)
    a, b = rng.normal(size=n), rng.normal(shift, 1.0, m)
    (t,) = compare({"x": a}, {"x": b})
    ref = stats.ks_2samp(a, b)  # method="auto": exact up to 10,000 values per sample, else Smirnov's
    assert t.kind == CONTINUOUS and t.test == "ks"
    assert t.statistic == pytest.approx(ref.statistic, abs=1e-12)
    assert t.p_value_upper == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-300)  # P(D >= d); p_value: randomised
    assert t.p_value <= t.p_value_upper


def test_integer_columns_with_few_values_get_chi_square_on_their_support() -> None:
    rng = np.random.default_rng(4)
    a = rng.integers(0, 17, 900).astype(np.float64)  # pixel-like: 17 values
    b = np.clip(rng.integers(0, 17, 800) + rng.integers(0, 2, 800), 0, 17).astype(np.float64)  # one value new
    assert column_kind(a, b) == DISCRETE
    (t,) = compare({"x": a}, {"x": b}, randomise=False)
    values = np.union1d(a, b)
    table = np.array([[np.sum(a == v) for v in values], [np.sum(b == v) for v in values]])
    ref = stats.chi2_contingency(table, correction=False)
    assert t.test == "chi2" and t.kind == DISCRETE and t.categories == values.size
    assert t.statistic == pytest.approx(ref.statistic, rel=1e-9)
    assert t.p_value == pytest.approx(ref.pvalue, rel=1e-9)  # asymptotic
    (perm,) = compare({"x": a}, {"x": b})  # the permutation law's (both samples under 10,000 values)
    assert perm.statistic == t.statistic and perm.p_value <= perm.p_value_upper
    assert perm.p_value_upper == pytest.approx(ref.pvalue, abs=4 * math.sqrt(ref.pvalue / 20_000) + 1e-4)
    assert t.unseen_rate == pytest.approx(np.mean(b == 17))
    # integers as an int dtype, and with missing values (left out, their share reported)
    with_nan = np.where(rng.random(800) < 0.1, np.nan, b)
    (t2,) = compare({"x": a.astype(np.int64)}, {"x": with_nan})
    assert t2.kind == DISCRETE and t2.missing_rate == pytest.approx(np.mean(np.isnan(with_nan)))


def test_the_documented_rule_for_discrete_columns() -> None:
    rng = np.random.default_rng(5)
    many = rng.integers(0, 51, 5_000).astype(np.float64)  # 51 distinct values: over the limit of 50
    assert column_kind(many[:50], many) == CONTINUOUS
    assert column_kind(many % 50, many % 50) == DISCRETE
    assert column_kind(many, many, discrete_max_values=60) == DISCRETE
    assert column_kind(many % 5, many % 5, discrete_max_values=0) == CONTINUOUS  # 0: never
    assert column_kind(many + 0.5, many) == CONTINUOUS  # not integers
    assert column_kind(np.array(["a", "b"]), np.array(["b"])) == CATEGORICAL
    assert column_kind(np.array([True, False]), np.array([True])) == CATEGORICAL
    assert column_kind(many % 3, many % 3, categorical=True) == CATEGORICAL


def test_categorical_columns_count_the_union_of_labels() -> None:
    ref = pa.chunked_array([pa.array(["red", "blue", None, "red"] * 50)])
    cur = np.array(["red", "green", "blue", None] * 40, dtype=object)
    (t,) = compare({"c": ref}, {"c": cur})
    table = np.array([[100, 50, 0], [40, 40, 40]])  # red, blue, green
    assert t.kind == CATEGORICAL and t.categories == 3
    assert t.p_value == pytest.approx(stats.chi2_contingency(table, correction=False).pvalue, rel=1e-9)
    assert t.missing_rate == pytest.approx(0.25) and t.ref_missing_rate == pytest.approx(0.25)
    assert t.unseen_rate == pytest.approx(40 / 120)


def test_threads_do_not_change_the_results() -> None:
    rng = np.random.default_rng(6)
    ref = {f"x{i}": rng.normal(size=20_000) for i in range(6)} | {"k": rng.integers(0, 4, 20_000)}
    cur = {f"x{i}": rng.normal(0.02 * i, 1.0, 15_000) for i in range(6)} | {"k": rng.integers(0, 5, 15_000)}
    assert compare(ref, cur, threads=1) == compare(ref, cur, threads=4)


def test_empty_and_constant_columns() -> None:
    (t,) = compare({"x": np.full(100, np.nan)}, {"x": np.arange(10.0)})
    assert t.p_value == 1.0 and np.isnan(t.statistic) and t.ref_missing_rate == 1.0
    (t,) = compare({"x": np.full(1000, 3.5)}, {"x": np.full(20, 3.5)})
    assert t.statistic == 0.0 and t.p_value == 1.0


@pytest.mark.parametrize("n", [300_000, 3_000])
def test_a_constant_or_nearly_constant_reference_scales_the_distance_by_its_true_spread(n: int) -> None:
    """The reference's standard deviation divides W1. A constant reference has none (W1 is divided by
    1); a nearly constant one keeps its own. Found: at 300,000 rows a constant 3.0 reference read as a
    standard deviation of 1e-5 (mean of squares minus squared mean, in bins), and W1 0.80 as 73,089."""
    rng = np.random.default_rng(11)
    cur = rng.normal(0.1, 1.0, n)
    for ref in (np.full(n, 0.1), np.full(n, 3.0)):
        (t,) = compare({"x": ref}, {"x": cur})
        assert t.wasserstein == pytest.approx(stats.wasserstein_distance(ref, cur), rel=1e-9)
        assert t.std == pytest.approx(np.std(cur), rel=1e-9)
    ref = 5.0 + rng.normal(0.0, 1e-6, n)  # spread 1e-6 on values of 5: 1e-13 of the mean square
    (t,) = compare({"x": ref}, {"x": cur})
    assert t.wasserstein == pytest.approx(stats.wasserstein_distance(ref, cur) / np.std(ref), rel=1e-6)
    (t,) = compare({"x": cur}, {"x": np.full(n // 3, 0.7)})
    assert t.std == 0.0 and t.mean == pytest.approx(0.7)
