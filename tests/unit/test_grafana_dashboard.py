"""The shipped Grafana dashboard asks for metrics raymlops exports, with labels they have (its
request, error and latency panels queried ``raymlops_requests_total{model}`` and
``raymlops_request_latency_seconds``, which nothing exports: the panels stayed empty)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from raymlops.serve.metrics import METRICS

ROOT = Path(__file__).resolve().parents[2]
_SELECTOR = re.compile(r"(raymlops_[a-z_]+)(\{[^}]*\})?")


def _exported() -> dict[str, set[str]]:
    """Exposition name -> label names: the replicas' metrics and the monitor's families."""
    out: dict[str, set[str]] = {}
    for m in METRICS.values():
        names = [f"{m.name}_{s}" for s in ("bucket", "sum", "count")] if m.kind == "histogram" else [m.name]
        for name in names:
            out[name] = set(m.labels) | ({"le"} if name.endswith("_bucket") else set())
    source = (ROOT / "raymlops" / "monitor" / "metrics.py").read_text(encoding="utf-8")
    for kind, name, labels in re.findall(r'(Counter|Gauge)MetricFamily\(\s*"(raymlops_[a-z_]+)".*?labels=(\[[^]]*\])',
                                         source, flags=re.S):
        out[name + ("_total" if kind == "Counter" else "")] = set(json.loads(labels.replace("'", '"')))
    return out


def test_every_query_of_the_dashboard_names_an_exported_metric_and_its_labels() -> None:
    board = json.loads((ROOT / "configs" / "grafana" / "raymlops.json").read_text(encoding="utf-8"))
    text = json.dumps(board)
    queries = re.findall(r'"(?:expr|query|definition)": "((?:[^"\\]|\\.)*raymlops_(?:[^"\\]|\\.)*)"', text)
    assert len(queries) >= 10, queries
    exported = _exported()
    assert "raymlops_serve_requests_total" in exported and "raymlops_alerts_total" in exported
    for query in queries:
        query = query.encode().decode("unicode_escape")
        for name, selector in _SELECTOR.findall(query):
            assert name in exported, f"{name} (in {query!r}) is no metric raymlops exports"
            used = set(re.findall(r"([a-z_]+)\s*=~?", selector or ""))
            assert used <= exported[name], f"{query!r}: {name} has no label {used - exported[name]}"
        for grouped in re.findall(r"by \(([^)]*)\)", query):
            names = [n for n, _ in _SELECTOR.findall(query)]
            labels = set().union(*(exported[n] for n in names))
            assert {g.strip() for g in grouped.split(",")} <= labels, f"{query!r} groups by a label it lacks"
