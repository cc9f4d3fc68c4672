"""raymlops.stats.drift's row-vectorised statistics against scipy's reference implementations:
compare_rows (chi-square, Jensen-Shannon, PSI of every row pair) and ks_p_values (both methods)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from scipy.spatial import distance

from raymlops.exceptions import ValidationError
from raymlops.stats.drift import KS_TAIL_P, compare_rows, ks_binned, ks_p_values


def test_every_row_matches_scipy() -> None:
    rng = np.random.default_rng(5)
    ref = rng.integers(0, 200, size=(30, 12)).astype(float)
    cur = rng.integers(0, 200, size=(30, 12)).astype(float)
    ref[:, 3] = cur[:, 3] = 0  # a bin empty on both sides is dropped by chi-square
    cur[4, 5] = 0  # a bin empty on one side still counts
    ref[6, 2:] = 0
    cur[6, 2:] = 0  # 2 bins left
    ref[7, 1:] = cur[7, 1:] = 0  # 1 bin left: (0, 1)
    cur[8] = 0  # an empty side: NaN (p-value 1)
    chi, p, js, psi = compare_rows(ref, cur)
    for i in range(ref.shape[0]):
        r, c = ref[i], cur[i]
        if c.sum() == 0:
            assert np.isnan(chi[i]) and p[i] == 1.0 and np.isnan(js[i]) and np.isnan(psi[i])
            continue
        keep = (r > 0) | (c > 0)
        if keep.sum() < 2:
            assert (chi[i], p[i]) == (0.0, 1.0)
        else:
            expected = stats.chi2_contingency(np.vstack([r[keep], c[keep]]), correction=False)
            assert chi[i] == pytest.approx(expected.statistic, rel=1e-10)
            assert p[i] == pytest.approx(expected.pvalue, rel=1e-8, abs=1e-300)
        assert js[i] == pytest.approx(distance.jensenshannon(r / r.sum(), c / c.sum(), base=2), abs=1e-10)
        pr, qc = np.clip(r / r.sum(), 1e-4, None), np.clip(c / c.sum(), 1e-4, None)
        assert psi[i] == pytest.approx(np.sum((qc - pr) * np.log(qc / pr)), rel=1e-12)
        # one row alone gives the same numbers
        one = compare_rows(r, c)
        assert [float(x) for x in one] == pytest.approx([chi[i], p[i], js[i], psi[i]], rel=1e-12)


@pytest.mark.parametrize(("n", "m", "shift"), [(20_000, 15_000, 0.02), (30_000, 12_000, 0.0), (50_000, 20_000, 0.05)])
def test_smirnov_p_values_are_ks_2samp_above_its_exact_range(n: int, m: int, shift: float) -> None:
    rng = np.random.default_rng(n + m)
    res = stats.ks_2samp(rng.normal(size=n), rng.normal(shift, 1.0, size=m))
    assert float(ks_p_values(res.statistic, n, m)) == pytest.approx(res.pvalue, rel=1e-9)


@pytest.mark.parametrize(("n", "m", "shift"), [(10_000, 500, 0.1), (10_000, 5_000, 0.1), (2_000, 50, 0.0)])
def test_stephens_p_values_are_close_to_ks_2samp(n: int, m: int, shift: float) -> None:
    rng = np.random.default_rng(n + m)
    res = stats.ks_2samp(rng.normal(size=n), rng.normal(shift, 1.0, size=m))
    assert float(ks_p_values(res.statistic, n, m, method="stephens")) == pytest.approx(res.pvalue, abs=0.01, rel=0.1)


def test_ks_p_values_are_elementwise_and_handle_empty_samples() -> None:
    rng = np.random.default_rng(2)
    d = rng.random(20) * 0.2
    n, m = rng.integers(1, 5_000, 20), rng.integers(1, 5_000, 20)
    for method in ("smirnov", "stephens"):
        many = ks_p_values(d, n, m, method=method)
        assert many.tolist() == pytest.approx([float(ks_p_values(a, b, c, method=method))
                                              for a, b, c in zip(d, n, m, strict=True)], rel=1e-12)
        assert ((many >= 0) & (many <= 1)).all()
    assert ks_p_values([0.3, 0.3], [0, 10], [10, 0]).tolist() == [1.0, 1.0]
    with pytest.raises(ValidationError, match="method"):
        ks_p_values(0.1, 10, 10, method="exact")


def test_far_tail_smirnov_p_values_are_within_1pc_of_kstwo() -> None:
    n = 1_000_000
    d = np.array([0.0005, 0.001, 0.002, 0.003, 0.0045, 0.006, 0.01])
    ours = ks_p_values(d, n, n)
    theirs = stats.kstwo.sf(d, n // 2)
    above = theirs >= 10 * KS_TAIL_P
    assert above.sum() >= 4 and (~above).sum() >= 2
    np.testing.assert_array_equal(ours[above], theirs[above])  # the exact distribution where it can matter
    np.testing.assert_allclose(ours[~above], theirs[~above], rtol=0.01)  # the limiting one far in the tail
    assert (ours[~above] < 1e-8).all()


def test_binned_ks_on_small_samples_is_ks_2samp_exactly() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 30, 400), rng.integers(2, 32, 300)  # every value its own bin
    ref, cur = np.bincount(a, minlength=32), np.bincount(b, minlength=32)
    expected = stats.ks_2samp(a, b)  # both small: scipy's exact method
    d, p = ks_binned(ref, cur)
    assert d == pytest.approx(expected.statistic, rel=1e-12) and p == pytest.approx(expected.pvalue, rel=1e-9)
