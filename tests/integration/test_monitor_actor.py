"""The monitor actor on the session's local Ray: ingest, metrics, feedback, crash and restart."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from raymlops.monitor import build_reference

from .conftest import free_port
from .serving_helpers import restarted_monitor_status

pytestmark = pytest.mark.integration


def test_actor_serves_metrics_and_resumes_from_checkpoint_after_a_kill(ray_session: None, tmp_path: Path) -> None:
    import ray

    from raymlops import audit
    from raymlops.monitor.lifecycle import start_monitor, stop_monitor
    from raymlops.monitor.names import monitor_name
    from raymlops.ray_session import NAMESPACE
    from raymlops.store.home import Store

    rng = np.random.default_rng(0)
    features = ["a", "b", "c"]
    reference = build_reference({n: rng.normal(size=5_000) for n in features})
    port = free_port()
    settings = {"window_rows": 500, "checkpoint_s": 0.2, "metrics_port": port, "max_restarts": 2, "seed": 0,
                "alerts": {"log": False}}
    route = "mon-actor-test"
    handle = start_monitor(route, reference, settings, NAMESPACE, detached=False, home=tmp_path)
    try:
        X = rng.normal(size=(1_200, 3))
        ids = [f"r{i}" for i in range(1_200)]
        assert ray.get(handle.ingest.remote(X, (X[:, 0] > 0).astype(int), request_ids=ids, latency_ms=5.0,
                                            status=200)) == 1_200
        assert ray.get(handle.ingest.remote(X[:10], np.zeros(10))) == 1_210  # the old two-argument call
        fb = ray.get(handle.feedback.remote(ids[:100], (X[:100, 0] > 0).astype(int)))
        assert fb["matched"] == 100
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        names = {f.name for f in text_string_to_metric_families(text)}
        assert {"raymlops_drift_score", "raymlops_drift_p_value", "raymlops_monitor_window_rows"} <= names
        ray.get(handle.checkpoint.remote())
        before = ray.get(handle.status.remote())
        assert before["windows_closed"] == 2 and before["window"]["rows"] == 210

        ray.kill(handle, no_restart=False)  # a crash: Ray restarts it, and it reads its checkpoint
        after = restarted_monitor_status(route)
        assert after["restored"] is True
        assert after["rows_total"] == 1_210 and after["windows_closed"] == 2 and after["window"]["rows"] == 210
        assert after["performance"]["matched"] == 100

        shifted = rng.normal(size=(400, 3)) + np.array([2.0, 0.0, 0.0])
        h2 = ray.get_actor(monitor_name(route), namespace=NAMESPACE)
        ray.get(h2.ingest.remote(shifted, np.ones(400)))  # the window closes at 500 rows: verdicts continue
        st = ray.get(h2.status.remote())
        assert st["windows_closed"] == 3 and "a" in st["last_window"]["overall"]["drifted"]
        records = audit.records(Store.open(tmp_path).metadata, action="alert.")
        assert any(r.record["ids"]["alert"] == "feature_drift:a:all" for r in records)
        summary = ray.get(h2.summary.remote())
        assert summary["rows"] == 1_610 and "a" in summary["drifted_features"]
    finally:
        stop_monitor(route, NAMESPACE)
