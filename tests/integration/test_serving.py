"""The served API over real HTTP on loopback: every client mistake gets its status and message
(never 500), answers carry version and request id, metrics and the monitor see the traffic.

One deployment of a tiny registered model serves the whole module (deploying takes seconds)."""

from __future__ import annotations

import http.client
import json
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest

from raymlops.config import ServeConfig
from raymlops.store.home import Store
from tests.integration.conftest import serve_port
from tests.integration.serving_helpers import FEATURES, predict, request, row, toy_data, toy_store

pytestmark = pytest.mark.integration

ROUTE = "toy"
LIMITS = {"max_rows_per_request": 20, "max_body_bytes": 16_384}


@pytest.fixture(scope="module")
def served(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Store]]:

    from raymlops.monitor.lifecycle import start_monitor, stop_monitor
    from raymlops.monitor.reference import build_reference
    from raymlops.ray_session import NAMESPACE
    from raymlops.serve.deploy import undeploy
    from raymlops.serve.traffic import deploy_model

    store = toy_store(tmp_path_factory.mktemp("serving") / "home")
    X, _ = toy_data()
    cfg = ServeConfig(port=serve_port(), domain="training_range", domain_margin=0.5, batch_wait_timeout_s=0.002,
                      **LIMITS)
    try:
        start_monitor(ROUTE, build_reference({n: X[:, j] for j, n in enumerate(FEATURES)}),
                      {"seed": 0, "window_rows": 100}, NAMESPACE, detached=False)
        endpoint = deploy_model(store, "toy@champion", route=ROUTE, serve_config=cfg, reason="test")
        yield endpoint, store
    finally:
        undeploy(ROUTE, shutdown=False)
        stop_monitor(ROUTE, NAMESPACE)


def _example() -> dict[str, float]:
    X, _ = toy_data()
    return row(X[0])


# ------------------------------------------------------------------------------- answers


def test_predict_answers_with_version_request_id_and_probabilities(served: tuple[str, Store]) -> None:
    url, store = served
    from raymlops.registry import get_model, load_model

    model = load_model(store, get_model(store, "toy:v1"))
    X, _ = toy_data()
    r = predict(url, {"instances": [row(x) for x in X[:5]]}, headers={"Content-Type": "application/json",
                                                                       "X-Request-Id": "abc-123"})
    assert r.status == 200, r.body
    assert r.body["model_version"] == "toy:v1" and r.body["request_id"] == "abc-123"
    assert r.headers["x-request-id"] == "abc-123" and r.headers["x-model-version"] == "toy:v1"
    assert r.body["predictions"] == model.predict(X[:5]).tolist()
    np.testing.assert_allclose(r.body["probabilities"], model.predict_proba(X[:5]), rtol=1e-9)
    ordered = predict(url, {"inputs": [list(map(float, x)) for x in X[:5]]})
    assert ordered.status == 200 and ordered.body["predictions"] == r.body["predictions"]
    assert re.fullmatch(r"[0-9a-f]{32}", ordered.body["request_id"]) or ordered.body["request_id"]
    assert ordered.headers["x-request-id"] == ordered.body["request_id"]
    # one X-Request-Id header, the body's id: Serve's proxy adds the header itself (the app added a
    # second one, which disagreed when the client's id was replaced)
    import httpx

    for sent in ({}, {"X-Request-Id": "abc-124"}):
        answer = httpx.post(f"{url}/predict", json={"inputs": [[0, 0, 0, 0]]}, headers=sent, timeout=60)
        assert answer.status_code == 200 and answer.headers.get_list("x-request-id") == [answer.json()["request_id"]]
    assert answer.json()["request_id"] == "abc-124"
    # a client's id that cannot name the request for /feedback: 400 naming the header (the proxy echoes it)
    hostile = httpx.post(f"{url}/predict", json={"inputs": [[0, 0, 0, 0]]}, headers={"X-Request-Id": "bad id\twith"},
                         timeout=60)
    assert hostile.status_code == 400 and hostile.json()["error"] == "bad_request", hostile.text
    assert "header X-Request-Id 'bad id\\twith'" in hostile.json()["message"]
    assert hostile.headers.get_list("x-request-id") == ["bad id\twith"] == [hostile.json()["request_id"]]


