"""The offline check (``monitor check``) on columns it cannot test and values it leaves out: a
column with no values on one side is "not tested", with the reason, outside the correction's
family; +-inf values, left out of the tests as missing ones, are a data-quality finding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from raymlops.config import MonitorConfig
from raymlops.exceptions import ValidationError
from raymlops.stats.offline import check_tables


def _frame(seed: int, n: int = 1000) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"x": rng.normal(0, 1, n), "k": rng.integers(0, 5, n), "cat": rng.choice(list("abc"), n)})


@pytest.mark.parametrize("as_arrow", [False, True])
def test_a_column_empty_in_the_current_data_is_not_tested_and_its_missing_rate_is_a_finding(as_arrow: bool) -> None:
    ref, cur = _frame(1), _frame(2)
    cur["x"] = np.nan
    if as_arrow:
        ref, cur = pa.Table.from_pandas(ref, preserve_index=False), pa.Table.from_pandas(cur, preserve_index=False)
    out = check_tables(ref, cur, MonitorConfig())
    assert "x" not in out["features"] and set(out["features"]) == {"k", "cat"}
    assert out["not_tested"]["x"].startswith("no values in the current data (all 1000 rows missing")
    assert any("missing values 0.0% -> 100.0%" in f for f in out["anomalies"]["x"])
    # the family is the two tested columns: Bonferroni multiplies by 2, not 3
    cat = out["features"]["cat"]
    assert cat["adjusted_p_value"] == pytest.approx(min(1.0, 2 * cat["p_value"]))


def test_a_column_empty_in_the_reference_is_not_tested_and_said_so() -> None:
    ref, cur = _frame(1), _frame(2)
    ref["x"] = np.nan
    out = check_tables(ref, cur, MonitorConfig())
    assert "x" not in out["features"]
    assert out["not_tested"]["x"].startswith("no values in the reference (all 1000 rows missing)")
    assert out["anomalies"]["x"] == ["the reference has no values in this column"]
    both = check_tables(ref, ref, MonitorConfig())
    assert both["not_tested"]["x"] == "no values on either side" and "x" not in both["anomalies"]


@pytest.mark.parametrize("as_arrow", [False, True])
def test_infinities_are_a_data_quality_finding(as_arrow: bool) -> None:
    rng = np.random.default_rng(1)
    ref = pd.DataFrame({"x": rng.normal(0, 1, 10_000)})
    values = rng.normal(0, 1, 10_000)
    values[:400] = np.inf  # 4 %: under the missing-rate limit (+5 %)
    values[400:410] = -np.inf
    cur = pd.DataFrame({"x": values})
    if as_arrow:
        ref, cur = pa.Table.from_pandas(ref, preserve_index=False), pa.Table.from_pandas(cur, preserve_index=False)
    out = check_tables(ref, cur, MonitorConfig())
    assert out["anomalies"]["x"] == ["4.1% of the values are +-inf (the reference: 0.0%); left out of the tests, "
                                     "as missing values"]
    # the same share in the reference is no news; NaN alone is not an infinity
    assert "x" not in check_tables(cur, cur, MonitorConfig())["anomalies"]
    nan_only = pd.DataFrame({"x": np.where(np.arange(10_000) < 410, np.nan, rng.normal(0, 1, 10_000))})
    assert "x" not in check_tables(ref, nan_only, MonitorConfig())["anomalies"]


def test_a_constant_reference_column_that_moved_drifts_offline_and_live() -> None:
    """0.123 in every reference row, 0.124 in every current one: a Wasserstein distance has no
    reference spread to be divided by (raw: 0.001, under 0.1), so the p-value test decides."""
    from raymlops.monitor import StreamState, build_reference
    from tests.unit.test_verdicts_vectorised import check as live_check

    n = 2000  # over small_window_rows: a distance would decide
    rng = np.random.default_rng(1)
    ref = {"c": np.full(n, 0.123), "k": np.full(n, 5.0), "v": rng.normal(0, 1, n)}
    moved = {"c": np.full(n, 0.124), "k": np.full(n, 6.0), "v": rng.normal(0, 1, n)}
    still = {"c": np.full(n, 0.123), "k": np.full(n, 5.0), "v": rng.normal(0, 1, n)}
    out = check_tables(ref, moved, MonitorConfig())
    assert out["features"]["c"]["test"] == "ks" and out["features"]["c"]["drift"]
    assert out["features"]["k"]["test"] == "chi2" and out["features"]["k"]["drift"]  # a discrete constant
    assert out["features"]["v"]["test"] == "wasserstein" and not out["features"]["v"]["drift"]
    quiet = check_tables(ref, still, MonitorConfig())
    assert not quiet["features"]["c"]["drift"] and not quiet["features"]["k"]["drift"] and quiet["drift"] is False

    reference = build_reference(ref)
    for data, drifts in ((moved, True), (still, False)):
        state = StreamState(reference)
        state.update(data)
        verdict = live_check(state, MonitorConfig())  # the stacked and the per-column paths agree
        for name in ("c", "k"):
            col = verdict.overall.column(name)
            assert col.test in ("ks", "chi2") and col.drift is drifts, col


def test_missing_columns_are_named_with_a_case_hint_or_as_in_neither_table() -> None:
    ref = _frame(1)
    upper = ref.rename(columns={"x": "X", "cat": "Cat"})
    with pytest.raises(ValidationError, match=r"current data lacks columns \['x', 'cat'\]; it has 'X' for 'x', "
                                              r"'Cat' for 'cat' \(another case\)"):
        check_tables(ref, upper, MonitorConfig())
    with pytest.raises(ValidationError, match=r"neither table has columns \['nosuch'\]; the reference's: x, k, cat"):
        check_tables(ref, ref, MonitorConfig(), columns=["nosuch"])


def test_out_of_range_findings_allow_for_a_small_reference_and_a_small_sample() -> None:
    """Fresh samples of 50 rows from a 50-row reference's distribution fall ~4 % outside its range
    by chance: no finding on the unchanged columns, one on the column that moved."""
    rng = np.random.default_rng(1)
    ref = pd.DataFrame(rng.normal(0, 1, (50, 200)), columns=[f"f{i}" for i in range(200)])
    cur = pd.DataFrame(rng.normal(0, 1, (50, 200)), columns=ref.columns)
    cur["f7"] += 3
    out = check_tables(ref, cur, MonitorConfig())
    assert "f7" in out["anomalies"] and len(out["anomalies"]) <= 4, out["anomalies"]
    assert out["anomalies"]["f7"][0].endswith("of the values outside the reference's range (limit: 8.9%)")
    # a large sample past the limit is no noise: 6 % outside a 100,000-row reference's range
    big_ref = pd.DataFrame({"x": rng.uniform(0, 1, 100_000)})
    big_cur = pd.DataFrame({"x": np.r_[rng.uniform(0, 1, 9_400), rng.uniform(1.0001, 2, 600)]})
    assert check_tables(big_ref, big_cur, MonitorConfig())["anomalies"]["x"] == [
        "6.0% of the values outside the reference's range (limit: 5.0%)"]


def test_a_slice_column_of_many_values_is_noted() -> None:
    ref, cur = _frame(1), _frame(2)
    out = check_tables(ref, cur, MonitorConfig(), slice_columns=["x"])  # a continuous column as a slice
    assert out["slice_note"].startswith("x: 1000 distinct values in the reference; the 20 most frequent are slices, "
                                        "the other 980 rows are 'other'")
    assert check_tables(ref, cur, MonitorConfig(), slice_columns=["cat"])["slice_note"] is None


def test_huge_served_values_in_several_windows_leave_status_and_metrics_working() -> None:
    """1e308 is a valid double, answered when served; two of them in different windows add up
    past the largest double in the long-term window's exact sums (Python's int / int raised
    OverflowError there, and `monitor status` and every metrics scrape failed from then on)."""
    import json

    from prometheus_client import CollectorRegistry, generate_latest

    from raymlops.monitor import Monitor, build_reference
    from raymlops.monitor.metrics import MonitorCollector

    rng = np.random.default_rng(0)
    reference = build_reference({"age": rng.integers(18, 90, 1000).astype(float), "x": rng.normal(size=1000)})
    monitor = Monitor(reference, MonitorConfig(window_rows=100, alerts={"log": False}))
    for _ in range(3):
        age = rng.integers(18, 90, 100).astype(float)
        age[0] = 1e308
        monitor.ingest({"age": age, "x": rng.normal(size=100)})
    long_term = monitor.long_term()
    assert long_term is not None and long_term.overall.column("age").mean == float("inf")
    status = monitor.status()
    assert status["rows_total"] == 300 and "Infinity" not in json.dumps(status)
    registry = CollectorRegistry()
    registry.register(MonitorCollector("m", monitor.status))
    assert b"raymlops_monitor_rows_total" in generate_latest(registry)
