"""configs/grafana/raymlops.json: a loadable dashboard whose every query names raymlops_ metrics."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DASHBOARD = Path(__file__).resolve().parents[2] / "configs" / "grafana" / "raymlops.json"
# the metrics the replicas (raymlops.serve.metrics) and the monitor export that the dashboard plots
# (test_grafana_dashboard.py checks every name and label against what is exported)
KNOWN = {"raymlops_serve_requests_total", "raymlops_serve_request_duration_seconds", "raymlops_drift_score",
         "raymlops_drift_p_value", "raymlops_alerts_total"}
METRIC = re.compile(r"\b(raymlops_[a-z0-9_]+)")
IDENTIFIER = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{|\[)")  # a name followed by a selector or range


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in panels:
        yield p
        yield from _panels(p.get("panels", []))  # rows nest panels


def _base(name: str) -> str:
    return re.sub(r"_(bucket|sum|count)$", "", name)


def test_dashboard_shape(dashboard: dict[str, Any]) -> None:
    assert dashboard["title"] and dashboard["uid"]
    panels = list(_panels(dashboard["panels"]))
    assert len(panels) >= 5
    assert len({p["id"] for p in panels}) == len(panels)
    for p in panels:
        assert {"x", "y", "w", "h"} <= set(p["gridPos"]) and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24
    names = {v["name"] for v in dashboard["templating"]["list"]}
    assert "datasource" in names


def test_every_panel_queries_raymlops_metrics_only(dashboard: dict[str, Any]) -> None:
    used = set()
    for p in _panels(dashboard["panels"]):
        if p["type"] == "row":
            continue
        assert p.get("targets"), f"panel {p['title']!r} has no query"
        for t in p["targets"]:
            expr = t["expr"]
            metrics = {_base(m) for m in METRIC.findall(expr)}
            assert metrics, f"panel {p['title']!r}: {expr!r} names no raymlops_ metric"
            assert metrics <= KNOWN, f"panel {p['title']!r}: unknown metric(s) {metrics - KNOWN}"
            # any series selected at all is a raymlops_ one (no other exporter's metrics sneak in)
            for ident in IDENTIFIER.findall(expr):
                assert ident.startswith("raymlops_") or ident in ("by", "without"), (p["title"], ident)
            assert t["datasource"]["uid"] == "${datasource}"
            used |= metrics
    assert used == KNOWN  # a panel for every metric the serving and monitoring issues list


def test_latency_uses_the_histogram_buckets(dashboard: dict[str, Any]) -> None:
    exprs = [t["expr"] for p in _panels(dashboard["panels"]) for t in p.get("targets", [])]
    assert any("histogram_quantile(0.99" in e and "raymlops_serve_request_duration_seconds_bucket" in e for e in exprs)
