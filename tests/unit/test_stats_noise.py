"""raymlops.stats.noise: the z-tests behind the monitor's per-slice performance verdicts."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from raymlops.stats.noise import accuracy_drop_beyond_noise, auc_drop_beyond_noise, auc_standard_error, critical_z


def test_critical_z_is_bonferronis() -> None:
    assert critical_z(1) == pytest.approx(1.6449, abs=1e-4)
    assert critical_z(10) == pytest.approx(2.5758, abs=1e-4)  # 0.5 % one-sided
    assert critical_z(0) == critical_z(1)


def test_auc_standard_error_matches_the_spread_of_simulated_aucs() -> None:
    rng = np.random.default_rng(0)
    pos, neg = 40, 60
    aucs = []
    for _ in range(2000):
        scores = np.concatenate([rng.normal(1.2, 1, pos), rng.normal(0, 1, neg)])
        aucs.append(roc_auc_score(np.r_[np.ones(pos), np.zeros(neg)], scores))
    mean = float(np.mean(aucs))
    assert auc_standard_error(mean, pos, neg) == pytest.approx(float(np.std(aucs)), rel=0.15)
    assert auc_standard_error(0.8, 0, 10) == float("inf")


def test_drops_within_and_beyond_noise() -> None:
    # 0.887 of 53 vs 0.717 of 60: beyond noise at 5 % alone, within it over ten checks
    assert accuracy_drop_beyond_noise(0.887, 53, 0.717, 60) and not accuracy_drop_beyond_noise(
        0.887, 53, 0.717, 60, critical_z(10))
    assert not accuracy_drop_beyond_noise(0.8, 50, 0.85, 50)  # a rise is no drop
    assert auc_drop_beyond_noise(0.95, 500, 500, 0.80, 500, 500)
    assert not auc_drop_beyond_noise(0.94, 25, 28, 0.78, 30, 30, critical_z(10))
