"""Prometheus exposition of a monitor's status (prometheus-client; no Ray).

:class:`MonitorCollector` turns :meth:`raymlops.monitor.monitor.Monitor.status` into metric
families at scrape time, in a private registry, so each monitor serves its own
``/metrics`` (:func:`serve_metrics`, bound to 127.0.0.1). Names start with ``raymlops_``, use
base units (seconds, ratios) and carry the deployment as the ``model`` label; drift metrics are
those of the last closed window, per feature and slice.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["MonitorCollector", "serve_metrics"]


def _num(v: Any) -> float:
    if v is None:
        return math.nan
    return float(v)


class MonitorCollector(Collector):
    def __init__(self, model: str, status: Callable[[], dict[str, Any]]) -> None:
        self.model = model
        self.status = status

    def collect(self) -> Iterator[Metric]:
        st = self.status()
        m = self.model
        rows = CounterMetricFamily("raymlops_monitor_rows", "Rows the monitor has ingested", labels=["model"])
        rows.add_metric([m], float(st["rows_total"]))
        yield rows
        window_rows = GaugeMetricFamily("raymlops_monitor_window_rows", "Rows in the monitor's windows",
                                        labels=["model", "window"])
        window_rows.add_metric([m, "current"], float(st["window"]["rows"]))
        last = st.get("last_window")
        if last:
            window_rows.add_metric([m, "last"], float(last["rows"]))
        yield window_rows
        windows = CounterMetricFamily("raymlops_monitor_windows", "Windows closed", labels=["model"])
        windows.add_metric([m], float(st["windows_closed"]))
        yield windows

        score = GaugeMetricFamily("raymlops_drift_score", "Drift statistic of the last window's deciding test",
                                  labels=["model", "feature", "slice", "test"])
        p_value = GaugeMetricFamily("raymlops_drift_p_value", "P-value (KS or chi-square) in the last window",
                                    labels=["model", "feature", "slice"])
        psi = GaugeMetricFamily("raymlops_drift_psi", "Population stability index in the last window",
                                labels=["model", "feature", "slice"])
        detected = GaugeMetricFamily("raymlops_drift_detected", "1 when the feature drifted in the last window",
                                     labels=["model", "feature", "slice"])
        dataset = GaugeMetricFamily("raymlops_dataset_drift", "1 when the dataset drifted in the last window",
                                    labels=["model", "slice"])
        if last:
            for sv in [last["overall"], *last.get("slices", [])]:
                dataset.add_metric([m, sv["name"]], float(sv["dataset_drift"]))
                for c in sv["columns"]:
                    labels = [m, c["column"], sv["name"]]
                    score.add_metric([*labels, c["test"]], _num(c["statistic"]))
                    p_value.add_metric(labels, _num(c["p_value"]))
                    psi.add_metric(labels, _num(c["psi"]))
                    detected.add_metric(labels, float(c["drift"]))
        yield from (score, p_value, psi, detected, dataset)

        # the same per feature over the rolling long-term window (every row so far until
        # long_term_windows windows have closed): there from the first rows on, before a window closes
        lt_score = GaugeMetricFamily("raymlops_drift_long_term_score",
                                     "Drift statistic of the deciding test over the long-term window",
                                     labels=["model", "feature", "slice", "test"])
        lt_p = GaugeMetricFamily("raymlops_drift_long_term_p_value",
                                 "P-value (KS or chi-square) over the long-term window",
                                 labels=["model", "feature", "slice"])
        lt_detected = GaugeMetricFamily("raymlops_drift_long_term_detected",
                                        "1 when the feature drifted over the long-term window",
                                        labels=["model", "feature", "slice"])
        lt_rows = GaugeMetricFamily("raymlops_drift_long_term_rows", "Rows in the long-term window", labels=["model"])
        long_term = st.get("long_term")
        if long_term:
            lt_rows.add_metric([m], float(long_term["rows"]))
            for sv in [long_term["overall"], *long_term.get("slices", [])]:
                for c in sv["columns"]:
                    labels = [m, c["column"], sv["name"]]
                    lt_score.add_metric([*labels, c["test"]], _num(c["statistic"]))
                    lt_p.add_metric(labels, _num(c["p_value"]))
                    lt_detected.add_metric(labels, float(c["drift"]))
        yield from (lt_score, lt_p, lt_detected, lt_rows)

        alerts = CounterMetricFamily("raymlops_alerts", "Alerts raised by kind", labels=["model", "kind"])
        for kind, n in sorted(st["alerts"]["totals"].items()):
            alerts.add_metric([m, kind], float(n))
        yield alerts

        slo = st["slo"]
        avail = GaugeMetricFamily("raymlops_slo_availability_ratio", "Share of requests without a server error",
                                  labels=["model", "window"])
        # "percentile", not "quantile": Prometheus reserves that label for summaries (promtool rejects a
        # gauge carrying it)
        latency = GaugeMetricFamily("raymlops_slo_latency_seconds", "Request latency percentiles",
                                    labels=["model", "window", "percentile"])
        for w in ("short", "long"):  # a window without requests has no series (not NaN)
            snap = slo[w]
            if snap["availability"] is not None:
                avail.add_metric([m, w], float(snap["availability"]))
            for q, key in (("50", "latency_p50_ms"), ("95", "latency_p95_ms"), ("99", "latency_p99_ms")):
                if snap[key] is not None:
                    latency.add_metric([m, w, q], float(snap[key]) / 1000.0)
        burn = GaugeMetricFamily("raymlops_slo_burn_rate", "Error-budget burn rate",
                                 labels=["model", "objective", "window"])
        for key, b in slo["burn_rates"].items():
            objective, windows_ = key.split(":", 1)
            long_w, short_w = windows_.split("/")
            burn.add_metric([m, objective, long_w], _num(b["long"]))
            burn.add_metric([m, objective, short_w], _num(b["short"]))
        target = GaugeMetricFamily("raymlops_slo_availability_target_ratio", "Availability objective",
                                   labels=["model"])
        target.add_metric([m], _num(slo["targets"]["availability"]))
        yield from (avail, latency, burn, target)

        perf = st["performance"]
        quality = GaugeMetricFamily("raymlops_model_quality", "Model quality from late labels (last label window)",
                                    labels=["model", "metric", "slice"])
        last_perf = perf.get("last_window") or {}
        for name, metrics in [("all", last_perf.get("overall") or {}), *(last_perf.get("slices") or {}).items()]:
            for metric in ("accuracy", "auc", "mae"):
                if metric in metrics:
                    quality.add_metric([m, metric, name], _num(metrics[metric]))
        yield quality
        canary = GaugeMetricFamily("raymlops_monitor_challenger_quality", "Quality of the rows a challenger (canary) "
                                   "answered, from their labels, per version", labels=["model", "version", "metric"])
        for version, metrics in (perf.get("challengers") or {}).items():
            for metric, value in metrics.items():
                canary.add_metric([m, version, metric], float(value))
        yield canary
        est = (perf.get("estimated") or {}).get("last_window") or {}  # CBPE: before labels
        for metric in ("accuracy", "roc_auc"):
            gauge = GaugeMetricFamily(f"raymlops_monitor_estimated_{metric}", f"{metric} estimated from calibrated "
                                      "probabilities of served rows, before labels (CBPE, last estimation window)",
                                      labels=["model", "slice"])
            for name, metrics in [("all", est.get("overall") or {}), *(est.get("slices") or {}).items()]:
                if metric in metrics:
                    gauge.add_metric([m, name], _num(metrics[metric]))
            yield gauge
        concept = perf.get("concept_drift") or {}
        changes = CounterMetricFamily("raymlops_monitor_concept_drift_detections", "Rises of the error rate of "
                                      "labelled rows found by a change detector", labels=["model", "detector", "slice"])
        for name, dets in [("all", concept.get("overall") or {}), *(concept.get("slices") or {}).items()]:
            for kind, summary in dets.items():
                changes.add_metric([m, kind, name], float(summary.get("increases", 0)))
        yield changes
        label_counts = perf.get("labels") or {}  # every label's final outcome (raymlops.monitor.labels)
        outcome = CounterMetricFamily("raymlops_monitor_feedback_labels", "Labels received, by outcome: matched, "
                                      "expired, unknown", labels=["model", "outcome"])
        for name in ("matched", "expired", "unknown"):
            outcome.add_metric([m, name], float(label_counts.get(name, 0)))
        yield outcome
        waiting = GaugeMetricFamily("raymlops_monitor_feedback_labels_waiting",
                                    "Labels waiting for their prediction to reach the monitor", labels=["model"])
        waiting.add_metric([m], float(label_counts.get("waiting", 0)))
        yield waiting

        diff = st["differential"]
        agreement = GaugeMetricFamily("raymlops_challenger_agreement_ratio",
                                      "Share of paired requests where champion and challenger agree", labels=["model"])
        if diff.get("agreement") is not None:
            agreement.add_metric([m], _num(diff["agreement"]))
        yield agreement


def serve_metrics(model: str, status: Callable[[], dict[str, Any]], port: int,
                  addr: str = "127.0.0.1") -> CollectorRegistry:
    """Serve ``/metrics`` for one monitor on ``addr:port`` (a daemon thread); returns its registry."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MonitorCollector(model, status))
    start_http_server(port, addr=addr, registry=registry)
    return registry
