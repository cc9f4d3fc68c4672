"""Randomised exact p-values of the offline check (raymlops.stats.randomised): uniform under no
drift where the conservative ones are not, the same for the same data, never above P(T >= t)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from raymlops.config import MonitorConfig
from raymlops.stats.exact import compare
from raymlops.stats.ks_ties import ks_2samp_ties, ks_2samp_ties_above
from raymlops.stats.offline import check_tables
from raymlops.stats.randomised import DRAWS, MORE_DRAWS, chi2_permutation, permuted_rows


def _null_p_values(kind: str, splits: int, randomise: bool) -> np.ndarray:
    """p-values of ``splits`` random halvings of one sample (no drift by construction)."""
    rng = np.random.default_rng({"sparse": 1, "tied": 2, "small": 3}[kind])
    out = []
    for _ in range(splits):
        if kind == "sparse":  # integers, mostly 0: a chi-square table with expected counts below 5
            x, size = rng.poisson(0.15, 300).astype(float), 300
        elif kind == "tied":  # rounded measurements: KS given the ties
            x, size = np.round(rng.normal(size=120), 1), 120
        else:  # no ties, few values: KS takes few values
            x, size = rng.normal(size=40), 40
        half = rng.permutation(size) < size // 2
        (t,) = compare({"x": x[half]}, {"x": x[~half]}, threads=1, randomise=randomise)
        assert t.test == ("chi2" if kind == "sparse" else "ks")
        out.append(t.p_value)
    return np.asarray(out)


@pytest.mark.parametrize("kind", ["sparse", "tied", "small"])
def test_randomised_p_values_are_uniform_under_no_drift_where_the_upper_ones_are_not(kind: str) -> None:
    p = _null_p_values(kind, 400, randomise=True)
    assert stats.kstest(p, "uniform").pvalue > 0.01, (kind, p.mean())
    for alpha in (0.01, 0.05, 0.2):  # size alpha, within sampling error
        assert abs(np.mean(p < alpha) - alpha) < 3 * math.sqrt(alpha * (1 - alpha) / p.size) + 1e-9, (kind, alpha)
    old = _null_p_values(kind, 400, randomise=False)  # KS: P(D >= d), conservative; sparse: asymptotic, lumpy
    assert stats.kstest(old, "uniform").pvalue < 0.01
    assert kind == "sparse" or old.mean() > p.mean()


def test_a_column_with_a_rare_value_is_flagged_at_alpha_not_more() -> None:
    """A column with 2 ones in 1,797 rows (a pixel of scikit-learn's digits) has three possible
    tables per halving. With ``U`` from the table each one always got the same p-value: flagged in
    a quarter of the halvings. ``U`` comes from the rows, so the size is alpha."""
    x = np.zeros(1797)
    x[[10, 900]] = 1.0
    rng = np.random.default_rng(11)
    p = []
    for _ in range(400):
        half = rng.permutation(x.size) < x.size // 2
        (t,) = compare({"x": x[half]}, {"x": x[~half]}, threads=1)
        p.append(t.p_value)
    arr = np.asarray(p)
    for alpha in (0.01, 0.05, 0.2):
        assert np.mean(arr < alpha) < alpha + 3 * math.sqrt(alpha * (1 - alpha) / arr.size), alpha


def test_the_p_value_lies_in_the_atom_of_the_statistic_and_depends_on_the_data_only() -> None:
    rng = np.random.default_rng(7)
    a, b = np.round(rng.normal(size=300), 1), np.round(rng.normal(0.2, 1.0, 200), 1)
    (t,) = compare({"x": a}, {"x": b})
    d, upper = ks_2samp_ties(a, b)
    assert t.statistic == pytest.approx(d) and t.p_value_upper == upper
    assert ks_2samp_ties_above(a, b) <= t.p_value < upper
    (again,) = compare({"x": a.copy()}, {"x": b.copy()})
    assert again.p_value == t.p_value  # the same data, the same p-value
    (shuffled,) = compare({"x": rng.permutation(a)}, {"x": rng.permutation(b)})
    assert shuffled.statistic == t.statistic and shuffled.p_value_upper == upper  # another draw within the atom
    assert shuffled.p_value != t.p_value and ks_2samp_ties_above(a, b) <= shuffled.p_value < upper


def test_constant_columns_keep_p_1_and_identical_samples_nearly() -> None:
    for ref, cur in ((np.full(200, 4.5), np.full(90, 4.5)), (np.full(50, 2.0), np.full(70, 2.0))):
        (t,) = compare({"x": ref}, {"x": cur})
        assert t.p_value == t.p_value_upper == 1.0, t  # one value: every assignment gives D = 0
    x = np.round(np.random.default_rng(3).normal(size=500), 1)
    (t,) = compare({"x": x}, {"x": x.copy()})  # D = 0, randomised above P(D > 0), which is nearly 1
    assert t.statistic == 0.0 and t.p_value_upper == 1.0 and t.p_value > 0.99


def _exact_chi2_tail(r: np.ndarray, c: np.ndarray) -> float:
    """P(X^2 >= observed) of a 2 x 2 table under its hypergeometric null, by enumeration."""
    col, n_c = r + c, int(c.sum())
    law = stats.hypergeom(int(col.sum()), int(col[0]), n_c)
    observed = stats.chi2_contingency(np.vstack([r, c]), correction=False).statistic
    total = 0.0
    for x in range(max(0, n_c - int(col[1])), min(n_c, int(col[0])) + 1):
        table = np.array([[col[0] - x, col[1] - (n_c - x)], [x, n_c - x]])
        if stats.chi2_contingency(table, correction=False).statistic >= observed - 1e-9:
            total += law.pmf(x)
    return total


def test_a_sparse_table_gets_its_permutation_law() -> None:
    r, c = np.array([96.0, 4.0]), np.array([42.0, 8.0])  # expected counts of the rare value: 8 and 4
    assert permuted_rows(r[None], c[None], 10).tolist() == [True]  # 100 values a side, but sparse
    assert permuted_rows(np.array([[500.0, 500]]), np.array([[400.0, 600]]), 10).tolist() == [False]
    assert permuted_rows(np.array([[500.0, 500]]), np.array([[400.0, 600]]), 1000).tolist() == [True]
    asym = stats.chi2_contingency(np.vstack([r, c]), correction=False).pvalue
    p, upper = chi2_permutation(r, c, asym)
    exact = _exact_chi2_tail(r, c)
    assert upper == pytest.approx(exact, abs=4 * math.sqrt(exact * (1 - exact) / DRAWS))
    assert p < upper and abs(asym - exact) > abs(upper - exact)  # asymptotic chi-square is off here
    assert chi2_permutation(r, c, asym) == (p, upper)  # the same table, the same draws
    strong = chi2_permutation(np.array([500.0, 0.0, 1.0]), np.array([0.0, 500.0, 2.0]), 1e-200)
    assert strong == (1e-200, 1e-200)  # beyond the draws' resolution: the asymptotic size
    # in the tail where corrections decide, more draws size it (the asymptotic law is 4x too large here)
    r, c = np.array([880.0, 10, 5, 3, 2]), np.array([870.0, 2, 25, 8, 5])
    asym = stats.chi2_contingency(np.vstack([r, c]), correction=False).pvalue
    p, upper = chi2_permutation(r, c, asym)
    assert p <= upper <= 11 / (DRAWS + MORE_DRAWS + 1) < asym / 3


def test_the_check_reports_both_and_conservative_keeps_the_old_p_values() -> None:
    rng = np.random.default_rng(5)
    ref = {"t": np.round(rng.normal(size=400), 1), "k": rng.poisson(0.1, 400).astype(float)}
    cur = {"t": np.round(rng.normal(0.1, 1.0, 300), 1), "k": rng.poisson(0.15, 300).astype(float)}
    out = check_tables(ref, cur, MonitorConfig())["features"]
    old = check_tables(ref, cur, MonitorConfig(p_values="conservative"))["features"]
    assert out["t"]["p_value"] < out["t"]["p_value_upper"] == old["t"]["p_value"] == old["t"]["p_value_upper"]
    values = np.union1d(ref["k"], cur["k"])
    table = np.array([[np.sum(ref["k"] == v) for v in values], [np.sum(cur["k"] == v) for v in values]])
    assert old["k"]["p_value"] == pytest.approx(stats.chi2_contingency(table, correction=False).pvalue, rel=1e-9)
    assert out["k"]["kind"] == "discrete" and out["k"]["p_value"] <= out["k"]["p_value_upper"]
    assert out["k"]["p_value_upper"] != old["k"]["p_value"]  # the permutation law, not the asymptotic one
    with pytest.raises(ValueError, match="p_values"):
        MonitorConfig(p_values="exactish")  # type: ignore[arg-type]


def test_one_rare_row_is_no_drift_wherever_it_sits() -> None:
    """One 'y' in 300 reference rows, none in 300 current ones: every assignment gives the same
    statistic, so the randomised p-value is U alone; it was flagged as drift with 'y' at row 3."""
    cur = {"c": np.array(["x"] * 300, dtype=object)}
    for row in range(100):  # U alone fell below 0.05 for about 5 of them
        values = np.array(["x"] * 300, dtype=object)
        values[row] = "y"
        out = check_tables({"c": values}, cur, MonitorConfig())
        f = out["features"]["c"]
        assert not out["drift"] and not f["drift"] and f["p_value_upper"] > 0.3, (row, f)
    numbers = np.zeros(300)
    numbers[3] = 1.0  # the same as a 0/1 number column
    assert not check_tables({"n": numbers}, {"n": np.zeros(300)}, MonitorConfig())["drift"]


def test_a_boolean_column_of_tens_of_positives_keeps_its_size() -> None:
    """10 positives in 120 rows, halved: the asymptotic chi-square (Cochran's rule met) flagged 7.8 %
    of no-drift halvings at 0.05; the permutation law keeps alpha."""
    x = np.zeros(120, dtype=bool)
    x[:10] = True
    rng = np.random.default_rng(4)
    flagged = 0
    for _ in range(600):
        half = rng.permutation(120) < 60
        flagged += check_tables({"b": x[half]}, {"b": x[~half]}, MonitorConfig())["drift"]
    assert flagged / 600 < 0.05 + 3 * math.sqrt(0.05 * 0.95 / 600), flagged


def test_a_current_table_below_min_rows_is_not_judged_and_says_so() -> None:
    rng = np.random.default_rng(6)
    out = check_tables({"v": rng.normal(size=1000)}, {"v": rng.normal(5.0, 1.0, 29)}, MonitorConfig())
    assert out["drift"] is False and out["judged"] is False and "min_rows (30)" in out["not_judged"]
    assert out["features"]["v"]["p_value"] < 1e-20  # scored all the same
    out = check_tables({"v": rng.normal(size=1000)}, {"v": rng.normal(5.0, 1.0, 30)}, MonitorConfig())
    assert out["drift"] is True and out["judged"] is True and out["not_judged"] is None
    out = check_tables({"v": rng.normal(size=5)}, {"v": rng.normal(5.0, 1.0, 100)}, MonitorConfig())
    assert out["judged"] is False and "the reference data has 5 rows" in out["not_judged"]


def test_the_same_rows_read_as_another_arrow_type_get_the_same_p_value() -> None:
    """U of a categorical column hashes each row's label rank, not the Arrow buffers: string,
    large_string and dictionary columns of the same rows (CSV, Parquet, a snapshot) agree."""
    import pyarrow as pa

    rng = np.random.default_rng(8)
    ref = rng.choice(["a", "b", "c", "rare"], 400, p=[0.5, 0.3, 0.19, 0.01]).tolist()
    cur = rng.choice(["a", "b", "c", "rare"], 300, p=[0.45, 0.35, 0.19, 0.01]).tolist()
    seen = set()
    for kind in (pa.string(), pa.large_string()):
        for encode in (False, True):
            r, c = pa.chunked_array([pa.array(ref, kind)]), pa.chunked_array([pa.array(cur, kind)])
            if encode:
                r, c = r.dictionary_encode(), c.dictionary_encode()
            f = check_tables(pa.table({"k": r}), pa.table({"k": c}), MonitorConfig())["features"]["k"]
            seen.add((f["p_value"], f["p_value_upper"]))
    assert len(seen) == 1, seen


def test_a_table_of_many_categories_keeps_the_asymptotic_law_and_fewer_draws() -> None:
    """A 5,000-level id column of 20,000 rows a side took 20 s a check (20,000 draws of 5,000
    categories): more than MAX_PERMUTED_CATEGORIES keeps the asymptotic p-value; fewer draws are
    taken for many categories (coarser steps, still exact)."""
    from scipy import stats as st

    rng = np.random.default_rng(5)
    assert not permuted_rows(np.ones((1, 1001)), np.ones((1, 1001)), 10_000)[0]
    assert permuted_rows(np.ones((1, 1000)), np.ones((1, 1000)), 10_000)[0]
    levels = np.array([f"id{i}" for i in range(5000)], dtype=object)
    ref, cur = rng.choice(levels, 20_000), rng.choice(levels, 20_000)
    f = check_tables({"c": ref}, {"c": cur}, MonitorConfig())["features"]["c"]
    values = np.union1d(ref, cur)
    table = np.array([[np.sum(ref == v) for v in values], [np.sum(cur == v) for v in values]])
    assert f["p_value"] == f["p_value_upper"] == pytest.approx(st.chi2_contingency(table, correction=False).pvalue)
    c = rng.multinomial(2700, np.full(900, 1 / 900)).astype(float)  # 900 categories: 2,222 draws, not 20,000
    p, upper = chi2_permutation(np.full(900, 3.0), c, 0.5)
    assert 0 < p <= upper <= 1 and abs(upper * 2223 - round(upper * 2223)) < 1e-9  # steps of 1 / (2,222 + 1)
