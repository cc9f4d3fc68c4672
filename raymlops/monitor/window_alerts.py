"""The alerts a closed window raises: drift (dataset, feature, prediction, slice), anomalies
(missing rate, out-of-range, unseen categories) and bias (the gap of positive-prediction rates
across slices). They read the slice verdicts' fields; a column verdict is only read for the
columns that raise an alert (on the stacked path they are built when first read)."""

from __future__ import annotations

import math
from typing import Any

from raymlops.config import MonitorConfig
from raymlops.monitor.alerts import Alert
from raymlops.monitor.reference import PREDICTION
from raymlops.monitor.verdicts import SliceVerdict, WindowVerdict
from raymlops.stats.verdict import quality_checks, quality_limits

__all__ = ["drift_alerts"]


def drift_alerts(v: WindowVerdict, prediction: SliceVerdict | None, rates: dict[str, float], cfg: MonitorConfig,
                 now: float, index: int) -> list[Alert]:
    """The alerts of a closed window: dataset, feature, prediction and slice drift, the
    anomalies of all rows, and bias (the gap of the slices' positive-prediction ``rates``)."""
    out: list[Alert] = []
    o = v.overall
    if o.dataset_drift:
        features = sum(c.column != PREDICTION for c in o.columns)
        # value: the share of features drifted; threshold: the share the rule needs (any: one feature)
        threshold = cfg.dataset_drift_share if cfg.dataset_rule == "share" else 1.0 / max(features, 1)
        if cfg.dataset_rule == "share":
            rule = f"({o.share_drifted:.0%} >= {cfg.dataset_drift_share:.0%}, rule share)"
        else:
            corrected = "without correction" if cfg.correction == "none" else f"after {cfg.correction} correction"
            rule = f"{corrected} (rule any)"
        # keyed by what drifted: the cooldown holds back a repeat of this drift, not one of other features
        out.append(Alert(kind="dataset_drift", key="dataset_drift:" + ",".join(sorted(o.drifted))[:200],
                         severity="critical",
                         message=f"{len(o.drifted)} of {features} features drifted {rule}: "
                                 f"{', '.join(o.drifted)}",
                         value=o.share_drifted, threshold=threshold, ts=now, window=index,
                         details={"drifted": list(o.drifted), "rule": cfg.dataset_rule}))
    # the drifted features and the prediction's flag are the slices' own fields: a column
    # verdict is only read (built, on the stacked path) for the columns that raise an alert
    for name in o.drifted:
        out.append(_column_alert("feature_drift", o.column(name), "all", now, index))
    predicted = o if prediction is None else prediction  # the column PREDICTION is in one or the other
    if predicted.prediction_drift:
        out.append(_column_alert("prediction_drift", predicted.column(PREDICTION), "all", now, index))
    for s in v.slices:
        for name in s.drifted:
            out.append(_column_alert("slice_drift", s.column(name), s.name, now, index))
    if o.judged:
        for j in _anomalous(o, cfg):
            out += _anomalies(o.columns[j], cfg, now, index)
    if cfg.max_positive_rate_gap is not None and len(rates) >= 2:
        gap = max(rates.values()) - min(rates.values())
        if gap > cfg.max_positive_rate_gap:
            hi = max(rates, key=lambda k: rates[k])
            lo = min(rates, key=lambda k: rates[k])
            out.append(Alert(kind="bias", key="bias:positive_rate_gap", severity="warning",
                             message=f"positive-prediction rate {rates[hi]:.1%} in {hi} vs {rates[lo]:.1%} in "
                                     f"{lo}: gap {gap:.1%} > {cfg.max_positive_rate_gap:.1%}",
                             value=gap, threshold=cfg.max_positive_rate_gap, ts=now, window=index,
                             details={"rates": rates}))
    return out


def _column_alert(kind: str, c: Any, where: str, now: float, index: int) -> Alert:
    p_test = c.test in ("ks", "chi2")
    measure = f"adjusted p-value {c.adjusted_p_value:.2e}" if p_test else f"{c.test} {c.statistic:.3f}"
    return Alert(kind=kind, key=f"{kind}:{c.column}:{where}", severity="warning",
                 message=f"{c.column} drifted in slice {where}: {measure} ({c.rows} rows, PSI {c.psi:.3f})",
                 value=c.adjusted_p_value if p_test else c.statistic, threshold=math.nan, ts=now, window=index,
                 slice=where, details={"test": c.test, "statistic": c.statistic, "p_value": c.p_value,
                                       "psi": c.psi})


def _anomalies(c: Any, cfg: MonitorConfig, now: float, index: int) -> list[Alert]:
    return [Alert(kind="anomaly", key=f"anomaly:{what}:{c.column}", severity="warning",
                  message=f"{c.column}: {_anomaly_text(what, c)} (limit {limit:.1%})", value=value, threshold=limit,
                  ts=now, window=index, details={"anomaly": what})
            for what, value, limit in quality_checks(c.missing_rate, c.ref_missing_rate, c.out_of_range_rate,
                                                     c.unseen_rate, quality_limits(cfg))]


def _anomalous(o: SliceVerdict, cfg: MonitorConfig) -> list[int]:
    """The columns :func:`_anomalies` may find an anomaly in, without building a column verdict per
    column at every window close (:meth:`SliceVerdict.anomalous`)."""
    return o.anomalous(quality_limits(cfg))


def _anomaly_text(what: str, c: Any) -> str:
    if what == "missing":
        return f"missing rate {c.missing_rate:.1%} vs {c.ref_missing_rate:.1%} in the reference"
    if what == "out_of_range":
        return f"{c.out_of_range_rate:.1%} of values outside the reference range"
    return f"{c.unseen_rate:.1%} of values are unseen categories"
