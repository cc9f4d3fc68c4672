"""Whether a drop in a labelled metric is beyond sampling noise (pure; no numpy).

The monitor judges each slice's accuracy and AUC in a label window against that slice's own
baseline. Few labels make both noisy (50 labels give an accuracy of 0.66 a standard error of
0.067), so a drop counts only when a one-sided z-test finds it beyond noise, and the window's
slice checks are one family: their critical value is Bonferroni's for 5 % over all of them, as
the drift tests correct across features.
"""

from __future__ import annotations

import math
from statistics import NormalDist

__all__ = ["accuracy_drop_beyond_noise", "auc_drop_beyond_noise", "auc_standard_error", "critical_z"]


def critical_z(tests: int, alpha: float = 0.05) -> float:
    """One-sided critical value of ``tests`` z-tests at family-wise level ``alpha`` (Bonferroni)."""
    return NormalDist().inv_cdf(1 - alpha / max(tests, 1))


def accuracy_drop_beyond_noise(p0: float, n0: float, p1: float, n1: float, z: float = 1.645) -> bool:
    """Whether accuracy ``p1`` of ``n1`` labels is below ``p0`` of ``n0`` by more than sampling noise
    (one-sided two-proportion z-test; ``z``: its critical value, 1.645 at 5 %)."""
    pooled = (p0 * n0 + p1 * n1) / (n0 + n1)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n0 + 1 / n1))
    return se == 0 or (p0 - p1) / se > z


def auc_standard_error(auc: float, pos: float, neg: float) -> float:
    """Hanley and McNeil's (1982) standard error of an AUC of ``pos`` positives and ``neg`` negatives."""
    if pos < 1 or neg < 1:
        return math.inf
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    return math.sqrt(max(auc * (1 - auc) + (pos - 1) * (q1 - auc * auc) + (neg - 1) * (q2 - auc * auc), 0.0)
                     / (pos * neg))


def auc_drop_beyond_noise(a0: float, pos0: float, neg0: float, a1: float, pos1: float, neg1: float,
                          z: float = 1.645) -> bool:
    """Whether AUC ``a1`` (of ``pos1`` positives, ``neg1`` negatives) is below ``a0`` by more than
    sampling noise (the two AUCs independent: their standard errors add in quadrature)."""
    se = math.hypot(auc_standard_error(a0, pos0, neg0), auc_standard_error(a1, pos1, neg1))
    return (a0 - a1) / se > z if se > 0 else a0 > a1
