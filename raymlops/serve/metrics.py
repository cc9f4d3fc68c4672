"""Serving metrics: counted in each replica, merged in the route's control actor, exposed in the
Prometheus text format (pure: no Ray; prometheus-client only for the exposition).

Replicas count into a :class:`ReplicaStats` and hand its :meth:`~ReplicaStats.drain` deltas to
the control actor about once a second; the control actor's :class:`MetricsAggregator` sums
them, so one scrape of ``GET /<route>/metrics`` (or of ``serve.metrics_port``) sees every
replica. Names follow Prometheus conventions: ``raymlops_`` prefix, base units, ``_total``.

=====================================================  =========  ===========================
metric                                                 type       labels
=====================================================  =========  ===========================
``raymlops_serve_requests_total``                      counter    route, version, status (predict and infer)
``raymlops_serve_request_duration_seconds``            histogram  route, version
``raymlops_serve_rows_total``                          counter    route, version
``raymlops_serve_batch_requests``                      histogram  route (requests per model call)
``raymlops_serve_batch_rows``                          histogram  route (rows per model call)
``raymlops_serve_rejected_requests_total``             counter    route, endpoint, reason (4)
``raymlops_serve_monitor_rows_total``                  counter    route, outcome (1)
``raymlops_serve_shadow_requests_total``               counter    route, version, outcome (2)
``raymlops_serve_feedback_labels_total``               counter    route, outcome (3)
``raymlops_serve_replicas``                            gauge      route (replicas heard from in the last seconds)
``raymlops_serve_traffic_share``                       gauge      route, version
``raymlops_serve_traffic_epoch``                       gauge      route
=====================================================  =========  ===========================

(1) sent, dropped (queue full), failed (the monitor raised), sampled_out (``monitor.sample_rate``).
(2) agree / disagree (with the champion's predictions), error, dropped (too many pending).
(3) each label's outcome when posted: matched, waiting (its prediction had not reached the monitor:
    the monitor joins it when it does, or expires it), expired, unknown. Where the waiting ones
    ended is the monitor's ``raymlops_monitor_feedback_labels_total`` (:mod:`raymlops.monitor.metrics`).
(4) endpoint: predict, infer (the Open Inference Protocol's), feedback. A refused predict or infer request
    is also in ``raymlops_serve_requests_total`` under the status it got; a refused label post is not.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


@dataclass(frozen=True)
class MetricDef:
    name: str
    kind: str  # counter | histogram | gauge
    help: str
    labels: tuple[str, ...]
    buckets: tuple[float, ...] = ()


METRICS: dict[str, MetricDef] = {m.name: m for m in (
    MetricDef("raymlops_serve_requests_total", "counter",
              "Predict and infer requests answered, by HTTP status and model version",
              ("route", "version", "status")),
    MetricDef("raymlops_serve_request_duration_seconds", "histogram",
              "Predict latency inside the replica (body read to response), by model version",
              ("route", "version"), LATENCY_BUCKETS_S),
    MetricDef("raymlops_serve_rows_total", "counter", "Rows predicted, by model version", ("route", "version")),
    MetricDef("raymlops_serve_batch_requests", "histogram", "Requests per model call (dynamic batching)",
              ("route",), SIZE_BUCKETS),
    MetricDef("raymlops_serve_batch_rows", "histogram", "Rows per model call (dynamic batching)", ("route",),
              SIZE_BUCKETS),
    MetricDef("raymlops_serve_rejected_requests_total", "counter",
              "Requests refused as client mistakes, by endpoint (predict, infer, feedback) and reason",
              ("route", "endpoint", "reason")),
    MetricDef("raymlops_serve_monitor_rows_total", "counter",
              "Served rows and the monitor hand-off: sent, dropped (queue full), failed, sampled_out",
              ("route", "outcome")),
    MetricDef("raymlops_serve_shadow_requests_total", "counter",
              "Shadow copies to the challenger: agree / disagree with the champion, error, dropped (overload)",
              ("route", "version", "outcome")),
    MetricDef("raymlops_serve_feedback_labels_total", "counter",
              "Ground-truth labels posted to /feedback, by outcome when posted: matched, waiting, expired, unknown",
              ("route", "outcome")),
    MetricDef("raymlops_serve_replicas", "gauge", "Model replicas heard from recently", ("route",)),
    MetricDef("raymlops_serve_traffic_share", "gauge", "Share of live traffic answered by each model version",
              ("route", "version")),
    MetricDef("raymlops_serve_traffic_epoch", "gauge", "Version of the route's traffic table", ("route",)),
)}

Key = tuple[str, tuple[str, ...]]


class _Hist:
    __slots__ = ("buckets", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # last: +Inf
        self.sum = 0.0

    def observe(self, value: float, n: int = 1) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += n
        self.sum += value * n

    def add(self, counts: list[int], total: float) -> None:
        for i, c in enumerate(counts):
            self.counts[i] += c
        self.sum += total


class ReplicaStats:
    """What one replica counted since the last :meth:`drain` (not thread-safe: one event loop)."""

    def __init__(self, route: str) -> None:
        self.route = route
        self._counters: dict[Key, float] = {}
        self._hists: dict[Key, _Hist] = {}

    def inc(self, name: str, *labels: str, value: float = 1.0) -> None:
        key = (name, (self.route, *labels))
        self._counters[key] = self._counters.get(key, 0.0) + value

    def observe(self, name: str, value: float, *labels: str) -> None:
        key = (name, (self.route, *labels))
        hist = self._hists.get(key)
        if hist is None:
            hist = self._hists[key] = _Hist(METRICS[name].buckets)
        hist.observe(value)

    def drain(self) -> dict[str, Any]:
        """The deltas as plain lists (cheap to send to an actor); counting starts again at zero."""
        out = {
            "counters": [[name, list(labels), v] for (name, labels), v in self._counters.items()],
            "histograms": [[name, list(labels), h.counts, h.sum] for (name, labels), h in self._hists.items()],
        }
        self._counters, self._hists = {}, {}
        return out

    def restore(self, deltas: dict[str, Any]) -> None:
        """Put undelivered deltas back (the control actor was unreachable)."""
        for name, labels, v in deltas.get("counters", []):
            key = (name, tuple(labels))
            self._counters[key] = self._counters.get(key, 0.0) + v
        for name, labels, counts, total in deltas.get("histograms", []):
            key = (name, tuple(labels))
            hist = self._hists.get(key)
            if hist is None:
                hist = self._hists[key] = _Hist(METRICS[name].buckets)
            hist.add(counts, total)


class MetricsAggregator:
    """The sum over replicas, as a prometheus-client collector (``collect``) and as text."""

    def __init__(self) -> None:
        self._counters: dict[Key, float] = {}
        self._hists: dict[Key, _Hist] = {}
        self._gauges: dict[Key, float] = {}

    def merge(self, deltas: dict[str, Any]) -> None:
        for name, labels, v in deltas.get("counters", []):
            if name in METRICS:
                key = (name, tuple(labels))
                self._counters[key] = self._counters.get(key, 0.0) + float(v)
        for name, labels, counts, total in deltas.get("histograms", []):
            if name in METRICS:
                key = (name, tuple(labels))
                hist = self._hists.get(key)
                if hist is None:
                    hist = self._hists[key] = _Hist(METRICS[name].buckets)
                hist.add(list(counts), float(total))

    def set_gauges(self, name: str, values: Iterable[tuple[tuple[str, ...], float]]) -> None:
        """Replace every sample of gauge ``name``."""
        self._gauges = {k: v for k, v in self._gauges.items() if k[0] != name}
        for labels, v in values:
            self._gauges[(name, tuple(labels))] = float(v)

    def value(self, name: str, **labels: str) -> float:
        """Sum of a counter's samples whose labels match ``labels`` (tests, status output)."""
        names = METRICS[name].labels
        total = 0.0
        for (n, lab), v in self._counters.items():
            if n == name and all(lab[names.index(k)] == want for k, want in labels.items()):
                total += v
        return total

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        for m in METRICS.values():
            family: Any
            if m.kind == "counter":
                family = CounterMetricFamily(m.name, m.help, labels=list(m.labels))
                for (n, labels), v in sorted(self._counters.items()):
                    if n == m.name:
                        family.add_metric(list(labels), v)
            elif m.kind == "gauge":
                family = GaugeMetricFamily(m.name, m.help, labels=list(m.labels))
                for (n, labels), v in sorted(self._gauges.items()):
                    if n == m.name:
                        family.add_metric(list(labels), v)
            else:
                family = HistogramMetricFamily(m.name, m.help, labels=list(m.labels))
                for (n, labels), h in sorted(self._hists.items(), key=lambda kv: kv[0]):
                    if n == m.name:
                        cumulative, buckets = 0, []
                        for bound, c in zip((*m.buckets, float("inf")), h.counts, strict=True):
                            cumulative += c
                            buckets.append(("+Inf" if bound == float("inf") else repr(float(bound)), cumulative))
                        family.add_metric(list(labels), buckets, h.sum)
            yield family

    def exposition(self) -> bytes:
        from prometheus_client import CollectorRegistry, generate_latest

        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return bytes(generate_latest(registry))
