"""A sharded monitor (``monitor.shards: 2``) behind a live deployment over real HTTP: requests
split over both actors by request id, the merged status counts every row once, and labels reach
the shard that saw their request."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from raymlops.config import ServeConfig
from raymlops.store.home import Store
from tests.integration.conftest import serve_port
from tests.integration.serving_helpers import FEATURES, predict, request, row, toy_data, toy_store

pytestmark = pytest.mark.integration

ROUTE = "sharded"


@pytest.fixture(scope="module")
def served(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Store]]:

    from raymlops.monitor.lifecycle import start_monitor, stop_monitor
    from raymlops.monitor.reference import build_reference
    from raymlops.ray_session import NAMESPACE
    from raymlops.serve.deploy import undeploy
    from raymlops.serve.traffic import deploy_model

    home = tmp_path_factory.mktemp("shards") / "home"
    store = toy_store(home, name=ROUTE)
    X, _ = toy_data()
    settings = {"seed": 0, "shards": 2, "window_rows": 60, "alerts": {"log": False}, "checkpoint_s": 0.5}
    try:
        start_monitor(ROUTE, build_reference({n: X[:, j] for j, n in enumerate(FEATURES)}),
                      settings, NAMESPACE, detached=False, home=home)
        endpoint = deploy_model(store, f"{ROUTE}@champion", route=ROUTE, reason="test", serve_config=ServeConfig(
            port=serve_port(), batch_wait_timeout_s=0.002, monitor_budget=1.0, monitor_flush_interval_s=0.05))
        yield endpoint, store
    finally:
        undeploy(ROUTE, shutdown=False)
        stop_monitor(ROUTE, NAMESPACE)


def _wait_rows(n: int, timeout_s: float = 30.0) -> dict[str, Any]:
    from raymlops.monitor.lifecycle import monitor_status
    from raymlops.ray_session import NAMESPACE

    deadline = time.monotonic() + timeout_s
    while True:
        st = monitor_status(ROUTE, NAMESPACE)
        if st["rows_total"] >= n or time.monotonic() > deadline:
            return st


def test_rows_split_over_shards_merge_and_labels_find_their_shard(served: tuple[str, Store]) -> None:
    import ray

    from raymlops.monitor.lifecycle import monitor_handles, monitor_summary
    from raymlops.monitor.names import monitor_name, shard_name
    from raymlops.ray_session import NAMESPACE
    from raymlops.serve.handoff import shard_of

    url, _ = served
    handles = monitor_handles(ROUTE, NAMESPACE)
    assert len(handles) == 2
    assert ray.get(handles[0].shard_names.remote()) == [monitor_name(ROUTE), shard_name(ROUTE, 1)]
    X, _ = toy_data()
    ids = [f"req-{i:04d}" for i in range(150)]
    preds = {}
    for i, rid in enumerate(ids):
        r = predict(url, {"instances": [row(X[i])]}, headers={"Content-Type": "application/json",
                                                               "X-Request-Id": rid})
        assert r.status == 200 and r.body["request_id"] == rid
        preds[rid] = r.body["predictions"][0]
    st = _wait_rows(150)
    expected = {s: sum(shard_of(r, 2) == s for r in ids) for s in (0, 1)}
    assert min(expected.values()) > 30  # the ids really split
    assert st["rows_total"] == 150 and st["shards"]["count"] == 2 and not st["shards"]["missing"]
    assert st["shards"]["rows"] == expected
    assert [ray.get(h.local_rows.remote()) for h in handles] == [expected[0], expected[1]]
    assert ray.get(handles[0].rows.remote()) == 150  # what the pipeline waits on: every shard's rows
    # each shard closed its own windows of 60 rows; the merge holds them all
    assert st["windows_closed"] == sum(n // 60 for n in expected.values())
    assert st["long_term"]["overall"]["columns"][0]["rows"] == 150
    assert st["performance"]["pending"] == 150 and st["slo"]["total_requests"] == 150
    summary = monitor_summary(ROUTE, NAMESPACE)
    assert summary["rows"] == 150 and sum(summary["predictions"].values()) == 150

    # labels over HTTP: each reaches the shard that holds its request
    reply = request(f"{url}/feedback", json.dumps({"request_ids": ids, "labels": [preds[i] for i in ids]}).encode())
    assert reply.status == 200, reply.body
    assert (reply.body["matched"], reply.body["unmatched"], reply.body["pending"]) == (150, 0, 0)
    after = _wait_rows(150)
    assert after["performance"]["matched"] == 150 and after["performance"]["pending"] == 0
    per_shard = [ray.get(h.status.remote()) for h in handles[1:]]
    assert per_shard[0]["performance"]["matched"] == expected[1]  # shard 1 alone: only its own labels


def test_stop_monitor_stops_every_shard(served: tuple[str, Store]) -> None:
    import ray

    from raymlops.monitor.lifecycle import start_monitor, stop_monitor
    from raymlops.monitor.names import shard_name
    from raymlops.monitor.reference import build_reference
    from raymlops.ray_session import NAMESPACE

    X, _ = toy_data()
    ref = build_reference({n: X[:, j] for j, n in enumerate(FEATURES)})
    route = "sharded-stop"

    def live() -> set[str]:
        return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                if a.get("namespace") == NAMESPACE and route in a["name"]}

    try:
        start_monitor(route, ref, {"seed": 0, "shards": 3}, NAMESPACE, detached=False)
        assert live() == {shard_name(route, i) for i in range(3)}
        start_monitor(route, ref, {"seed": 0, "shards": 1}, NAMESPACE, detached=False)  # restarted with fewer
        deadline = time.monotonic() + 20
        while live() != {shard_name(route, 0)} and time.monotonic() < deadline:
            time.sleep(0.2)
        assert live() == {shard_name(route, 0)}
    finally:
        stop_monitor(route, NAMESPACE)
    deadline = time.monotonic() + 20
    while live() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not live()


def test_a_dead_shard_is_named_and_the_others_still_answer(served: tuple[str, Store]) -> None:
    import ray

    from raymlops.monitor.lifecycle import monitor_handles, monitor_status, start_monitor, stop_monitor
    from raymlops.monitor.names import shard_name
    from raymlops.monitor.reference import build_reference
    from raymlops.ray_session import NAMESPACE

    X, _ = toy_data()
    route = "sharded-dead"
    ref = build_reference({n: X[:, j] for j, n in enumerate(FEATURES)})
    try:
        first = start_monitor(route, ref, {"seed": 0, "shards": 2}, NAMESPACE, detached=False)
        second = monitor_handles(route, NAMESPACE)[1]
        ray.get(first.ingest.remote(X[:30], np.zeros(30), version="m:v1", request_ids=[f"a{i}" for i in range(30)]))
        ray.get(second.ingest.remote(X[:20], np.zeros(20), version="m:v1", request_ids=[f"b{i}" for i in range(20)]))
        assert monitor_status(route, NAMESPACE)["rows_total"] == 50
        ray.kill(second, no_restart=True)
        st = monitor_status(route, NAMESPACE)
        assert st["rows_total"] == 30 and st["shards"]["missing"]
        assert shard_name(route, 1) in st["shards"]["missing"][0]
    finally:
        stop_monitor(route, NAMESPACE)
