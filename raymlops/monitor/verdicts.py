"""Drift verdicts of a window: per column and slice, with scores and p-values always reported.

Defaults follow Evidently's: a numeric column is tested with Kolmogorov-Smirnov (p < alpha) on
small windows (up to ``small_window_rows`` rows in the window or the reference) and with the normalised Wasserstein
distance (>= 0.1) on larger ones; a categorical column with chi-square (p < alpha) on small
windows and the Jensen-Shannon distance (>= 0.1) on larger ones. PSI (on about ``n_bins``
coarse bins of equal reference mass; bands 0.1/0.2) is always reported and can be chosen as
the test. Every statistic is computed from the bucket counts of the streaming state:

- KS: the largest CDF gap at the fine quantile edges (``fine_bins``, 100 by default, so the
  statistic is that of the exact test up to the mass of one fine bin), p-value from the
  Kolmogorov distribution with Stephens' correction for ``n*m/(n+m)``
  (:func:`raymlops.stats.drift.ks_p_values`, ``method="stephens"``);
- Wasserstein-1 / reference std: the area between the binned CDFs inside the reference range,
  and at least the gap between the means (which also sees mass beyond the range);
- chi-square homogeneity, Jensen-Shannon and PSI: on the buckets (coarse ones for numeric).

A discrete column (integers on at most ``discrete_max_values`` values in the reference: counts,
ratings, codes) has a bucket per reference value and is judged as the offline check judges it
(:func:`numeric_test`): chi-square on that support on small windows, the numeric distance on
larger ones; KS would be conservative on its ties.

All of it is computed for every column of all rows and of every non-empty slice at once, with
whole-array numpy passes over the stacked counts (:mod:`raymlops.monitor.stacked`): a window close
costs a few dozen numpy calls, not a Python loop over columns x slices.

P-values are corrected for multiple testing (Bonferroni, Holm, or Benjamini-Hochberg) across
the features of the whole-window family, and across every (slice, feature) test of the sliced
family. The dataset verdict is :mod:`raymlops.stats.verdict`'s rule (``dataset_rule``): by
default the dataset drifts when any feature drifts after the correction (a family-wise
decision); ``share`` is Evidently's rule on uncorrected flags (``dataset_drift_share``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from raymlops.config import MonitorConfig
from raymlops.exceptions import ValidationError
from raymlops.monitor.alerts import Alert
from raymlops.monitor.reference import CATEGORICAL, PREDICTION, ColumnReference, MonitorReference
from raymlops.monitor.state import StreamState
from raymlops.stats.drift import compare_rows, ks_p_values
from raymlops.stats.verdict import dataset_drift as dataset_drift_rule
from raymlops.stats.verdict import deciding_test, distance_drifted, feature_drift, scaled_test

__all__ = [
    "ColumnVerdict",
    "SliceVerdict",
    "WindowReport",
    "WindowVerdict",
    "binned_ks",
    "binned_wasserstein",
    "evaluate",
    "psi_band",
]

P_VALUE_TESTS = ("ks", "chi2")


@dataclass(frozen=True)
class ColumnVerdict:
    """One column in one slice of a window. ``statistic`` belongs to ``test``; ``p_value`` is the
    p-value test's (KS for numeric, chi-square for categorical) even when a distance decides."""

    column: str
    kind: str
    test: str
    statistic: float
    p_value: float
    adjusted_p_value: float
    drift: bool
    ks: float
    wasserstein: float
    js: float
    psi: float
    psi_band: str
    rows: int
    missing_rate: float
    ref_missing_rate: float
    out_of_range_rate: float
    unseen_rate: float
    mean: float | None = None
    std: float | None = None


@dataclass(frozen=True)
class SliceVerdict:
    name: str
    rows: int
    judged: bool
    columns: tuple[ColumnVerdict, ...]
    drifted: tuple[str, ...]
    share_drifted: float
    dataset_drift: bool
    prediction_drift: bool

    def column(self, name: str) -> ColumnVerdict:
        for c in self.columns:
            if c.column == name:
                return c
        raise KeyError(name)

    def values(self, name: str) -> npt.NDArray[np.float64]:
        """One float field of every column, in column order: ``[getattr(c, name) for c in
        self.columns]`` as an array, read from the column table when the verdicts are not built."""
        lazy = self.__dict__.get("_table")
        if lazy is not None:
            return lazy[0].values(lazy[1], name)
        return np.array([getattr(c, name) for c in self.columns], dtype=np.float64)

    def anomalous(self, limits: tuple[float, float, float]) -> list[int]:
        """The columns whose missing-rate increase, out-of-range rate or unseen rate is finite and
        above its limit (``limits``, in that order); a stacked pass's table compares every row at once."""
        lazy = self.__dict__.get("_table")
        if lazy is not None:
            return lazy[0].anomalous(lazy[1], limits)
        with np.errstate(invalid="ignore"):
            rates = np.stack([self.values("missing_rate") - self.values("ref_missing_rate"),
                              self.values("out_of_range_rate"), self.values("unseen_rate")])
            bound = np.array(limits, dtype=np.float64)[:, None]
            return np.flatnonzero(((rates > bound) & np.isfinite(rates)).any(axis=0)).tolist()


