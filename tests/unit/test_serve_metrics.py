"""Serving metrics (raymlops.serve.metrics): replica deltas merge into one Prometheus exposition."""

from __future__ import annotations

import re

from raymlops.serve.metrics import METRICS, MetricsAggregator, ReplicaStats


def _sample(text: str, name: str, **labels: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} {labels} not in exposition")


def test_two_replicas_sum_into_one_exposition() -> None:
    agg = MetricsAggregator()
    for _ in range(2):
        s = ReplicaStats("r")
        s.inc("raymlops_serve_requests_total", "m:v1", "200", value=3)
        s.inc("raymlops_serve_rejected_requests_total", "predict", "invalid_value")
        s.observe("raymlops_serve_request_duration_seconds", 0.003, "m:v1")
        s.observe("raymlops_serve_batch_rows", 17.0)
        agg.merge(s.drain())
    agg.set_gauges("raymlops_serve_replicas", [(("r",), 2)])
    text = agg.exposition().decode()
    assert _sample(text, "raymlops_serve_requests_total", route="r", version="m:v1", status="200") == 6.0
    assert _sample(text, "raymlops_serve_rejected_requests_total", endpoint="predict", reason="invalid_value") == 2.0
    assert _sample(text, "raymlops_serve_request_duration_seconds_bucket", le="0.0025") == 0.0
    assert _sample(text, "raymlops_serve_request_duration_seconds_bucket", le="0.005") == 2.0
    assert _sample(text, "raymlops_serve_request_duration_seconds_bucket", le="+Inf") == 2.0
    assert _sample(text, "raymlops_serve_request_duration_seconds_count") == 2.0
    assert _sample(text, "raymlops_serve_batch_rows_bucket", le="32.0") == 2.0
    assert _sample(text, "raymlops_serve_replicas", route="r") == 2.0
    assert agg.value("raymlops_serve_requests_total", status="200") == 6.0


def test_every_name_follows_the_conventions() -> None:
    for name, m in METRICS.items():
        assert name.startswith("raymlops_serve_")
        assert (m.kind == "counter") == name.endswith("_total")
        assert "route" in m.labels
        assert not re.search(r"_(ms|milliseconds)$", name)


def test_drain_resets_and_restore_puts_deltas_back() -> None:
    s = ReplicaStats("r")
    s.inc("raymlops_serve_rows_total", "m:v1", value=5)
    s.observe("raymlops_serve_batch_requests", 3.0)
    deltas = s.drain()
    assert s.drain() == {"counters": [], "histograms": []}
    s.restore(deltas)
    s.inc("raymlops_serve_rows_total", "m:v1", value=1)
    agg = MetricsAggregator()
    agg.merge(s.drain())
    assert agg.value("raymlops_serve_rows_total", version="m:v1") == 6.0


def test_unknown_metric_names_are_ignored_by_the_aggregator() -> None:
    agg = MetricsAggregator()
    agg.merge({"counters": [["evil_total", ["r"], 1.0]], "histograms": []})
    assert b"evil" not in agg.exposition()
