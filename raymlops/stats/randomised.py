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
a random source but from a hash of both samples' values in their row order (:func:`data_digest`),
so the same data always gives the same p-value. A hash of the statistic's sufficient part alone
(the table of a chi-square test, the pooled order of KS) would not do: a column with a rare value
has a handful of possible tables, each would always get the same ``U``, and the p-values would
not be randomised at all (a pixel of scikit-learn's digits that is 1 in 2 of 1,797 rows was then
flagged in a quarter of random halvings). So rows in another order (or a changed row) move ``U``
within the atom, where the data's own order is as arbitrary as a draw. The check's JSON has both
(``p_value``, and ``p_value_upper``: ``P(T >= t)``). ``MonitorConfig.p_values: conservative`` reports what the
tests gave before: KS's ``P(D >= d)`` (scipy's ``ks_2samp`` without ties) and chi-square's
asymptotic p-value (scipy's ``chi2_contingency``), which the live monitor also reports.

Where the exact law of ``t`` is known:

- KS with at most ``KS_EXACT_MAX_N`` values per sample: ``P(D >= d)`` and ``P(D > d)`` of the
  permutation null given the ties (:mod:`raymlops.stats.ks_ties`).
- Chi-square on a 2 x k table of at most ``KS_EXACT_MAX_N`` values a side, or with an expected
  count below 5 (Cochran's rule), where the asymptotic law is poor: a boolean column with 10
  positives in 120 rows was flagged in 7.8 % of no-drift halvings at 0.05 by ``chi2_contingency``,
  and that test's size reaches 9.5 % at 60 rows a side. The permutation null instead, by drawing the
  current sample's counts ``draws`` times from the multivariate hypergeometric law given both
  margins (:func:`chi2_permutation`; the draws seeded by the table, ``U`` by the rows). A draw
  costs a pass over the categories, so a table of ``k`` categories gets at most
  ``DRAW_BUDGET / k`` draws (at least 1,999: 0.2 s), and one of more than
  ``MAX_PERMUTED_CATEGORIES`` (1,000: an id column) keeps the asymptotic p-value. The observed table counts as
  one of the ``draws + 1`` tables, so the p-value is exactly uniform for any number of draws.
  Where fewer than ``MIN_EXCEEDING`` draws reach ``t`` (a p-value below about 5e-4), the p-value
  is where a correction for many columns decides (0.05 / 64 features is 7.8e-4), and there the
  asymptotic law of a sparse table can be off by a factor of ten either way: ``MORE_DRAWS`` more
  are drawn, and the p-value is the permutation one of all of them (steps of 1 / 220,001:
  enough for a correction over 10,000 columns). Where the asymptotic p-value is below ``FAR_TAIL``
  (1e-8) and the first draws cannot size it, the asymptotic p-value (``chi2_contingency``'s) is
  reported instead: a strong drift keeps the p-value its size says (1e-40, not "4e-6").
- A statistic whose null law is one atom (a column with one value in both samples: every
  assignment gives ``D = 0``) has p-value 1: there is nothing to randomise, and ``U`` alone must
  not flag it.
- Elsewhere (larger samples meeting Cochran's rule) the atoms are negligible and the p-value is
  the asymptotic one, as before.

A randomised p-value alone never flags a column: the offline check flags one only where
``P(T >= t)``, corrected as the p-values are, is below twice ``alpha`` too (so one rare row in
300, whose table's law is a single atom below the observed, is no drift however ``U`` falls). The
p-values stay uniform; the verdict's size stays at most ``alpha``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DRAWS", "FAR_TAIL", "MAX_PERMUTED_CATEGORIES", "MIN_EXCEEDING", "MORE_DRAWS", "chi2_permutation",
           "data_digest", "permuted_rows", "uniform_of", "within_atom"]

FloatArray = npt.NDArray[np.float64]

#: permutation draws of a sparse chi-square table
DRAWS = 20_000
#: fewer first draws at or above the observed statistic: more draws, or the asymptotic p-value (module docstring)
MIN_EXCEEDING = 10
#: the second round of draws, for a p-value in the tail where corrections decide
MORE_DRAWS = 200_000
#: an asymptotic p-value below this: reported as it is where the first draws cannot size it
FAR_TAIL = 1e-8
_CHUNK = 50_000
#: a table of more categories keeps the asymptotic p-value (a draw costs a pass over the categories)
MAX_PERMUTED_CATEGORIES = 1000
#: categories x draws of one table's first round (about 0.2 s), and of its second: fewer draws for many categories
DRAW_BUDGET, MORE_DRAW_BUDGET = 2_000_000, 10_000_000


def data_digest(*arrays: Any) -> bytes:
    """A 16-byte hash of the arrays' values in their order: numpy arrays (their bytes), or pyarrow
    arrays (their buffers: values, offsets and validity, as read)."""
    h = hashlib.blake2b(digest_size=16)
    for arr in arrays:
        chunks = getattr(arr, "chunks", None)
        if chunks is not None or hasattr(arr, "buffers"):  # pyarrow
            for chunk in chunks if chunks is not None else [arr]:
                h.update(b"%d:%d:" % (len(chunk), chunk.offset))
                for buf in chunk.buffers():
                    if buf is not None:
                        h.update(memoryview(buf))
            continue
        a = np.ascontiguousarray(np.asarray(arr))
        h.update(b"%s:%d:" % (a.dtype.str.encode(), a.size))
        h.update(a.tobytes() if a.dtype != object else repr(a.tolist()).encode())
    return h.digest()


def uniform_of(digest: bytes) -> float:
    """The ``U`` in [0, 1) of a randomised p-value, from :func:`data_digest`."""
    return int.from_bytes(digest[:8], "little") / 2.0**64


def within_atom(at_least: float, above: float, u: float) -> float:
    """``P(T > t) + u P(T = t)`` from ``P(T >= t)`` and ``P(T > t)``."""
    above = min(max(above, 0.0), at_least)
    return above + u * (at_least - above)


def permuted_rows(ref: npt.ArrayLike, cur: npt.ArrayLike, max_values: int) -> npt.NDArray[np.bool_]:
    """Per row pair of count arrays (last axis: categories): whether its chi-square test takes the
    permutation law: both sides have values, two categories or more, and either both samples hold
    at most ``max_values`` values (as KS is exact up to there) or some category's expected count
    under no drift is below 5 (Cochran's rule)."""
    r, c = np.asarray(ref, dtype=np.float64), np.asarray(cur, dtype=np.float64)
    col = r + c
    n_r, n_c = r.sum(axis=-1, keepdims=True), c.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = col * (np.minimum(n_r, n_c) / (n_r + n_c))
    low = np.where(col > 0, expected, np.inf).min(axis=-1) < 5
    small = (n_r[..., 0] <= max_values) & (n_c[..., 0] <= max_values)
    k = (col > 0).sum(axis=-1)
    return (low | small) & (n_r[..., 0] > 0) & (n_c[..., 0] > 0) & (k >= 2) & (k <= MAX_PERMUTED_CATEGORIES)


def _chi2_of(cur: FloatArray, col: FloatArray, n_r: float, n_c: float) -> FloatArray:
    """Pearson's statistic of the tables whose current counts are the rows of ``cur`` (margins
    ``col``, ``n_r``, ``n_c``; categories with ``col > 0`` only): ``(x - e)^2 N^2 / (col n_r n_c)``
    summed, the reference's term folded in (its deviation is the opposite of the current's)."""
    total = n_r + n_c
    expected = col * (n_c / total)
    return np.asarray(((cur - expected) ** 2 / col).sum(axis=-1) * (total * total / (n_r * n_c)), dtype=np.float64)


def chi2_permutation(ref: npt.ArrayLike, cur: npt.ArrayLike, asymptotic: float, u: float | None = None,
                     draws: int = DRAWS, more_draws: int = MORE_DRAWS) -> tuple[float, float]:
    """``(p_value, p_value_upper)`` of the chi-square test of one 2 x k table (``ref``, ``cur``:
    the two samples' counts over the same categories) under its permutation null, by ``draws``
    multivariate hypergeometric draws, ``more_draws`` more in the tail (see the module docstring);
    ``asymptotic``: the table's asymptotic p-value, reported where the draws cannot size it;
    ``u``: the ``U`` of the randomised p-value (:func:`uniform_of` the two samples' values; by
    default of the table). The draws are seeded by the table, so ``P(T >= t)`` is the same for the
    same table whatever the rows' order or type."""
    r, c = np.asarray(ref, dtype=np.float64), np.asarray(cur, dtype=np.float64)
    keep = (r + c) > 0
    r, c = r[keep], c[keep]
    col = r + c
    n_r, n_c = float(r.sum()), float(c.sum())
    if col.size < 2 or n_r == 0 or n_c == 0:
        return asymptotic, asymptotic
    digest = data_digest(r, c)
    rng = np.random.default_rng(int.from_bytes(digest[8:], "little"))
    # the draws' cost grows with the categories: fewer draws for many (still exact, coarser steps)
    draws = min(draws, max(1999, DRAW_BUDGET // col.size))
    more_draws = min(more_draws, MORE_DRAW_BUDGET // col.size)
    observed = float(_chi2_of(c[None, :], col, n_r, n_c)[0])
    tol = 1e-9 * max(observed, 1.0)  # one table, two summation orders: equal statistics within rounding
    above = equal = total = 0
    for budget in (draws, more_draws):
        while budget > 0:
            size = min(budget, _CHUNK)
            sampled = rng.multivariate_hypergeometric(col.astype(np.int64), int(n_c), size=size, method="marginals")
            stats = _chi2_of(sampled.astype(np.float64), col, n_r, n_c)
            above += int(np.count_nonzero(stats > observed + tol))
            equal += int(np.count_nonzero(np.abs(stats - observed) <= tol))
            budget, total = budget - size, total + size
        if above + equal >= MIN_EXCEEDING or asymptotic < FAR_TAIL:
            break
    if above + equal < MIN_EXCEEDING and asymptotic < FAR_TAIL:  # a strong drift: the size its law says
        return asymptotic, asymptotic
    draws = total
    upper = (above + equal + 1) / (draws + 1)
    return (above + (uniform_of(digest) if u is None else u) * (equal + 1)) / (draws + 1), upper
