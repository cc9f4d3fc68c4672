"""Randomised exact p-values of the offline tests (pure numpy/scipy, no Ray).

A test statistic of finite samples takes finitely many values: two-sample KS on ``n`` and ``m``
values at most ``n m``, chi-square on a sparse table a handful. Its exact p-value ``P(T >= t)``
then sits on those atoms. It is valid (``P(p <= a) <= a`` under no drift) but not uniform: below
``a`` less often than ``a`` (on 200 random halvings of each dataset scikit-learn ships, 3.7-4.6 % of
the p-values fell below 0.05, their mean 0.51-0.53), so every column's test is conservative and a
family-wise or false-discovery decision over them loses power.

The randomised p-value ``P(T > t) + U P(T = t)``, ``U`` uniform on [0, 1] (Lancaster's construction;
Habiger and Pena 2011 for its use with multiple tests), is exactly uniform under the null and never
above ``P(T >= t)``: a test at level ``a`` then has size exactly ``a``. Here ``U`` is not drawn from
a random source but from a hash (:func:`data_uniform`) of what the test sees: KS's pooled order
(which sample each sorted value came from, and the ties), chi-square's table. The same data
always gives the same p-value, whatever its row order (and, for KS, whatever monotone change of
units); a changed row moves ``U``, as it may move ``t``. The check's JSON has both (``p_value``,
and ``p_value_upper``: ``P(T >= t)``). ``MonitorConfig.p_values: conservative`` reports what the
tests gave before: KS's ``P(D >= d)`` (scipy's ``ks_2samp`` without ties) and chi-square's
asymptotic p-value (scipy's ``chi2_contingency``), which the live monitor also reports.

Where the exact law of ``t`` is known:

- KS with at most ``KS_EXACT_MAX_N`` values per sample: ``P(D >= d)`` and ``P(D > d)`` of the
  permutation null given the ties (:mod:`raymlops.stats.ks_ties`).
- Chi-square on a 2 x k table with an expected count below 5 (Cochran's rule: there the
  asymptotic law is poor and the statistic lumpy): the permutation null, by drawing the current
  sample's counts ``draws`` times from the multivariate hypergeometric law given both margins
  (:func:`chi2_permutation`; the same draws for the same table). The observed table counts as
  one of the ``draws + 1`` tables, so the p-value is exactly uniform for any number of draws.
  Where fewer than ``MIN_EXCEEDING`` draws reach ``t`` (a p-value below about 5e-4 with the
  default draws), the draws cannot tell its size, and the asymptotic p-value
  (``chi2_contingency``'s) is reported: a strong drift keeps the p-value its size says (1e-40,
  not "below 1/20,001"), which a correction for many columns needs.
- A statistic of 0 (both samples' shares or ECDFs equal) keeps ``P(T >= 0) = 1``: a column with
  the same values on both sides, constant ones included, is never flagged by a draw of ``U``.
- Elsewhere (larger samples, chi-square meeting Cochran's rule) the atoms are negligible and the
  p-value is the asymptotic one, as before.
"""

from __future__ import annotations

import hashlib

import numpy as np
import numpy.typing as npt

__all__ = ["DRAWS", "MIN_EXCEEDING", "chi2_permutation", "data_uniform", "sparse_rows", "within_atom"]

FloatArray = npt.NDArray[np.float64]

#: permutation draws of a sparse chi-square table
DRAWS = 20_000
#: fewer draws at or above the observed statistic: the asymptotic p-value (see the module docstring)
MIN_EXCEEDING = 10


def _digest(*arrays: npt.ArrayLike) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for arr in arrays:
        a = np.ascontiguousarray(np.asarray(arr, dtype=np.float64))
        h.update(a.size.to_bytes(8, "little"))
        h.update(a.tobytes())
    return h.digest()


def data_uniform(*arrays: npt.ArrayLike) -> float:
    """A number in [0, 1) fixed by the arrays' values: the ``U`` of a randomised p-value, the same
    for the same data."""
    return int.from_bytes(_digest(*arrays)[:8], "little") / 2.0**64


def within_atom(at_least: float, above: float, u: float) -> float:
    """``P(T > t) + u P(T = t)`` from ``P(T >= t)`` and ``P(T > t)``."""
    above = min(max(above, 0.0), at_least)
    return above + u * (at_least - above)


def sparse_rows(ref: npt.ArrayLike, cur: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Per row pair of count arrays (last axis: categories): whether some category's expected
    count under no drift is below 5 (Cochran's rule) while both sides have values."""
    r, c = np.asarray(ref, dtype=np.float64), np.asarray(cur, dtype=np.float64)
    col = r + c
    n_r, n_c = r.sum(axis=-1, keepdims=True), c.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = col * (np.minimum(n_r, n_c) / (n_r + n_c))
    low = np.where(col > 0, expected, np.inf).min(axis=-1) < 5
    return low & (n_r[..., 0] > 0) & (n_c[..., 0] > 0) & ((col > 0).sum(axis=-1) >= 2)


def _chi2_of(cur: FloatArray, col: FloatArray, n_r: float, n_c: float) -> FloatArray:
    """Pearson's statistic of the tables whose current counts are the rows of ``cur`` (margins
    ``col``, ``n_r``, ``n_c``; categories with ``col > 0`` only): ``(x - e)^2 N^2 / (col n_r n_c)``
    summed, the reference's term folded in (its deviation is the opposite of the current's)."""
    total = n_r + n_c
    expected = col * (n_c / total)
    return np.asarray(((cur - expected) ** 2 / col).sum(axis=-1) * (total * total / (n_r * n_c)), dtype=np.float64)


def chi2_permutation(ref: npt.ArrayLike, cur: npt.ArrayLike, asymptotic: float, randomise: bool = True,
                     draws: int = DRAWS) -> tuple[float, float]:
    """``(p_value, p_value_upper)`` of the chi-square test of one 2 x k table (``ref``, ``cur``:
    the two samples' counts over the same categories) under its permutation null, by ``draws``
    multivariate hypergeometric draws seeded by the table (see the module docstring);
    ``asymptotic``: the table's asymptotic p-value, reported where the draws cannot size it."""
    r, c = np.asarray(ref, dtype=np.float64), np.asarray(cur, dtype=np.float64)
    keep = (r + c) > 0
    r, c = r[keep], c[keep]
    col = r + c
    n_r, n_c = float(r.sum()), float(c.sum())
    if col.size < 2 or n_r == 0 or n_c == 0:
        return asymptotic, asymptotic
    digest = _digest(r, c)
    rng = np.random.default_rng(int.from_bytes(digest[8:], "little"))
    sampled = rng.multivariate_hypergeometric(col.astype(np.int64), int(n_c), size=draws, method="marginals")
    observed = float(_chi2_of(c[None, :], col, n_r, n_c)[0])
    stats = _chi2_of(sampled.astype(np.float64), col, n_r, n_c)
    tol = 1e-9 * max(observed, 1.0)  # one table, two summation orders: equal statistics within rounding
    above = int(np.count_nonzero(stats > observed + tol))
    equal = int(np.count_nonzero(np.abs(stats - observed) <= tol))
    if above + equal < MIN_EXCEEDING or observed <= tol:  # beyond the draws' resolution; or equal shares
        return asymptotic, asymptotic
    upper = (above + equal + 1) / (draws + 1)
    if not randomise:
        return upper, upper
    u = int.from_bytes(digest[:8], "little") / 2.0**64
    return (above + u * (equal + 1)) / (draws + 1), upper
