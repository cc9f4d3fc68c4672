"""Performance estimated before labels arrive: confidence-based performance estimation (CBPE).

A binary classifier whose probabilities are *calibrated* (of the rows scored ``p``, a share ``p``
is positive) predicts its own accuracy: a row predicted positive is right with probability
``p``, one predicted negative with ``1 - p``, so the expected accuracy of any set of rows is the
mean of those. Expected ROC AUC follows from the expected confusion matrix at every threshold
(NannyML's CBPE): each row counts ``p`` as a positive and ``1 - p`` as a negative at its score,
and the ROC curve of those expected counts is integrated (ties within a score bin count one half).
While P(y|x) stays the same this follows covariate shift that a constant reference value misses.

- :class:`Calibration` maps raw scores to calibrated probabilities: isotonic regression fitted on
  the holdout at training time (:func:`fit_isotonic`, pool adjacent violators), kept as its
  ``x``/``y`` knots and applied by linear interpolation (clipped), so it travels as plain numbers
  in a model's lineage, never as a pickle.
- :class:`ExpectedCounts` accumulates per slice the rows, the expected correct ones and the
  expected positive / negative score histograms (mergeable: sums); :meth:`ExpectedCounts.metrics`
  gives expected ``accuracy`` and ``roc_auc``. :func:`estimate` is the same for one array.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["CALIBRATION_FORMAT", "SCORE_BINS", "Calibration", "ExpectedCounts", "estimate", "fit_isotonic",
           "histogram_auc"]

CALIBRATION_FORMAT = "raymlops.calibration/1"
SCORE_BINS = 200

FloatArray = npt.NDArray[np.float64]


def histogram_auc(pos: FloatArray, neg: FloatArray) -> float:
    """ROC AUC from (possibly fractional) histograms of positives and negatives over the same
    ascending score bins; ties within a bin count one half. NaN without both classes."""
    n_pos, n_neg = float(pos.sum()), float(neg.sum())
    if n_pos <= 0 or n_neg <= 0:
        return math.nan
    neg_below = np.cumsum(neg) - neg
    return float(np.sum(pos * (neg_below + neg / 2.0)) / (n_pos * n_neg))


@dataclass(frozen=True)
class Calibration:
    """Raw positive-class score -> calibrated probability, by interpolation between knots."""

    x: tuple[float, ...]
    y: tuple[float, ...]
    method: str = "isotonic"
    rows: int = 0

    def __post_init__(self) -> None:
        if len(self.x) != len(self.y) or not self.x:
            raise ValueError("a calibration needs as many x as y knots, at least one")
        if any(b < a for a, b in zip(self.x, self.x[1:], strict=False)):
            raise ValueError("calibration x knots must be ascending")

    def apply(self, scores: Any) -> FloatArray:
        p = np.asarray(scores, dtype=np.float64)
        out = np.interp(p, np.asarray(self.x), np.asarray(self.y))
        return np.where(np.isfinite(p), np.clip(out, 0.0, 1.0), np.nan)

    def to_dict(self) -> dict[str, Any]:
        return {"format": CALIBRATION_FORMAT, "method": self.method, "x": list(self.x), "y": list(self.y),
                "rows": self.rows}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        if d.get("format") != CALIBRATION_FORMAT:
            raise ValueError(f"not a calibration (expected format {CALIBRATION_FORMAT!r})")
        return cls(tuple(map(float, d["x"])), tuple(map(float, d["y"])), str(d["method"]),
                   int(d["rows"]))

    @classmethod
    def identity(cls) -> Calibration:
        return cls((0.0, 1.0), (0.0, 1.0), "identity")


def fit_isotonic(scores: Any, y: Any) -> Calibration:
    """Isotonic regression of ``y`` (1 positive, 0 negative) on ``scores`` (pool adjacent
    violators over the distinct scores); the knots are each block's lowest and highest score."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    t = np.asarray(y, dtype=np.float64).ravel()
    if s.shape != t.shape:
        raise ValueError(f"scores and y differ in length ({s.size} and {t.size})")
    keep = np.isfinite(s) & np.isfinite(t)
    s, t = s[keep], t[keep]
    if s.size == 0:
        raise ValueError("no finite scores to calibrate on")
    xs, inv = np.unique(s, return_inverse=True)
    w = np.bincount(inv, minlength=xs.size).astype(np.float64)
    means = np.bincount(inv, weights=t, minlength=xs.size) / w
    # pool adjacent violators: a stack of blocks (mean, weight, first, last index)
    val: list[float] = []
    wt: list[float] = []
    lo: list[int] = []
    hi: list[int] = []
    for i in range(xs.size):
        v, ww, a = float(means[i]), float(w[i]), i
        while val and val[-1] >= v:
            pv, pw = val.pop(), wt.pop()
            a = lo.pop()
            hi.pop()
            v = (pv * pw + v * ww) / (pw + ww)
            ww += pw
        val.append(v)
        wt.append(ww)
        lo.append(a)
        hi.append(i)
    kx: list[float] = []
    ky: list[float] = []
    for v, a, b in zip(val, lo, hi, strict=True):
        for j in (a, b) if b > a else (a,):
            kx.append(float(xs[j]))
            ky.append(v)
    return Calibration(tuple(kx), tuple(ky), "isotonic", int(s.size))