def test_health_and_metadata_whose_example_predict_accepts(served: tuple[str, Store]) -> None:
    url, _ = served
    health = request(f"{url}/health", method="GET")
    assert health.status == 200 and health.body["status"] == "ok" and health.body["model_version"] == "toy:v1"
    meta = request(f"{url}/metadata", method="GET")
    assert meta.status == 200 and meta.body["model_version"] == "toy:v1"
    assert [i["name"] for i in meta.body["signature"]["inputs"]] == list(FEATURES)
    assert meta.body["lineage"]["run_id"] == "test" and meta.body["traffic"]["champion"] == "toy:v1"
    assert meta.body["limits"]["max_rows_per_request"] == 20
    r = predict(url, meta.body["input_example"])
    assert r.status == 200 and len(r.body["predictions"]) == 1


# ------------------------------------------------------------------------------- client mistakes

BAD = [
    # (id, body bytes, headers, status, error, words in the message)
    ("malformed-json", b'{"instances": [', None, 400, "malformed_json", ["not valid JSON"]),
    ("empty-body", b"", None, 400, "malformed_json", ["empty"]),
    ("not-utf8", b'{"inputs": [[1, 2, 3, 4]], "x": "\xff\xfe"}', None, 400, "malformed_json", ["UTF-8"]),
    ("deep-nesting", b"[" * 50_00 + b"]" * 50_00, None, 400, "malformed_json", ["nested too deeply"]),
    ("text-plain", b'{"inputs": [[1, 2, 3, 4]]}', {"Content-Type": "text/plain"}, 415, "unsupported_media_type",
     ["text/plain", "application/json"]),
    ("form-urlencoded", b"a=1", {"Content-Type": "application/x-www-form-urlencoded"}, 415,
     "unsupported_media_type", ["application/json"]),
    ("latin1-charset", b'{"inputs": [[1, 2, 3, 4]]}', {"Content-Type": "application/json; charset=latin-1"}, 415,
     "unsupported_media_type", ["UTF-8"]),
    ("json-array", b"[[1, 2, 3, 4]]", None, 400, "bad_request", ["instances", "inputs"]),
    ("both-keys", b'{"instances": [], "inputs": []}', None, 400, "bad_request", ["exactly one"]),
    ("no-rows", b'{"instances": []}', None, 422, "invalid_request", ["non-empty"]),
    ("missing-feature", json.dumps({"instances": [{"a": 1, "b": 1, "c": 1}]}).encode(), None, 422,
     "missing_feature", ["row 0", "'d'"]),
    ("unknown-feature", json.dumps({"instances": [{"a": 1, "b": 1, "c": 1, "d": 1, "e": 1}]}).encode(), None,
     422, "unknown_feature", ["row 0", "'e'"]),
    ("string-value", json.dumps({"instances": [{"a": 1, "b": "1", "c": 1, "d": 1}]}).encode(), None, 422,
     "invalid_value", ["row 0", "'b'", "number"]),
    ("bool-value", b'{"inputs": [[0, 0, 0, 0], [1, true, 1, 1]]}', None, 422, "invalid_value", ["row 1", "'b'"]),
    ("null-value", b'{"inputs": [[0, 0, null, 0]]}', None, 422, "invalid_value", ["row 0", "'c'"]),
    ("nan", b'{"inputs": [[0, NaN, 0, 0]]}', None, 422, "invalid_value", ["'b'", "finite"]),
    ("infinity", b'{"inputs": [[0, 0, -Infinity, 0]]}', None, 422, "invalid_value", ["'c'", "finite"]),
    ("huge-float", b'{"inputs": [[1e999, 0, 0, 0]]}', None, 422, "invalid_value", ["'a'", "finite"]),
    ("huge-integer", b'{"inputs": [[0, 0, 0, ' + b"9" * 5000 + b"]]}", None, 422, "invalid_value", ["'d'"]),
    ("out-of-domain", b'{"inputs": [[0, 0, 0, 0], [0, 0, 40, 0]]}', None, 422, "out_of_domain",
     ["row 1", "'c'", "range"]),
    ("row-shape", b'{"inputs": [[0, 0, 0]]}', None, 422, "invalid_row", ["row 0", "list of 4"]),
    ("row-not-object", b'{"instances": [[0, 0, 0, 0]]}', None, 422, "invalid_row", ["row 0", "object"]),
    ("too-many-rows", json.dumps({"inputs": [[0, 0, 0, 0]] * 21}).encode(), None, 413, "too_many_rows",
     ["21 rows", "20"]),
    ("too-large", json.dumps({"inputs": [[0, 0, 0, 0]], "pad": "x" * 20_000}).encode(), None, 413,
     "payload_too_large", ["16384"]),
]