class ColumnTable(Protocol):
    """ColumnVerdict fields of the columns of several groups (rows), as arrays; what a verdict
    of the stacked path keeps instead of its ColumnVerdicts (:mod:`raymlops.monitor.stacked`)."""

    def verdicts(self, row: int) -> tuple[ColumnVerdict, ...]: ...

    def values(self, row: int, name: str) -> npt.NDArray[np.float64]: ...

    def anomalous(self, row: int, limits: tuple[float, float, float]) -> list[int]: ...


class _Columns:
    """``SliceVerdict.columns``: the verdicts given to ``__init__``, or, for a slice verdict made
    by :func:`lazy_slice`, built from its row of a :class:`ColumnTable` on first read and kept. A
    window of 10 slices x 30 columns has 330 column verdicts, which are costly to build at every
    window close and mostly never read: alerts read the slice fields and :meth:`SliceVerdict.values`."""

    def __get__(self, obj: SliceVerdict | None, owner: Any = None) -> tuple[ColumnVerdict, ...]:
        if obj is None:
            raise AttributeError("columns")
        d = obj.__dict__
        columns: tuple[ColumnVerdict, ...] | None = d.get("_columns")
        if columns is None:
            table, row = d["_table"]
            columns = d["_columns"] = table.verdicts(row)
        return columns

    def __set__(self, obj: SliceVerdict, value: tuple[ColumnVerdict, ...]) -> None:
        obj.__dict__["_columns"] = value


# set after the dataclass is made, so that the field stays a plain required one; the frozen
# ``__init__`` (object.__setattr__) and every read (asdict, ==, repr, pickling) go through it
setattr(SliceVerdict, "columns", _Columns())  # noqa: B010


def lazy_slice(name: str, rows: int, judged: bool, table: ColumnTable, row: int, drifted: tuple[str, ...],
               share_drifted: float, dataset_drift: bool, prediction_drift: bool) -> SliceVerdict:
    """A SliceVerdict whose columns are row ``row`` of ``table``, built when first read; equal to
    ``SliceVerdict(name, rows, judged, table.verdicts(row), ...)``."""
    verdict: SliceVerdict = object.__new__(SliceVerdict)
    verdict.__dict__.update(name=name, rows=rows, judged=judged, _table=(table, row), drifted=drifted,
                            share_drifted=share_drifted, dataset_drift=dataset_drift,
                            prediction_drift=prediction_drift)
    return verdict


@dataclass(frozen=True)
class WindowVerdict:
    """The whole window (``overall``) and each slice (``slices``; empty without slice columns)."""

    rows: int
    correction: str
    overall: SliceVerdict
    slices: tuple[SliceVerdict, ...] = field(default=())

    @property
    def dataset_drift(self) -> bool:
        return self.overall.dataset_drift

    @property
    def drifted_slices(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.slices if s.dataset_drift or s.drifted)

    def to_dict(self) -> dict[str, Any]:
        return _clean(asdict(self))


@dataclass(frozen=True)
class WindowReport:
    """A closed window: its verdicts and the alerts it raised (before de-duplication)."""

    index: int
    started: float
    ended: float
    verdict: WindowVerdict
    prediction: SliceVerdict | None
    positive_rates: dict[str, float]
    alerts: tuple[Alert, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "started": self.started, "ended": self.ended, **self.verdict.to_dict(),
                "prediction": None if self.prediction is None else _clean(asdict(self.prediction)),
                "positive_rates": _clean(self.positive_rates), "alerts": [a.to_dict() for a in self.alerts]}


