"""The p-value test decides while *either* sample is small, the reference's or the current one:
a distance of a 10-row reference to a million current rows of the same distribution is 0.3-0.4
standard deviations by chance, and a 100-row reference drifted 38 of 50 unchanged columns against
5,000 current rows. The same rule offline (``monitor check``), in the snapshot check and in the
live monitor's windows (both paths). And ``snapshot diff`` judges an integer column as ``monitor
check`` does (it called a 0/1 column a category and said "no drift" where the check said drift)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from scipy import stats

from raymlops.config import MonitorConfig
from raymlops.data.drift import exact_report
from raymlops.monitor import StreamState, build_reference
from raymlops.stats.check import DriftSettings
from raymlops.stats.check import check as snapshot_check
from raymlops.stats.offline import check_tables
from raymlops.stats.profile import profile_table
from tests.unit.test_verdicts_vectorised import check as live_check


def _same(rows: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=rows), "k": rng.integers(0, 10, rows)}


def test_monitor_check_a_small_reference_gets_the_p_value_tests() -> None:
    ref, cur = _same(10, 1), _same(200_000, 2)
    out = check_tables(ref, cur, MonitorConfig())
    x, k = out["features"]["x"], out["features"]["k"]
    assert x["test"] == "ks" and k["test"] == "chi2", (x, k)
    assert x["p_value"] == stats.ks_2samp(ref["x"], cur["x"]).pvalue
    assert out["drift"] is False and not x["drift"] and not k["drift"]
    # both large: the distance decides (Evidently's rule for large samples)
    big = check_tables(_same(5000, 3), _same(5000, 4), MonitorConfig())
    assert big["features"]["x"]["test"] == "wasserstein" and big["features"]["k"]["test"] == "wasserstein"


def test_fifty_unchanged_columns_against_a_100_row_reference_do_not_drift() -> None:
    rng = np.random.default_rng(7)
    ref = {f"c{i}": rng.normal(size=100) for i in range(50)}
    cur = {f"c{i}": rng.normal(size=5000) for i in range(50)}
    out = check_tables(ref, cur, MonitorConfig())
    assert sum(f["drift"] for f in out["features"].values()) <= 1 and out["drift"] is False
    assert {f["test"] for f in out["features"].values()} == {"ks"}


def test_snapshot_check_chooses_by_the_smaller_side_too() -> None:
    ref = profile_table(pa.table(_same(10, 1)))
    cur = profile_table(pa.table(_same(20_000, 2)), reference=ref)
    report = snapshot_check(cur, ref, DriftSettings())
    assert {c.column: c.test for c in report.columns} == {"x": "ks", "k": "chi2"}


def test_live_windows_against_a_small_reference_get_the_p_value_tests() -> None:
    reference = build_reference(_same(40, 1))
    state = StreamState(reference)
    state.update(_same(3000, 2))  # a window over small_window_rows (1,000)
    col = live_check(state, MonitorConfig()).overall.column("x")  # the stacked and per-column paths agree
    assert col.test == "ks" and not col.drift, col
    # a large reference: the window's distance decides, as before
    state = StreamState(build_reference(_same(3000, 5)))
    state.update(_same(3000, 2))
    assert live_check(state, MonitorConfig()).overall.column("x").test == "wasserstein"


def test_snapshot_diff_judges_an_integer_column_as_monitor_check_does() -> None:
    rng = np.random.default_rng(11)
    ref = pa.table({"flag": (rng.random(100_000) < 0.50).astype(np.int64)})
    cur = pa.table({"flag": (rng.random(100_000) < 0.56).astype(np.int64)})
    checked = check_tables(ref, cur, MonitorConfig())["features"]["flag"]
    ref_profile = profile_table(ref)
    report = exact_report(snapshot_check(profile_table(cur, reference=ref_profile), ref_profile, DriftSettings()),
                          ref, cur)
    (col,) = report.columns
    assert checked["kind"] == "discrete" and checked["test"] == "wasserstein" and checked["drift"]
    assert col.test == "wasserstein" and col.kind == "numeric" and col.scores["exact"] == "discrete"
    assert col.score == checked["statistic"] and col.drifted is checked["drift"] and report.dataset_drift
