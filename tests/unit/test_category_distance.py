"""A distance over categories (Jensen-Shannon, PSI) decides drift only with its chi-square p-value
below alpha: the same rule in the offline check, the snapshot check and the live monitor (both of
its paths). Two samples of one 100-level category are 0.13 apart in Jensen-Shannon distance,
over the 0.1 threshold, yet nothing changed (chi-square p 0.7)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from raymlops.config import MonitorConfig
from raymlops.monitor import StreamState, build_reference
from raymlops.stats.check import DriftSettings
from raymlops.stats.check import check as snapshot_check
from raymlops.stats.offline import check_tables
from raymlops.stats.profile import profile_table
from raymlops.stats.verdict import distance_drifted
from tests.unit.test_verdicts_vectorised import check as live_check

LEVELS = np.array([f"c{i}" for i in range(100)], dtype=object)
ROWS = 2000  # over small_window_rows (1,000): a distance decides


def _sample(seed: int, shifted: bool = False) -> np.ndarray:
    p = np.ones(LEVELS.size)
    if shifted:
        p[:10] *= 3  # ten levels three times as common
    return np.random.default_rng(seed).choice(LEVELS, ROWS, p=p / p.sum())


def _scipy_p(ref: np.ndarray, cur: np.ndarray) -> float:
    table = np.array([[np.sum(ref == v) for v in LEVELS], [np.sum(cur == v) for v in LEVELS]])
    return float(stats.chi2_contingency(table[:, table.sum(axis=0) > 0], correction=False)[1])


def test_the_rule() -> None:
    assert distance_drifted("js", 0.2, 0.1, categories=True, p_value=0.01, alpha=0.05)
    assert not distance_drifted("js", 0.2, 0.1, categories=True, p_value=0.7, alpha=0.05)
    assert not distance_drifted("jensenshannon", 0.2, 0.1, categories=True, p_value=0.7, alpha=0.05)
    assert not distance_drifted("psi", 0.5, 0.1, categories=True, p_value=0.06, alpha=0.05)
    assert not distance_drifted("js", 0.05, 0.1, categories=True, p_value=0.0, alpha=0.05)
    assert not distance_drifted("js", math.nan, 0.1, categories=True, p_value=0.0, alpha=0.05)
    # numbers: the distance alone (its noise does not grow with levels)
    assert distance_drifted("wasserstein", 0.2, 0.1, categories=False, p_value=0.9, alpha=0.05)
    assert distance_drifted("psi", 0.2, 0.1, categories=False, p_value=0.9, alpha=0.05)
    assert distance_drifted("wasserstein", 0.2, 0.1, categories=True, p_value=0.9, alpha=0.05)


def test_monitor_check_two_samples_of_one_category_do_not_drift_a_shift_does() -> None:
    ref, same, moved = _sample(1), _sample(2), _sample(3, shifted=True)
    quiet = check_tables({"c": ref}, {"c": same}, MonitorConfig(p_values="conservative"))  # (scipy's p-values)
    c = quiet["features"]["c"]
    assert c["test"] == "js" and c["statistic"] >= 0.1  # over the threshold: the old rule drifted it
    assert c["p_value"] == pytest.approx(_scipy_p(ref, same), rel=1e-6) and c["p_value"] > 0.05
    assert not c["drift"] and quiet["drift"] is False
    loud = check_tables({"c": ref}, {"c": moved}, MonitorConfig(p_values="conservative"))
    assert loud["features"]["c"]["drift"] and loud["drift"] is True
    assert loud["features"]["c"]["p_value"] == pytest.approx(_scipy_p(ref, moved), rel=1e-6)
    # the default, randomised p-values (the permutation law at these sizes): the same verdicts
    assert check_tables({"c": ref}, {"c": same}, MonitorConfig())["drift"] is False
    assert check_tables({"c": ref}, {"c": moved}, MonitorConfig())["drift"] is True


def test_snapshot_check_the_same() -> None:
    ref = profile_table(pa.table({"c": _sample(1).astype(str)}))
    same = snapshot_check(profile_table(pa.table({"c": _sample(2).astype(str)}), reference=ref), ref, DriftSettings())
    (col,) = same.columns
    assert col.test == "jensenshannon" and col.score is not None and col.score >= 0.1 and not col.drifted
    moved = snapshot_check(profile_table(pa.table({"c": _sample(3, True).astype(str)}), reference=ref), ref,
                           DriftSettings())
    assert moved.columns[0].drifted and moved.dataset_drift and not same.dataset_drift


@pytest.mark.parametrize("categorical_test", ["auto", "psi"])
def test_live_monitor_the_same_on_both_paths(categorical_test: str) -> None:
    reference = build_reference({"c": _sample(1)})
    # (PSI's noise here is about 0.06: a threshold under it)
    cfg = MonitorConfig(categorical_test=categorical_test, psi_threshold=0.04)
    for data, drifts in ((_sample(2), False), (_sample(3, shifted=True), True)):
        state = StreamState(reference)
        state.update({"c": data})
        verdict = live_check(state, cfg)  # the stacked and the per-column paths agree
        col = verdict.overall.column("c")
        assert col.drift is drifts, (categorical_test, col)
        if not drifts:
            assert col.statistic >= {"auto": cfg.js_threshold, "psi": cfg.psi_threshold}[categorical_test]
