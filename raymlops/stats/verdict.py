"""The dataset-level drift verdict: one rule, used by every check (offline, snapshot, live).

Per-feature tests give one p-value each (or a distance, when a distance decides); the dataset
verdict combines them. Two rules, chosen by ``dataset_rule``:

``any`` (the default): a family-wise decision, as alibi-detect makes it. The p-values of the
    family (the features of a dataset, or every (slice, feature) test of a sliced check) are
    corrected for multiple testing (``correction``: ``bonferroni`` or ``holm`` bound the
    family-wise error rate, ``bh`` bounds the false discovery rate instead); a feature drifts when
    its corrected p-value is below ``alpha``, and the dataset drifts when **any** feature does.
    Under no drift the chance of a false dataset alarm is then at most ``alpha`` (Bonferroni,
    Holm), which is what a significance level promises.
``share``: Evidently's rule: a feature drifts when its **uncorrected** p-value is below
    ``alpha``, and the dataset drifts when at least ``share`` of the features do. The share
    already tolerates the false alarms of single features, so the p-values are not corrected
    (correcting them as well pays for multiplicity twice: with 64 features Bonferroni asks
    ``p < alpha / 64`` of each, and the share rule then asks that of half of them; that lost a
    real shift of the digits dataset that both alibi-detect and Evidently report).

A feature decided by a distance (Wasserstein, Jensen-Shannon, PSI at a threshold) drifts when the
distance reaches its threshold under either rule: a distance is an effect size, not a test, so
there is nothing to correct. The corrected p-values are reported under both rules. One exception
(:func:`distance_drifted`): a distance over categories (Jensen-Shannon, PSI of a categorical or
discrete column) also needs its chi-square p-value below ``alpha``. The sampling noise of those
distances grows with the number of levels: two samples of 2,000 rows of one uniform 100-level
category are 0.13 apart in Jensen-Shannon distance (chi-square p 0.72), over the 0.1 threshold,
so every city, zip code or product id column would drift on every check.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from raymlops.exceptions import ValidationError
from raymlops.stats.drift import CORRECTIONS, correct

__all__ = ["CATEGORY_DISTANCES", "DATASET_RULES", "dataset_drift", "deciding_test", "distance_drifted",
           "feature_drift", "feature_drift_families", "quality_checks", "quality_limits", "scaled_test",
           "share_beyond_noise"]

_KNOWN = (*CORRECTIONS, "none")
#: the dataset rules :func:`dataset_drift` knows (the first is the default)
DATASET_RULES: tuple[str, ...] = ("any", "share")


#: distances whose noise grows with the number of categories (both spellings: the monitor's, the snapshot check's)
CATEGORY_DISTANCES = frozenset({"js", "jensenshannon", "psi"})


def distance_drifted(test: str, value: float, threshold: float, *, categories: bool, p_value: float,
                     alpha: float) -> bool:
    """Whether a distance decides drift: it reaches ``threshold``, and, for a distance over
    categories (``categories``: a categorical or discrete column, ``test`` in
    :data:`CATEGORY_DISTANCES`), the column's chi-square ``p_value`` is below ``alpha`` too, so that
    sampling noise alone never drifts (module docstring). NaN values drift nowhere."""
    if not (value >= threshold):  # also NaN
        return False
    return not (categories and test in CATEGORY_DISTANCES) or bool(p_value < alpha)


def _rule(rule: str) -> None:
    if rule not in DATASET_RULES:
        raise ValidationError(f"dataset_rule must be one of {', '.join(DATASET_RULES)}, got {rule!r}")


def _flags(values: npt.ArrayLike, shape: tuple[int, ...]) -> npt.NDArray[np.bool_]:
    """``values`` as booleans of ``shape`` (broadcast only when they are not of it already:
    ``np.broadcast_to`` costs more than the rest of a small family's correction)."""
    flags = np.asarray(values, dtype=bool)
    return flags if flags.shape == shape else np.broadcast_to(flags, shape)


def _clean(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """p-values for the correction: NaN counts as 1, the rest clipped to [0, 1]. The same values as
    ``np.clip(np.nan_to_num(p, nan=1.0), 0.0, 1.0)`` (an infinity clips to the bound that
    nan_to_num's largest double would), without nan_to_num's cost."""
    return np.where(np.isnan(p), 1.0, np.clip(p, 0.0, 1.0))


def feature_drift(p_values: npt.ArrayLike, by_p_value: npt.ArrayLike, by_distance: npt.ArrayLike, *,
                  alpha: float, correction: str, rule: str = "any"
                  ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """``(adjusted p-values, drifted)`` of one family of tests, any shape (flattened for the
    correction, returned in the input's shape). ``by_p_value``: where the p-value decides;
    elsewhere ``by_distance`` (a distance at its threshold) does. ``correction``: one of
    :data:`raymlops.stats.drift.CORRECTIONS` or ``none``. Under ``rule="any"`` a p-value test
    drifts when its adjusted p-value is below ``alpha``; under ``"share"`` when its raw one is."""
    _rule(rule)
    p = np.asarray(p_values, dtype=np.float64)
    if p.size == 1 and correction in _KNOWN:  # one test: every correction leaves its p-value as it is
        return _one_test(p, by_p_value, by_distance, alpha)
    use_p, dist = _flags(by_p_value, p.shape), _flags(by_distance, p.shape)
    if p.size == 0:
        return p.copy(), np.zeros(p.shape, dtype=bool)
    clean = _clean(p)
    adjusted = clean if correction == "none" else correct(clean.ravel(), correction).reshape(p.shape)
    decisive = adjusted if rule == "any" else clean
    return adjusted, np.where(use_p, decisive < alpha, dist)


def _one_test(p: npt.NDArray[np.float64], by_p_value: npt.ArrayLike, by_distance: npt.ArrayLike, alpha: float
              ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """:func:`feature_drift` of a family of one test, without the whole-array machinery (the
    prediction verdict of every window): NaN counts as 1, the p-value is clipped to [0, 1], and
    Bonferroni, Holm and Benjamini-Hochberg of one p-value are that p-value (times 1, capped at 1)."""
    x = float(p.reshape(-1)[0])
    clean = 1.0 if x != x else min(max(x, 0.0), 1.0)
    use_p = bool(np.asarray(by_p_value, dtype=bool).reshape(-1)[0])
    flag = clean < alpha if use_p else bool(np.asarray(by_distance, dtype=bool).reshape(-1)[0])
    return np.full(p.shape, clean), np.full(p.shape, flag, dtype=bool)


def feature_drift_families(p_values: npt.ArrayLike, by_p_value: npt.ArrayLike, by_distance: npt.ArrayLike,
                           families: list[tuple[int, int]], *, alpha: float, correction: str, rule: str = "any"
                           ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """:func:`feature_drift` of several families at once: ``families`` are ``(start, stop)``
    ranges of rows of the 2-D inputs (consecutive, covering every row), each family the tests
    of its rows, corrected alone. The same values as one :func:`feature_drift` call per family;
    Bonferroni (and no correction) in whole-array passes over every family, the others a call
    per family."""
    _rule(rule)
    p = np.asarray(p_values, dtype=np.float64)
    use_p, dist = _flags(by_p_value, p.shape), _flags(by_distance, p.shape)
    if p.ndim != 2 or sum(b - a for a, b in families) != p.shape[0]:
        raise ValidationError(f"families {families} do not cover the {p.shape[0]} rows of p_values")
    if correction not in ("bonferroni", "none") or p.size == 0:
        parts = [feature_drift(p[a:b], use_p[a:b], dist[a:b], alpha=alpha, correction=correction, rule=rule)
                 for a, b in families]
        if not parts:
            return p.copy(), np.zeros(p.shape, dtype=bool)
        return np.concatenate([x for x, _ in parts]), np.concatenate([f for _, f in parts])
    clean = _clean(p)
    if correction == "none":
        adjusted = clean
    else:  # each p-value times its family's number of tests (as correct(..., "bonferroni"))
        sizes = np.array([b - a for a, b in families], dtype=np.int64)
        tests = np.repeat((sizes * p.shape[1]).astype(np.float64), sizes)
        adjusted = np.minimum(clean * tests[:, None], 1.0)
    decisive = adjusted if rule == "any" else clean
    return adjusted, np.where(use_p, decisive < alpha, dist)


def dataset_drift(drifted: npt.ArrayLike, *, rule: str = "any", share: float = 0.5) -> bool:
    """The dataset verdict from the features' flags (:func:`feature_drift`): ``any`` flag, or
    (``rule="share"``) at least ``share`` of them. No features: no drift."""
    _rule(rule)
    if isinstance(drifted, list) and all(type(f) is bool for f in drifted):  # the usual case, without numpy
        if not drifted:
            return False
        return any(drifted) if rule == "any" else sum(drifted) / len(drifted) >= share
    flags = np.asarray(drifted, dtype=bool).ravel()
    if flags.size == 0:
        return False
    if rule == "any":
        return bool(flags.any())
    return bool(flags.mean() >= share)


def deciding_test(kind: str, small: bool, cfg: Any) -> str:
    """The test that decides a column, offline and live (``cfg``: a MonitorConfig; ``small``: either sample,
    the reference's or the current one, has at most ``small_window_rows`` rows). ``auto`` is
    Evidently's choice: a p-value test (KS, or chi-square for categories) on small samples, a
    distance (Wasserstein, Jensen-Shannon) on larger ones. A small reference counts as much as a
    small window: the distance of a 10-row sample to its own population is 0.3-0.4 standard
    deviations by chance (and the deviation it is scaled by is a 10-row estimate), which drifted 38
    of 50 unchanged columns at 100 reference rows against 5,000 current ones. A ``discrete`` column
    (integers on a few values) gets chi-square on its support while
    p-values mean something, then the numeric distance, as the live monitor and Evidently judge
    integer columns (Jensen-Shannon at 0.1 flagged two samples of one uniform 18-59 age at 1,500
    rows); ``categorical_test``, when set, decides it as a category."""
    if kind == "continuous" or kind == "numeric":
        return cfg.numeric_test if cfg.numeric_test != "auto" else ("ks" if small else "wasserstein")
    if kind == "discrete" and cfg.categorical_test == "auto":
        return "chi2" if small else "psi" if cfg.numeric_test == "psi" else "wasserstein"
    return cfg.categorical_test if cfg.categorical_test != "auto" else ("chi2" if small else "js")


def scaled_test(test: str, constant: bool, discrete: bool) -> str:
    """``test``, or, where it is the normalised Wasserstein distance and the reference column is
    constant (``constant``: no spread to divide the distance by), the column's p-value test: KS, or
    chi-square for a ``discrete`` column. 0.123 in every reference row and 0.124 in every current
    one is a raw distance of 0.001, under the 0.1 threshold, though every value moved (KS 1)."""
    if test == "wasserstein" and constant:
        return "chi2" if discrete else "ks"
    return test


def share_beyond_noise(k: int, n: int, limit: float, level: float = 0.01) -> bool:
    """Whether ``k`` of ``n`` values past a data-quality limit is more than a small sample's
    noise: the chance of at least ``k`` were the share the ``limit``, under ``level`` (binomial
    upper tail; 5 of 50 values outside at a limit of 8.9 % is a 43 % chance). Exact up to 5,000
    values, the normal approximation with a continuity correction above."""
    if n <= 0 or k <= 0:
        return n > 0 and k > 0
    if n > 5000:
        z = (k - 0.5 - n * limit) / math.sqrt(n * limit * (1 - limit))
        return 0.5 * math.erfc(z / math.sqrt(2)) < level
    log_p, log_q = math.log(limit), math.log1p(-limit)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
             for i in range(k, n + 1)]
    top = max(terms)
    return top + math.log(sum(math.exp(t - top) for t in terms)) < math.log(level)


def quality_limits(cfg: Any) -> tuple[float, float, float]:
    """The data-quality limits of monitor settings (:class:`raymlops.config.MonitorConfig`), in
    the order :func:`quality_checks` takes them."""
    return cfg.max_missing_rate_increase, cfg.max_out_of_range_rate, cfg.max_unseen_rate


def quality_checks(missing_rate: float, ref_missing_rate: float, out_of_range_rate: float, unseen_rate: float,
                   limits: tuple[float, float, float], reference_values: int | None = None,
                   unseen_expected: float = 0.0) -> list[tuple[str, float, float]]:
    """``(what, value, limit)`` of each data-quality limit a column is past: ``missing`` (its
    missing rate's increase over the reference's), ``out_of_range`` (the share of values outside
    the reference's range), ``unseen`` (the share of categories the reference does not have); a
    NaN rate is past none. The one rule of the live monitor's anomaly alerts and of the offline
    check's data-quality findings. ``reference_values``: the
    reference's values of the column, when known; of a fresh sample of the same distribution about
    ``2 / (n + 1)`` falls outside the range of ``n`` values, so that share is added to the
    out-of-range limit (50 reference rows: 4 %, which a 5 % limit alone flagged on a third of the
    unchanged columns). ``unseen_expected``: the share of new categories a fresh sample of the
    reference's distribution would have (its categories seen once, over its values: Good-Turing),
    added to the unseen limit (1.7 % unseen of an unchanged 5,000-level column passed a 1 % limit)."""
    values = (missing_rate - ref_missing_rate, out_of_range_rate, unseen_rate)
    if reference_values:
        limits = (limits[0], limits[1] + 2.0 / (reference_values + 1), limits[2] + unseen_expected)
    return [(what, float(value), limit) for what, value, limit in zip(("missing", "out_of_range", "unseen"), values,
                                                                        limits, strict=True)
            if value > limit and math.isfinite(value)]
