"""``snapshot diff`` / ``data_drift``: exact tests on the rows of both snapshots (pure: no Ray).

:func:`raymlops.data.drift.exact_report` re-tests every column the profiles can compare with the
offline check of ``raymlops monitor check`` (exact KS with scipy's public p-values; chi-square
on the observed support of categorical and low-cardinality integer columns), under the
:class:`DriftSettings` translated onto the monitor's settings model.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from raymlops.config import MonitorConfig
from raymlops.data.drift import exact_report, monitor_settings, settings_hash
from raymlops.stats.check import DriftSettings, check
from raymlops.stats.offline import check_tables
from raymlops.stats.profile import profile_table


def tables(n_ref: int = 3_000, n_cur: int = 2_000, shift: float = 0.0, seed: int = 0) -> tuple[pa.Table, pa.Table]:
    rng = np.random.default_rng(seed)

    def one(n: int, s: float) -> pa.Table:
        pixel = rng.choice(5, size=n, p=[0.3, 0.25, 0.2, 0.15, 0.1] if s == 0 else [0.2, 0.2, 0.2, 0.2, 0.2])
        return pa.table({"x": rng.normal(s, 1.0, size=n), "pixel": pixel.astype(np.int64),
                         "city": rng.choice(["a", "b", "c"], size=n).astype(object)})

    return one(n_ref, 0.0), one(n_cur, shift)


def _support(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    values = np.union1d(a, b)
    return np.vstack([[np.sum(a == v) for v in values], [np.sum(b == v) for v in values]])


def report_of(ref: pa.Table, cur: pa.Table, settings: DriftSettings) -> object:
    return exact_report(check(profile_table(cur), profile_table(ref), settings), ref, cur)


def test_p_values_are_the_exact_checks() -> None:
    ref, cur = tables(shift=0.3)
    report = report_of(ref, cur, DriftSettings(small_sample=10_000))
    by = {c.column: c for c in report.columns}  # type: ignore[attr-defined]
    x = by["x"]
    expected = stats.ks_2samp(ref["x"].to_numpy(), cur["x"].to_numpy())
    assert x.test == "ks" and x.scores["exact"] == "continuous" and not x.approximate
    assert x.scores["ks_statistic"] == pytest.approx(expected.statistic, abs=1e-12)
    assert x.p_value == pytest.approx(expected.pvalue, rel=1e-6)
    # integers with few values, and text: chi-square on their exact support (not KS), its p-value the
    # permutation law's at these sizes (raymlops.stats.randomised), as `monitor check` gives it
    checked = check_tables(ref, cur, MonitorConfig(categorical=["city"]))["features"]
    for name in ("pixel", "city"):
        table = _support(*(t[name].to_numpy().astype(str if name == "city" else float) for t in (ref, cur)))
        asymptotic = stats.chi2_contingency(table, correction=False)
        c = by[name]
        assert c.test == "chi2" and c.scores["chi2_statistic"] == pytest.approx(asymptotic.statistic, rel=1e-9)
        assert c.p_value == checked[name]["p_value"] and 0.2 < c.p_value / asymptotic.pvalue < 5
    # Bonferroni over the three columns, and the verdicts that follow from it
    pixel, city = by["pixel"], by["city"]
    for c in (x, pixel, city):
        assert c.p_adjusted == pytest.approx(min(1.0, 3 * c.p_value))
        assert c.drifted == (c.p_adjusted < 0.05)
    assert x.drifted and pixel.drifted and not city.drifted
    assert report.dataset_drift and report.drifted_columns == ["x", "pixel"]  # type: ignore[attr-defined]


def test_no_drift_on_the_same_distribution() -> None:
    ref, cur = tables(seed=3)
    report = report_of(ref, cur, DriftSettings(small_sample=10_000))
    assert report.drifted_columns == [] and not report.dataset_drift  # type: ignore[attr-defined]


def test_distances_decide_on_large_samples_and_the_rules_apply() -> None:
    ref, cur = tables(shift=0.3)
    report = report_of(ref, cur, DriftSettings(small_sample=1_000))  # 2,000 current rows: distances
    by = {c.column: c for c in report.columns}  # type: ignore[attr-defined]
    assert by["x"].test == "wasserstein" and by["x"].threshold == 0.1 and by["x"].p_value is None
    assert by["x"].score == pytest.approx(by["x"].scores["wasserstein_normed"]) and by["x"].drifted
    assert by["city"].test == "jensenshannon" and not by["city"].drifted
    share = report_of(ref, cur, DriftSettings(small_sample=10_000, dataset_rule="share", drift_share=0.9))
    assert share.drifted_columns == ["x", "pixel"] and not share.dataset_drift  # type: ignore[attr-defined]
    psi = report_of(ref, cur, DriftSettings(numeric_test="psi", categorical_test="psi", psi=0.01))
    assert {c.test for c in psi.tested} == {"psi"}  # type: ignore[attr-defined]


def test_settings_translate_onto_the_monitor_model() -> None:
    cfg = monitor_settings(DriftSettings(alpha=0.01, correction="none", categorical_test="jensenshannon",
                                         jensenshannon=0.2, small_sample=0, dataset_rule="share", drift_share=0.3))
    assert (cfg.alpha, cfg.correction, cfg.categorical_test, cfg.js_threshold) == (0.01, "none", "js", 0.2)
    assert (cfg.small_window_rows, cfg.dataset_rule, cfg.dataset_drift_share, cfg.min_rows) == (0, "share", 0.3, 0)
    # stored checks are keyed by the engine too: a profile-based result is never read back as exact
    assert settings_hash(DriftSettings()) != settings_hash(DriftSettings(), exact=False)
