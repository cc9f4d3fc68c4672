"""Statistical validation from profiles (raymlops.stats.check) against scipy on known
distributions: binned KS and Wasserstein agree with the exact ones; no drift gives no alert at
the corrected level; a shifted mean does."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from raymlops.exceptions import ValidationError
from raymlops.stats.check import DriftReport, DriftSettings, check, psi_band
from raymlops.stats.drift import ks_binned, wasserstein_binned
from raymlops.stats.profile import profile_table

P_VALUE_TESTS = DriftSettings(numeric_test="ks", categorical_test="chi2")


def _frame(rng: np.random.Generator, n: int, shift: float = 0.0, columns: int = 10) -> pa.Table:
    cols = {f"x{i}": rng.normal(shift if i == 0 else 0.0, 1.0 + 0.1 * i, n) for i in range(columns)}
    return pa.table(cols)


@pytest.mark.parametrize(("n", "m", "shift"), [(200_000, 50_000, 0.0), (200_000, 50_000, 0.03),
                                               (3_000, 800, 0.0), (3_000, 800, 0.25)])
def test_binned_ks_and_wasserstein_agree_with_scipy(n: int, m: int, shift: float) -> None:
    rng = np.random.default_rng(int(n + m + shift * 100))
    a, b = rng.normal(size=n), rng.normal(shift, 1.0, m)
    ref = profile_table(pa.table({"x": a}))
    cur = profile_table(pa.table({"x": b}), reference=ref)
    r, c = ref.column("x"), cur.column("x")
    d, p = ks_binned(r.counts, c.ref_counts)
    exact = stats.ks_2samp(a, b)
    assert d <= exact.statistic + 1e-12  # a lower bound, exact at the bin edges ...
    assert exact.statistic - d < 0.004  # ... short by at most about one fine bin
    assert abs(np.log10(max(p, 1e-300)) - np.log10(max(exact.pvalue, 1e-300))) < 0.5 or abs(p - exact.pvalue) < 0.05
    assert (p < 0.05) == (exact.pvalue < 0.05)
    w = wasserstein_binned(r.edges, r.counts, c.ref_counts, min(r.min, c.min), max(r.max, c.max), r.std)
    assert w == pytest.approx(stats.wasserstein_distance(a, b) / a.std(), rel=0.05, abs=0.002)


def test_binned_ks_p_value_is_scipys() -> None:
    rng = np.random.default_rng(3)
    for n, m, shift in ((400, 300, 0.2), (20_000, 15_000, 0.02)):  # scipy's exact method; Smirnov's
        a, b = np.round(rng.normal(size=n), 1), np.round(rng.normal(shift, 1.0, m), 1)
        values = np.unique(np.concatenate([a, b]))
        ref = np.bincount(np.searchsorted(values, a), minlength=values.size)
        cur = np.bincount(np.searchsorted(values, b), minlength=values.size)
        exact = stats.ks_2samp(a, b)
        d, p = ks_binned(ref, cur)
        assert d == pytest.approx(exact.statistic, rel=1e-12)
        assert p == pytest.approx(exact.pvalue, rel=1e-9)


def test_no_drift_gives_no_alert_at_the_corrected_level() -> None:
    rng = np.random.default_rng(11)
    ref = profile_table(_frame(rng, 50_000))
    alerts = 0
    for _trial in range(5):
        cur = profile_table(_frame(rng, 20_000), reference=ref)
        report = check(cur, ref, P_VALUE_TESTS)
        assert [c.test for c in report.columns] == ["ks"] * 10
        assert all(c.p_adjusted == pytest.approx(min(c.p_value * 10, 1.0)) for c in report.columns)  # Bonferroni
        alerts += len(report.drifted_columns)
        assert not report.dataset_drift
    assert alerts <= 1  # family-wise error rate 5 % per check


def test_shifted_mean_alerts_on_that_column_only() -> None:
    rng = np.random.default_rng(12)
    ref = profile_table(_frame(rng, 50_000))
    cur = profile_table(_frame(rng, 20_000, shift=0.1), reference=ref)
    report = check(cur, ref, P_VALUE_TESTS)
    assert report.drifted_columns == ["x0"]
    x0 = report.columns[0]
    assert x0.p_adjusted < 1e-6 and not x0.approximate
    # one column of ten drifted after Bonferroni: a family-wise decision says the dataset drifted
    # (the old rule asked half of the *corrected* flags, paying for multiplicity twice)
    assert report.share == pytest.approx(0.1) and report.dataset_drift
    share_rule = check(cur, ref, DriftSettings(numeric_test="ks", categorical_test="chi2", dataset_rule="share"))
    assert "x0" in share_rule.drifted_columns and not share_rule.dataset_drift  # Evidently's: under half
    # large data, default settings (auto): Wasserstein >= 0.1 of the reference std decides
    auto = check(profile_table(_frame(rng, 20_000, shift=0.5), reference=ref), ref)
    assert [c.test for c in auto.columns] == ["wasserstein"] * 10 and auto.drifted_columns == ["x0"]
    assert auto.columns[0].scores["wasserstein_normed"] == pytest.approx(0.5, abs=0.05)
    assert auto.columns[0].scores["psi_band"] == "significant"
    small = check(profile_table(_frame(rng, 500, shift=0.5), reference=ref), ref)
    assert small.columns[0].test == "ks" and small.drifted_columns == ["x0"]  # small window: p-value test


def test_bh_is_less_strict_than_bonferroni() -> None:
    rng = np.random.default_rng(5)
    ref = profile_table(_frame(rng, 20_000, columns=6))
    cur_table = pa.table({f"x{i}": rng.normal(0.035 if i < 3 else 0.0, 1.0 + 0.1 * i, 20_000) for i in range(6)})
    cur = profile_table(cur_table, reference=ref)
    bonf = check(cur, ref, P_VALUE_TESTS)
    bh = check(cur, ref, DriftSettings(numeric_test="ks", correction="bh"))
    assert set(bonf.drifted_columns) <= set(bh.drifted_columns)
    assert all(b.p_adjusted <= f.p_adjusted + 1e-15 for b, f in zip(bh.columns, bonf.columns, strict=True))


def test_categorical_tests_agree_with_scipy() -> None:
    rng = np.random.default_rng(2)
    a = rng.choice(["a", "b", "c"], 5000, p=[0.5, 0.3, 0.2])
    b = rng.choice(["a", "b", "c", "d"], 4000, p=[0.4, 0.3, 0.2, 0.1])
    ref, cur = profile_table(pa.table({"s": a})), profile_table(pa.table({"s": b}))
    col = check(cur, ref, P_VALUE_TESTS).columns[0]
    table = np.array([[np.sum(a == k) for k in "abcd"], [np.sum(b == k) for k in "abcd"]])
    exact = stats.chi2_contingency(table, correction=False)
    assert col.kind == "categorical" and col.test == "chi2" and col.drifted
    assert col.scores["chi2_statistic"] == pytest.approx(exact.statistic)
    assert col.scores["chi2_p_value"] == pytest.approx(exact.pvalue, rel=1e-6, abs=1e-300)
    assert col.scores["new_categories"] == ["d"]
    same = check(profile_table(pa.table({"s": rng.choice(["a", "b", "c"], 4000, p=[0.5, 0.3, 0.2])})), ref)
    assert same.columns[0].test == "jensenshannon" and not same.columns[0].drifted


def test_approximate_when_not_counted_on_the_reference_bins() -> None:
    rng = np.random.default_rng(9)
    ref = profile_table(pa.table({"x": rng.normal(size=30_000)}))
    cur = profile_table(pa.table({"x": rng.normal(0.3, 1.0, 30_000)}))  # no reference given
    col = check(cur, ref).columns[0]
    assert col.approximate and col.drifted
    assert col.scores["wasserstein_normed"] == pytest.approx(0.3, abs=0.03)


def test_schema_changes_missing_values_and_round_trip() -> None:
    ref = profile_table(pa.table({"a": [1.0, 2.0, 3.0] * 100, "gone": [1] * 300, "t": ["x"] * 300}))
    cur = profile_table(pa.table({"a": pa.array([None] * 300, pa.float64()), "new": [1] * 300, "t": ["y"] * 300}))
    report = check(cur, ref)
    assert "column 'gone' is missing" in report.schema_changes and "column 'new' is new" in report.schema_changes
    a = next(c for c in report.columns if c.column == "a")
    assert a.test is None and "no finite values on the current side" in (a.note or "")
    back = DriftReport.from_dict(report.to_dict())
    assert back.to_dict() == report.to_dict()
    assert psi_band(0.05) == "stable" and psi_band(0.15) == "moderate" and psi_band(0.3) == "significant"


def test_a_column_left_out_says_its_type_not_other() -> None:
    """`snapshot diff` of a table with a date and a timestamp column: each is left out, as
    Evidently leaves dates out, and the note names its type (it said "not tested: other column")."""
    import datetime as dt

    days = pa.array([dt.date(2024, 1, 1) + dt.timedelta(days=i) for i in range(300)])
    table = pa.table({"day": days, "at": pa.array(range(300), pa.timestamp("s")), "a": np.arange(300.0)})
    report = check(profile_table(table), profile_table(table))
    notes = {c.column: c.note for c in report.columns}
    assert notes["day"] == "not tested: date32[day] column" and notes["at"] == "not tested: timestamp[s] column"
    assert next(c for c in report.columns if c.column == "a").test is not None


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"numeric_test": "t-test"}, "numeric_test"), ({"correction": "sidak"}, "correction"),
    ({"dataset_rule": "half"}, "dataset_rule"), ({"alpha": 1.5}, "alpha"), ({"drift_share": 0}, "drift_share"),
    ({"psi": 0}, "psi threshold")])
def test_settings_are_checked(kwargs: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DriftSettings(**kwargs)


def test_columns_setting_limits_the_check() -> None:
    rng = np.random.default_rng(1)
    ref = profile_table(_frame(rng, 2000, columns=3))
    report = check(profile_table(_frame(rng, 2000, columns=3)), ref, DriftSettings(columns=("x1",)))
    assert [c.column for c in report.columns] == ["x1"]
    with pytest.raises(ValidationError, match="'zz' is in neither profile"):
        check(ref, ref, DriftSettings(columns=("zz",)))


def test_a_column_of_the_reference_missing_now_is_drift_and_the_encoding_of_strings_is_not_a_change() -> None:
    """A renamed column (``x1`` -> ``X1``, another export's header) leaves the model without a
    feature: dataset drift (so ``data.drift_gate: fail`` and ``--fail-on-drift`` stop), whatever
    the other columns' tests say. ``string`` vs ``large_string`` is one type."""
    rng = np.random.default_rng(0)
    x1, x2 = rng.normal(size=500), rng.normal(size=500)
    labels = rng.choice(["a", "b"], 500).tolist()
    ref = profile_table(pa.table({"x1": x1, "x2": x2, "s": pa.array(labels, pa.string())}))
    same = profile_table(pa.table({"x1": x1, "x2": x2, "s": pa.array(labels, pa.large_string())}), reference=ref)
    quiet = check(same, ref)
    assert quiet.schema_changes == [] and quiet.missing_columns == [] and not quiet.dataset_drift
    renamed = profile_table(pa.table({"X1": x1, "x2": x2, "s": pa.array(labels, pa.string())}), reference=ref)
    report = check(renamed, ref)
    assert report.drifted_columns == [] and report.missing_columns == ["x1"] and report.dataset_drift
    assert report.summary() == "0 of 2 columns drifted; 1 column of the reference missing (x1); dataset drift: yes"
    again = DriftReport.from_dict(report.to_dict())
    assert again.missing_columns == ["x1"] and again.dataset_drift
    # only the columns asked about count
    assert not check(renamed, ref, DriftSettings(columns=("x2",))).dataset_drift


def test_infinities_in_the_current_data_are_noted() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=5000), rng.normal(size=5000)
    b[:200] = np.inf
    ref = profile_table(pa.table({"x": a}))
    (col,) = check(profile_table(pa.table({"x": b}), reference=ref), ref).columns
    assert col.note == "200 +-inf values (4.0%; the reference: 0.0%), left out of the test"
    (same,) = check(profile_table(pa.table({"x": a}), reference=ref), ref).columns
    assert same.note is None


def test_a_rise_in_missing_values_is_said_though_no_value_drifted() -> None:
    """35 % -> 57 % missing read "0 of 2 columns drifted" and nothing else: the drift tests compare
    the values that are there, so a join that blanks half a column passed the drift gate unsaid."""
    rng = np.random.default_rng(2)
    n = 300

    def values(missing: float) -> pa.Array:
        x = rng.normal(size=n)
        x[rng.random(n) < missing] = np.nan
        return pa.array(x, from_pandas=True)

    ref = profile_table(pa.table({"num": values(0.3), "same": values(0.3)}))
    cur = profile_table(pa.table({"num": values(0.6), "same": values(0.3)}), reference=ref)
    report = check(cur, ref)
    before, now = ref.column("num").nulls / n, cur.column("num").nulls / n
    assert now - before > 0.2 and not report.drifted_columns
    assert report.missing_value_changes == [f"num: missing values {before:.1%} -> {now:.1%}"]
    assert report.summary().endswith(f"; num: missing values {before:.1%} -> {now:.1%}")
    assert report.to_dict()["missing_value_changes"] == report.missing_value_changes
    assert check(profile_table(pa.table({"num": values(0.3)}), reference=ref), ref).missing_value_changes == []

