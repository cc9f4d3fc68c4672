"""Autoscaling from config: a deployment with ``min_replicas: 0`` goes to zero replicas when
idle, and the next request is answered (a cold start), over real HTTP."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from raymlops.config import AutoscalingConfig, ServeConfig
from tests.integration.conftest import serve_port
from tests.integration.serving_helpers import predict, row, toy_data, toy_store

pytestmark = pytest.mark.integration

ROUTE = "zero"


def _running(route: str) -> int:
    """Replicas of the route in any state (a STOPPING one may still answer while it drains)."""
    from ray import serve

    app = serve.status().applications.get(route)
    if app is None:
        return -1
    return sum(sum(d.replica_states.values()) for d in app.deployments.values())


def test_scale_to_zero_then_a_request_is_answered(ray_session: None, tmp_path: Path) -> None:

    from raymlops.serve.deploy import undeploy
    from raymlops.serve.traffic import deploy_model

    store = toy_store(tmp_path / "home", name=ROUTE)
    cfg = ServeConfig(port=serve_port(), autoscaling=AutoscalingConfig(
        min_replicas=0, max_replicas=1, initial_replicas=1, target_ongoing_requests=1, upscale_delay_s=0,
        downscale_delay_s=1, downscale_to_zero_delay_s=1, metrics_interval_s=0.5, look_back_period_s=1))
    try:
        url = deploy_model(store, f"{ROUTE}@champion", serve_config=cfg)
        assert predict(url, {"instances": [row(toy_data()[0][0])]}).status == 200
        deadline = time.monotonic() + 120
        while _running(ROUTE) != 0 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _running(ROUTE) == 0, "the idle deployment did not scale to zero"
        t0 = time.perf_counter()
        cold = predict(url, {"instances": [row(toy_data()[0][1])]})
        cold_s = time.perf_counter() - t0
        # answered: a replica started for it (with downscale_to_zero_delay_s 1 it may already be
        # on its way back to zero when this line runs, so its count is not asserted here)
        assert cold.status == 200 and cold.body["model_version"] == f"{ROUTE}:v1", cold.body
        print(f"cold start from zero replicas: {cold_s:.2f} s")
        assert cold_s < 60
        # idle again: the replica is removed quickly (Ray's 30 s drain behind HAProxy is set to 1 s)
        t1 = time.monotonic()
        while _running(ROUTE) != 0 and time.monotonic() - t1 < 30:
            time.sleep(0.2)
        gone_s = time.monotonic() - t1
        print(f"back to zero replicas {gone_s:.1f} s after the cold answer")
        assert _running(ROUTE) == 0 and gone_s < 15, gone_s
    finally:
        undeploy(ROUTE, shutdown=False)
