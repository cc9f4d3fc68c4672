"""raymlops.stats.counts: the fast count statistics agree with raymlops.stats.drift and scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from raymlops.stats import chi2_test, jensen_shannon, psi
from raymlops.stats.counts import chi2_counts, js_counts, ks_p_value, psi_counts


@pytest.mark.parametrize("seed", range(5))
def test_count_statistics_match_the_validated_ones(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, 200, 12).astype(float), rng.integers(0, 200, 12).astype(float)
    a[3] = b[3] = 0  # a bin empty on both sides is dropped by chi-square
    b[5] = 0
    assert chi2_counts(a, b) == pytest.approx(chi2_test(a, b), rel=1e-9)
    assert js_counts(a, b) == pytest.approx(jensen_shannon(a, b), rel=1e-9)
    assert psi_counts(a, b) == pytest.approx(psi(a, b), rel=1e-9)
    assert chi2_counts(np.array([5.0, 0.0]), np.array([7.0, 0.0])) == (0.0, 1.0)


@pytest.mark.parametrize(("n", "m", "shift"), [(10_000, 500, 0.1), (10_000, 5_000, 0.1), (2_000, 50, 0.0)])
def test_ks_p_value_is_close_to_scipy(n: int, m: int, shift: float) -> None:
    rng = np.random.default_rng(n + m)
    exact = stats.ks_2samp(rng.normal(size=n), rng.normal(shift, 1.0, size=m))
    assert ks_p_value(exact.statistic, n, m) == pytest.approx(exact.pvalue, abs=0.01, rel=0.1)
