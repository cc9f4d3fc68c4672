"""``POST /<route>/feedback`` over real HTTP: labels for served requests reach the monitor by
request id, its performance check sees a change of P(y|x) that leaves the inputs alone, and
every malformed body gets its status and the field it got wrong (never 500)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from raymlops.config import ServeConfig
from raymlops.store.home import Store
from tests.integration.conftest import free_port
from tests.integration.serving_helpers import FEATURES, predict, request, row, toy_data, toy_store

pytestmark = pytest.mark.integration

ROUTE = "fb"
BARE = "fb-bare"  # the same model, served without a monitor
MONITOR = {"seed": 0, "window_rows": 100, "alerts": {"log": False, "audit": False},
           "performance": {"baseline_labels": 100, "window_labels": 100, "min_labels": 50}}


@pytest.fixture(scope="module")
def served(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Store]]:
    from ray import serve

    from raymlops.monitor.core import Reference
    from raymlops.monitor.lifecycle import start_monitor, stop_monitor
    from raymlops.pipeline.ray_env import NAMESPACE
    from raymlops.serve.deploy import undeploy
    from raymlops.serve.traffic import deploy_model

    store = toy_store(tmp_path_factory.mktemp("feedback") / "home", name=ROUTE)
    X, _ = toy_data()
    cfg = ServeConfig(port=free_port(), batch_wait_timeout_s=0.002, max_body_bytes=200_000, monitor_budget=1.0,
                      monitor_flush_interval_s=0.05)
    try:
        start_monitor(ROUTE, Reference.from_columns({n: X[:, j] for j, n in enumerate(FEATURES)}, seed=0),
                      MONITOR, NAMESPACE, detached=False)
        endpoint = deploy_model(store, f"{ROUTE}@champion", route=ROUTE, serve_config=cfg, reason="test")
        bare = deploy_model(store, f"{ROUTE}@champion", route=BARE, serve_config=cfg, monitor=False, reason="test")
        yield endpoint, bare, store
    finally:
        undeploy(ROUTE, shutdown=False)
        undeploy(BARE, shutdown=False)
        stop_monitor(ROUTE, NAMESPACE)
        serve.shutdown()


def _feedback(url: str, body: Any) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return request(f"{url}/feedback", raw)


def _status() -> dict[str, Any]:
    from raymlops.monitor.lifecycle import monitor_status
    from raymlops.pipeline.ray_env import NAMESPACE

    return monitor_status(ROUTE, NAMESPACE)


def _serve(url: str, rows: list[list[float]]) -> list[tuple[str, float]]:
    """(request id, prediction) of one single-row request per row, once the monitor has them."""
    before = _status()["performance"]["pending"]
    out = []
    for x in rows:
        r = predict(url, {"instances": [row(x)]})
        assert r.status == 200, r.body
        out.append((r.body["request_id"], float(r.body["predictions"][0])))
    deadline = time.monotonic() + 30
    while _status()["performance"]["pending"] < before + len(rows) and time.monotonic() < deadline:
        time.sleep(0.2)
    return out


def test_labels_are_matched_by_request_id_and_a_label_only_change_alerts(served: tuple[str, str, Store]) -> None:
    url, _, _ = served
    X, _ = toy_data()
    first = _serve(url, X[:150].tolist())
    # 100 correct labels: the baseline (accuracy 1), plus ids nobody served
    r = _feedback(url, {"request_ids": [i for i, _ in first[:100]] + ["never-served-1", "never-served-2"],
                        "labels": [p for _, p in first[:100]] + [1, 0]})
    assert r.status == 200, r.body
    assert (r.body["matched"], r.body["unmatched"]) == (100, 2)
    assert r.body["pending"] >= 50 and r.headers["x-request-id"] == r.body["request_id"]
    st = _status()["performance"]
    assert st["baseline"]["accuracy"] == 1.0 and st["matched"] >= 100
    # the same labels again: already scored, so nothing matches
    again = _feedback(url, {"request_ids": [i for i, _ in first[:10]], "labels": [p for _, p in first[:10]]})
    assert again.status == 200 and (again.body["matched"], again.body["unmatched"]) == (0, 10)
    # the world changes: the same inputs now carry the opposite labels
    second = first[100:] + _serve(url, X[150:200].tolist())
    wrong = _feedback(url, {"request_ids": [i for i, _ in second], "labels": [1 - p for _, p in second]})
    assert wrong.status == 200 and (wrong.body["matched"], wrong.body["unmatched"]) == (100, 0)
    status = _status()
    perf = status["performance"]
    assert perf["last_window"]["overall"]["accuracy"] == 0.0 and perf["windows"] >= 1
    alerts = [a for a in status["alerts"]["recent"] if a["kind"] == "performance"]
    assert any(a["key"] == "performance:accuracy:all" for a in alerts), status["alerts"]
    assert status["alerts"]["totals"].get("dataset_drift", 0) == 0  # the inputs did not move


def test_a_multi_row_request_takes_a_list_of_labels(served: tuple[str, str, Store]) -> None:
    url, _, _ = served
    X, _ = toy_data()
    r = predict(url, {"instances": [row(x) for x in X[200:203]]})
    assert r.status == 200
    rid, preds = r.body["request_id"], r.body["predictions"]
    deadline = time.monotonic() + 30
    reply = _feedback(url, {"request_ids": [rid], "labels": [preds]})
    while reply.body.get("matched") == 0 and time.monotonic() < deadline:  # not handed to the monitor yet
        time.sleep(0.2)
        reply = _feedback(url, {"request_ids": [rid], "labels": [preds]})
    assert reply.status == 200 and (reply.body["matched"], reply.body["unmatched"]) == (3, 0)
    row_key = _feedback(url, {"request_ids": [f"{rid}/1"], "labels": [preds[1]]})
    assert row_key.status == 200 and row_key.body["unmatched"] == 1  # scored above already


BAD = [
    # (id, body, status, error, words in the message)
    ("bad-json", b'{"request_ids": [', 400, "malformed_json", ["not valid JSON"]),
    ("empty-body", b"", 400, "malformed_json", ["request_ids"]),
    ("not-an-object", b"[1, 2]", 400, "bad_request", ["JSON object"]),
    ("missing-labels", {"request_ids": ["a"]}, 422, "invalid_feedback", ["missing field 'labels'"]),
    ("missing-ids", {"labels": [1]}, 422, "invalid_feedback", ["missing field 'request_ids'"]),
    ("ids-not-list", {"request_ids": "a", "labels": [1]}, 422, "invalid_feedback", ["'request_ids' must be a list"]),
    ("labels-not-list", {"request_ids": ["a"], "labels": {"a": 1}}, 422, "invalid_feedback",
     ["'labels' must be a list"]),
    ("lengths-differ", {"request_ids": ["a", "b", "c"], "labels": [1, 0]}, 422, "invalid_feedback",
     ["differ in length", "3 and 2"]),
    ("too-many-ids", {"request_ids": ["a"] * 10_001, "labels": [1] * 10_001}, 422, "invalid_feedback",
     ["10001 ids", "10000"]),
    ("label-bool", {"request_ids": ["a"], "labels": [True]}, 422, "invalid_feedback", ["labels[0]", "bool"]),
    ("label-object", {"request_ids": ["a", "b"], "labels": [1, {"y": 1}]}, 422, "invalid_feedback",
     ["labels[1]", "dict"]),
    ("id-not-string", {"request_ids": [12], "labels": [1]}, 422, "invalid_feedback", ["request_ids[0]"]),
    ("too-large", {"request_ids": ["a"], "labels": [1], "pad": "x" * 250_000}, 413, "payload_too_large",
     ["200000"]),
]


@pytest.mark.parametrize(("body", "status", "error", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_malformed_feedback_gets_its_status_and_field(served: tuple[str, str, Store], body: Any, status: int,
                                                      error: str, words: list[str]) -> None:
    url, _, _ = served
    r = _feedback(url, body)
    assert r.status == status, r.body
    assert r.body["error"] == error, r.body
    for word in words:
        assert word in r.body["message"], (word, r.body["message"])
    if status == 422:
        assert r.body["details"][0]["field"] in ("request_ids", "labels")
    assert r.headers["x-request-id"] == r.body["request_id"]
    text = request(f"{url}/feedback", b'{"request_ids": ["a"], "labels": [1]}', headers={"Content-Type": "text/plain"})
    assert text.status == 415


def test_a_route_without_a_monitor_answers_409(served: tuple[str, str, Store]) -> None:
    _, bare, _ = served
    r = _feedback(bare, {"request_ids": ["a"], "labels": [1]})
    assert r.status == 409 and r.body["error"] == "no_monitor"
    assert "without a monitor" in r.body["message"] and BARE in r.body["message"]
    assert predict(bare, {"instances": [row(toy_data()[0][0])]}).status == 200  # it still serves