def _clean(obj: Any) -> Any:
    """JSON-friendly: NaN/inf become None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


# --------------------------------------------------------------------------------- statistics


def binned_ks(ref: npt.NDArray[np.int64], cur: npt.NDArray[np.int64]) -> tuple[float, float]:
    """KS statistic and p-value from counts on the same ordered buckets (missing bucket last,
    excluded). ``(nan, 1.0)`` when either side has no values."""
    r, c = ref[:-1].astype(np.float64), cur[:-1].astype(np.float64)
    n, m = r.sum(), c.sum()
    if n == 0 or m == 0:
        return math.nan, 1.0
    d = float(np.max(np.abs(np.cumsum(r) / n - np.cumsum(c) / m)))
    return d, float(ks_p_values(d, n, m, method="stephens"))


def binned_wasserstein(col: ColumnReference, ref: npt.NDArray[np.int64], cur: npt.NDArray[np.int64],
                       cur_mean: float) -> float:
    """Wasserstein-1 distance in reference standard deviations (see the module docstring)."""
    r, c = ref[:-1].astype(np.float64), cur[:-1].astype(np.float64)
    n, m = r.sum(), c.sum()
    if n == 0 or m == 0:
        return math.nan
    gap = np.abs(np.cumsum(r) / n - np.cumsum(c) / m)[: col.edges.size]  # F(e_i) for every edge
    widths = np.diff(col.edges)
    area = float(np.sum(widths * (gap[:-1] + gap[1:]) / 2.0))
    mean_gap = abs(cur_mean - col.mean) if math.isfinite(cur_mean) else 0.0
    scale = col.std if col.std > 0 else 1.0
    return max(area, mean_gap) / scale


def psi_band(value: float, bands: tuple[float, float] | list[float]) -> str:
    if not math.isfinite(value):
        return "unknown"
    return "significant" if value >= bands[1] else "moderate" if value >= bands[0] else "stable"


# ------------------------------------------------------------------------ per column


def _coarse(col: ColumnReference, counts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    return np.bincount(col.coarse, weights=counts, minlength=col.n_coarse).astype(np.int64)


def _column(col: ColumnReference, ref: npt.NDArray[np.int64], cur: npt.NDArray[np.int64], state: StreamState,
            slice_index: int | None, cfg: MonitorConfig) -> dict[str, Any]:
    rows = int(cur.sum())
    ref_rows = int(ref.sum())
    miss = col.missing_bucket
    ref_c, cur_c = (_coarse(col, ref), _coarse(col, cur)) if col.kind != CATEGORICAL else (ref, cur)
    have = rows > 0 and ref_rows > 0
    chi_s, chi_p, js_v, psi_v = (float(x) for x in compare_rows(ref_c, cur_c)) if have else (
        math.nan, 1.0, math.nan, math.nan)
    out: dict[str, Any] = {
        "rows": rows, "psi": psi_v, "js": js_v,
        "missing_rate": cur[miss] / rows if rows else math.nan,
        "ref_missing_rate": ref[miss] / ref_rows if ref_rows else math.nan,
        "out_of_range_rate": math.nan, "unseen_rate": math.nan, "ks": math.nan, "wasserstein": math.nan,
    }
    small = min(rows, ref_rows) <= cfg.small_window_rows  # either sample small: the p-value test
    test: str
    if col.kind == CATEGORICAL:
        other = len(col.categories)
        if col.complete and rows:
            out["unseen_rate"] = cur[other] / rows
        test = deciding_test(CATEGORICAL, small, cfg)
        out.update(p_value=chi_p, chi2=chi_s)
    else:
        mom = state.moments(col.name, slice_index)
        ks_d, ks_p = binned_ks(ref, cur)
        out.update(ks=ks_d, wasserstein=binned_wasserstein(col, ref, cur, mom.mean), p_value=ks_p,
                   mean=mom.mean, std=mom.std, chi2=chi_s)
        if rows:
            out["out_of_range_rate"] = (cur[0] + cur[col.edges.size]) / rows
        test = scaled_test(numeric_test(col.discrete, small, cfg), col.std == 0, col.discrete)
        if test == "chi2" or col.discrete:  # a discrete column's p-value test is chi-square, as offline
            out["p_value"] = chi_p
    out["test"] = test
    out["statistic"] = {"ks": out["ks"], "chi2": chi_s, "wasserstein": out["wasserstein"], "js": js_v,
                        "psi": psi_v}[test]
    return out


def numeric_test(discrete: bool, small: bool, cfg: MonitorConfig) -> str:
    """The test that decides a numeric column (:func:`raymlops.stats.verdict.deciding_test`: a discrete
    one, integers on a few values, is judged as the offline check judges it)."""
    return deciding_test("discrete" if discrete else "numeric", small, cfg)


def _distance_drift(col: ColumnReference, r: dict[str, Any], cfg: MonitorConfig) -> bool:
    test = r["test"]
    threshold = {"wasserstein": cfg.wasserstein_threshold, "js": cfg.js_threshold, "psi": cfg.psi_threshold}[test]
    return distance_drifted(test, r["statistic"], threshold, categories=col.kind == CATEGORICAL or col.discrete,
                            p_value=r["p_value"], alpha=cfg.alpha)


def _family_per_column(raw: list[tuple[ColumnReference, dict[str, Any]]], cfg: MonitorConfig, judged: list[bool]
            ) -> list[ColumnVerdict]:
    """Correct the p-values of one family of per-column results jointly; returns the verdicts in order."""
    p = np.array([r["p_value"] for _, r in raw], dtype=np.float64) if raw else np.empty(0)
    adjusted, flags = feature_drift(p, [r["test"] in P_VALUE_TESTS for _, r in raw],
                                    [r["test"] not in P_VALUE_TESTS and _distance_drift(col, r, cfg) for col, r in raw],
                                    alpha=cfg.alpha, correction=cfg.correction, rule=cfg.dataset_rule)
    out = []
    for (col, r), adj, ok, flag in zip(raw, adjusted, judged, flags.tolist(), strict=True):
        drift = bool(ok and flag)
        mean, std = r.get("mean"), r.get("std")
        out.append(ColumnVerdict(
            column=col.name, kind=col.kind, test=r["test"], statistic=float(r["statistic"]),
            p_value=float(r["p_value"]), adjusted_p_value=float(adj), drift=drift, ks=float(r["ks"]),
            wasserstein=float(r["wasserstein"]), js=float(r["js"]), psi=float(r["psi"]),
            psi_band=psi_band(float(r["psi"]), cfg.psi_bands), rows=int(r["rows"]),
            missing_rate=float(r["missing_rate"]), ref_missing_rate=float(r["ref_missing_rate"]),
            out_of_range_rate=float(r["out_of_range_rate"]), unseen_rate=float(r["unseen_rate"]),
            mean=None if mean is None else float(mean), std=None if std is None else float(std),
        ))
    return out


def _slice(name: str, rows: int, judged: bool, verdicts: list[ColumnVerdict], cfg: MonitorConfig) -> SliceVerdict:
    features = [v for v in verdicts if v.column != PREDICTION]
    drifted = tuple(v.column for v in features if v.drift)
    share = len(drifted) / len(features) if features else 0.0
    pred = next((v for v in verdicts if v.column == PREDICTION), None)
    dataset_drift = bool(judged and dataset_drift_rule([v.drift for v in features], rule=cfg.dataset_rule,
                                                      share=cfg.dataset_drift_share))
    return SliceVerdict(name=name, rows=rows, judged=judged, columns=tuple(verdicts), drifted=drifted,
                        share_drifted=share, dataset_drift=dataset_drift,
                        prediction_drift=bool(pred is not None and pred.drift))


def evaluate(state: StreamState, cfg: MonitorConfig, reference: MonitorReference | None = None) -> WindowVerdict:
    """Verdicts on the rows in ``state`` against its reference (see the module docstring): every
    column of all rows and of each non-empty slice in one stacked pass (one column without
    slices: that column's test alone)."""
    ref = reference or state.reference
    if not ref.same_as(state.reference):
        raise ValidationError("the state was built on a different reference")
    if len(ref.columns) == 1 and not ref.slice_columns:
        return _evaluate_per_column(state, cfg, ref)
    from raymlops.monitor.stacked import evaluate_stacked  # it builds on this module's types

    return evaluate_stacked(state, cfg, ref)


def _evaluate_per_column(state: StreamState, cfg: MonitorConfig, ref: MonitorReference) -> WindowVerdict:
    """The verdicts one column and slice at a time: the reference implementation of the stacked
    path (the tests hold them equal), and the cheaper one for a single column test, where the
    stacked path's fixed cost (a few dozen numpy calls) exceeds one column's (the prediction
    verdict at every window close)."""
    rows = state.rows
    raw = [(col, _column(col, ref.column_counts(col.name), state.column_counts(col.name), state, None, cfg))
           for col in ref.columns]
    judged = rows > 0 and rows >= cfg.min_rows
    overall = _slice("all", rows, judged, _family_per_column(raw, cfg, [judged] * len(raw)), cfg)
    if not ref.slice_columns:
        return WindowVerdict(rows=rows, correction=cfg.correction, overall=overall)
    slice_rows = state.slice_rows()
    family: list[tuple[ColumnReference, dict[str, Any]]] = []
    owners: list[int] = []
    judged_tests: list[bool] = []
    for s in range(ref.n_slices):
        if slice_rows[s] == 0:
            continue
        ok = bool(slice_rows[s] >= max(cfg.min_rows, 1))
        for col in ref.columns:
            family.append((col, _column(col, ref.column_counts(col.name, s), state.column_counts(col.name, s),
                                        state, s, cfg)))
            owners.append(s)
            judged_tests.append(ok)
    verdicts = _family_per_column(family, cfg, judged_tests)
    slices = []
    for s in range(ref.n_slices):
        mine = [v for v, o in zip(verdicts, owners, strict=True) if o == s]
        if mine:
            slices.append(_slice(ref.slices[s], int(slice_rows[s]), bool(slice_rows[s] >= max(cfg.min_rows, 1)),
                                 mine, cfg))
    return WindowVerdict(rows=rows, correction=cfg.correction, overall=overall, slices=tuple(slices))