class ExpectedCounts:
    """Per slice: rows, expected correct rows, and expected positive / negative histograms of
    the calibrated probability (``bins`` equal bins on [0, 1])."""

    def __init__(self, n_slices: int, bins: int = SCORE_BINS) -> None:
        self.bins = int(bins)
        self.n = np.zeros(n_slices, dtype=np.int64)
        self.correct = np.zeros(n_slices, dtype=np.float64)
        self.pos = np.zeros((n_slices, self.bins), dtype=np.float64)
        self.neg = np.zeros((n_slices, self.bins), dtype=np.float64)

    @property
    def rows(self) -> int:
        return int(self.n.sum())

    def add(self, proba: Any, predicted_positive: Any, slices: Any = None) -> None:
        """Rows with calibrated positive-class probability ``proba`` (NaN rows are skipped) and
        whether each was predicted positive."""
        p = np.asarray(proba, dtype=np.float64).ravel()
        pred = np.asarray(predicted_positive, dtype=bool).ravel()
        s = np.zeros(p.size, dtype=np.int64) if slices is None else np.asarray(slices, dtype=np.int64).ravel()
        if not p.size == pred.size == s.size:
            raise ValueError("proba, predicted_positive and slices differ in length")
        ok = np.isfinite(p)
        if not ok.all():
            p, pred, s = p[ok], pred[ok], s[ok]
        k = self.n.size
        self.n += np.bincount(s, minlength=k)
        self.correct += np.bincount(s, weights=np.where(pred, p, 1.0 - p), minlength=k)
        b = np.minimum((p * self.bins).astype(np.int64), self.bins - 1)
        cell = s * self.bins + b
        self.pos += np.bincount(cell, weights=p, minlength=k * self.bins).reshape(k, self.bins)
        self.neg += np.bincount(cell, weights=1.0 - p, minlength=k * self.bins).reshape(k, self.bins)

    def add_one(self, p: float, predicted_positive: bool, s: int = 0) -> None:
        if not math.isfinite(p):
            return
        self.n[s] += 1
        self.correct[s] += p if predicted_positive else 1.0 - p
        b = min(int(p * self.bins), self.bins - 1)
        self.pos[s, b] += p
        self.neg[s, b] += 1.0 - p

    def metrics(self, s: int | None = None) -> dict[str, float]:
        """Expected ``accuracy`` and ``roc_auc`` of all rows (``s`` None) or of slice ``s``."""
        sel = slice(None) if s is None else slice(s, s + 1)
        n = int(self.n[sel].sum())
        if n == 0:
            return {"rows": 0}
        return {"rows": n, "accuracy": float(self.correct[sel].sum() / n),
                "roc_auc": histogram_auc(self.pos[sel].sum(axis=0), self.neg[sel].sum(axis=0))}

    def merged(self, others: list[ExpectedCounts]) -> ExpectedCounts:
        out = ExpectedCounts(self.n.size, self.bins)
        for o in [self, *others]:
            out.n += o.n
            out.correct += o.correct
            out.pos += o.pos
            out.neg += o.neg
        return out


def estimate(proba: Any, predicted_positive: Any | None = None, bins: int = SCORE_BINS) -> dict[str, float]:
    """Expected accuracy and ROC AUC of one set of rows from their calibrated probabilities
    (predicted positive: ``proba >= 0.5`` unless given)."""
    p = np.asarray(proba, dtype=np.float64).ravel()
    counts = ExpectedCounts(1, bins)
    counts.add(p, p >= 0.5 if predicted_positive is None else predicted_positive)
    return counts.metrics()