@pytest.mark.parametrize(("body", "headers", "status", "error", "words"), [b[1:] for b in BAD],
                         ids=[b[0] for b in BAD])
def test_client_mistakes_get_their_status_and_message(
    served: tuple[str, Store], body: bytes, headers: dict[str, str] | None, status: int, error: str,
    words: list[str],
) -> None:
    url, _ = served
    r = request(f"{url}/predict", body, headers=headers)
    assert r.status == status, r.body
    assert isinstance(r.body, dict) and r.body["error"] == error, r.body
    for word in words:
        assert word in r.body["message"], (word, r.body["message"])
    assert r.headers["x-request-id"] == r.body["request_id"] and r.headers["x-model-version"] == "toy:v1"
    assert r.headers["content-type"].startswith("application/json")
    ok = predict(url, {"instances": [_example()]})  # and the server keeps serving
    assert ok.status == 200


def test_a_chunked_body_over_the_limit_is_413_without_content_length(served: tuple[str, Store]) -> None:
    url, _ = served
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.putrequest("POST", f"{parts.path}/predict")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        chunk = b" " * 4096
        for _ in range(6):
            conn.send(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        conn.send(b"0\r\n\r\n")
        resp = conn.getresponse()
        body = json.loads(resp.read())
    finally:
        conn.close()
    assert resp.status == 413 and body["error"] == "payload_too_large"


def test_wrong_method_and_path_are_4xx(served: tuple[str, Store]) -> None:
    """In the shape of the route's other errors: {"error", "message"}, and the protocol's {"error"}
    under /v2 (tritonclient could not decode FastAPI's {"detail"} of a route it asks for)."""
    url, _ = served
    r = request(f"{url}/predict", method="GET")
    assert r.status == 405 and r.body["error"] == "method_not_allowed" and "/predict" in r.body["message"], r.body
    assert "POST" in r.headers.get("allow", "")
    r = request(f"{url}/nothing-here", method="GET")
    assert r.status == 404 and r.body == {"error": "not_found", "message": f"no such route: /{ROUTE}/nothing-here"}
    r = request(f"{url}/v2/models/{ROUTE}/config", method="GET")
    assert r.status == 404 and r.body == {"error": f"no such route: /{ROUTE}/v2/models/{ROUTE}/config"}, r.body


def test_metrics_count_requests_rejections_batches_and_the_monitor(served: tuple[str, Store]) -> None:
    import ray

    from raymlops.monitor.names import monitor_name
    from raymlops.ray_session import NAMESPACE

    url, _ = served
    monitor = ray.get_actor(monitor_name(ROUTE), namespace=NAMESPACE)
    before = int(ray.get(monitor.rows.remote()))
    X, _ = toy_data()
    for i in range(0, 60, 6):
        assert predict(url, {"instances": [row(x) for x in X[i:i + 6]]}).status == 200
    assert request(f"{url}/predict", b'{"inputs": [[0, 0, "x", 0]]}').status == 422
    deadline = time.monotonic() + 30
    while int(ray.get(monitor.rows.remote())) < before + 60 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert int(ray.get(monitor.rows.remote())) >= before + 60
    time.sleep(1.5)  # one replica push interval
    r = request(f"{url}/metrics", method="GET")
    assert r.status == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.body if isinstance(r.body, str) else json.dumps(r.body)

    def sample(name: str, **labels: str) -> float:
        for line in text.splitlines():
            if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    assert sample("raymlops_serve_requests_total", route=ROUTE, version="toy:v1", status="200") >= 10
    assert sample("raymlops_serve_requests_total", status="422") >= 1
    assert sample("raymlops_serve_requests_total", status="500") == 0  # no client mistake was our fault
    assert sample("raymlops_serve_rejected_requests_total", reason="invalid_value") >= 1
    assert sample("raymlops_serve_rows_total", version="toy:v1") >= 60
    assert sample("raymlops_serve_request_duration_seconds_count", version="toy:v1") >= 10
    assert sample("raymlops_serve_batch_rows_count") >= 1 and sample("raymlops_serve_batch_requests_count") >= 1
    assert sample("raymlops_serve_monitor_rows_total", outcome="sent") >= 60
    assert sample("raymlops_serve_replicas", route=ROUTE) == 1
    assert sample("raymlops_serve_traffic_share", version="toy:v1") == 1.0


def test_a_row_the_model_cannot_take_is_422_and_fails_no_other_request(served: tuple[str, Store]) -> None:
    """A scaled model (a spread of 0.01) turns 1e308, a valid number, into infinity and raises. Sent by
    16 clients at once, 1 request in 4 carrying it: those get 422 naming the row and field (and the
    v2 route 400), every other request its 200, and no 500 is counted."""
    from concurrent.futures import ThreadPoolExecutor

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from raymlops.registry import register_model
    from raymlops.serve.deploy import undeploy
    from raymlops.serve.traffic import deploy_model

    _, store = served
    X, y = toy_data()
    X = 0.05 + 0.01 * X
    signature = {"inputs": [{"name": n, "type": "double", "min": float(X[:, j].min()), "max": float(X[:, j].max())}
                            for j, n in enumerate(FEATURES)], "output": "classification", "classes": [0, 1]}
    register_model(store, "scaled", make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y),
                   snapshot_id="s" * 64, signature=signature, metrics={"roc_auc": 1.0},
                   gate={"status": "passed", "reasons": []},
                   lineage={"config_hash": "c", "snapshot_id": "s" * 64, "seed": 1, "run_id": "test"})
    url = deploy_model(store, "scaled@champion", route="scaled", reason="test",
                       serve_config=ServeConfig(port=serve_port(), batch_wait_timeout_s=0.02))
    try:
        def send(i: int) -> tuple[bool, int, Any]:
            rows = [row(x) for x in X[i % 100: i % 100 + 3]]
            bad = i % 4 == 0
            if bad:
                rows[1]["c"] = 1e308
            r = predict(url, {"instances": rows})
            return bad, r.status, r.body

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(send, range(64)))
        for bad, status, body in answers:
            if bad:
                assert status == 422 and body["error"] == "model_refused", body
                assert body["message"].startswith("row 1, field 'c': the model cannot predict from 1e+308"), body
                assert body["details"] == [{"row": 1, "field": "c", "error": "model_refused", "found": 1e308}]
            else:
                assert status == 200 and len(body["predictions"]) == 3, body
        v2 = request(f"{url}/v2/models/scaled/infer", json.dumps(
            {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [0.05, 0.05, 1e308, 0.05]}]}
        ).encode())
        assert v2.status == 400 and "field 'c'" in v2.body["error"], v2.body
        time.sleep(1.5)  # one replica push interval
        metrics = request(f"{url}/metrics", method="GET").body
        def count(name: str, *labels: str) -> float:
            return sum(float(ln.rsplit(" ", 1)[1]) for ln in metrics.splitlines() if ln.startswith(name + "{")
                       and 'route="scaled"' in ln and all(label in ln for label in labels))

        # each answer counted under the status its client got: the 16 refused /predict requests 422,
        # the refused infer 400 (it was counted 422)
        assert count("raymlops_serve_requests_total", 'status="422"') == 16, metrics
        assert count("raymlops_serve_requests_total", 'status="400"') == 1, metrics
        assert count("raymlops_serve_requests_total", 'status="500"') == 0, metrics
        assert count("raymlops_serve_rejected_requests_total", 'endpoint="predict"', 'reason="model_refused"') == 16
        assert count("raymlops_serve_rejected_requests_total", 'endpoint="infer"', 'reason="model_refused"') == 1
    finally:
        undeploy("scaled", shutdown=False)
