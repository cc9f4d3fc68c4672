"""The dataset verdict rule (raymlops.stats.verdict), the corrections, and both monitors using it."""

from __future__ import annotations

import numpy as np
import pytest

from raymlops.exceptions import ValidationError
from raymlops.stats.drift import correct
from raymlops.stats.verdict import DATASET_RULES, dataset_drift, feature_drift


def test_holm_is_the_step_down_bonferroni() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.005, 0.5])
    m = p.size
    order = np.argsort(p)
    expected = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (m - rank) * p[i])
        expected[i] = min(running, 1.0)
    assert correct(p, "holm") == pytest.approx(expected)
    assert np.all(correct(p, "holm") <= correct(p, "bonferroni"))
    assert np.all(correct(p, "bh") <= correct(p, "holm"))


def test_any_rule_is_family_wise_on_corrected_p_values() -> None:
    p = np.array([0.004, 0.02, 0.3, 0.6])  # Bonferroni: 0.016 < 0.05 for the first only
    adjusted, flags = feature_drift(p, True, False, alpha=0.05, correction="bonferroni")
    assert adjusted == pytest.approx(np.minimum(p * 4, 1.0))
    assert flags.tolist() == [True, False, False, False]
    assert dataset_drift(flags)  # one feature is enough: the correction already paid for the family
    _, none = feature_drift(np.array([0.02, 0.03, 0.3, 0.6]), True, False, alpha=0.05, correction="bonferroni")
    assert not dataset_drift(none)


def test_share_rule_counts_uncorrected_flags() -> None:
    p = np.array([0.015, 0.02, 0.3, 0.6])
    adjusted, flags = feature_drift(p, True, False, alpha=0.05, correction="bonferroni", rule="share")
    assert flags.tolist() == [True, True, False, False]  # raw p < alpha (Evidently's flags)
    assert adjusted == pytest.approx(np.minimum(p * 4, 1.0))  # still reported
    assert dataset_drift(flags, rule="share", share=0.5)
    assert not dataset_drift(flags, rule="share", share=0.75)
    # the old rule (a share of *corrected* flags) would have said no drift here: none survive Bonferroni
    assert not feature_drift(p, True, False, alpha=0.05, correction="bonferroni")[1].any()


def test_distances_decide_where_no_p_value_does_and_shapes_are_kept() -> None:
    p = np.array([[0.9, 0.001], [0.2, 0.9]])
    by_p = np.array([[False, True], [True, True]])
    by_distance = np.array([[True, False], [False, False]])
    adjusted, flags = feature_drift(p, by_p, by_distance, alpha=0.05, correction="bh")
    assert adjusted.shape == flags.shape == (2, 2)
    assert flags.tolist() == [[True, True], [False, False]]
    assert feature_drift(np.empty(0), True, False, alpha=0.05, correction="holm")[1].size == 0
    assert not dataset_drift([]) and not dataset_drift([], rule="share")


def test_bad_rule_is_a_validation_error() -> None:
    assert DATASET_RULES[0] == "any"
    with pytest.raises(ValidationError, match="dataset_rule"):
        dataset_drift([True], rule="majority")
    with pytest.raises(ValidationError, match="dataset_rule"):
        feature_drift([0.1], True, False, alpha=0.05, correction="bonferroni", rule="half")


def test_the_live_monitor_uses_the_same_rule() -> None:
    from raymlops.config import MonitorConfig
    from raymlops.monitor.reference import build_reference
    from raymlops.monitor.state import StreamState
    from raymlops.monitor.verdicts import evaluate

    rng = np.random.default_rng(3)
    names = [f"x{i}" for i in range(8)]
    ref = build_reference({n: rng.normal(size=5_000) for n in names})
    state = StreamState(ref)
    state.update({n: rng.normal(0.6 if n == "x0" else 0.0, 1.0, 500) for n in names})
    any_rule = evaluate(state, MonitorConfig()).overall
    share_rule = evaluate(state, MonitorConfig(dataset_rule="share")).overall
    assert any_rule.drifted == ("x0",) and any_rule.dataset_drift  # one of 8 after Bonferroni: drift
    assert "x0" in share_rule.drifted and not share_rule.dataset_drift  # Evidently's: under half
    flags = [c.drift for c in any_rule.columns]
    assert any_rule.dataset_drift == dataset_drift(flags)
