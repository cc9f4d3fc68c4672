"""Open Inference Protocol v2 REST on a live deployment, driven by NVIDIA's own client
(``tritonclient[http]``, a test dependency): health, metadata, inference in JSON and binary, both
input layouts, explicit versions, errors, and the same metrics and monitor hand-off as /predict.

The module deploys one route on the session's Ray and leaves Serve running for the next module
(only the route and its monitor are removed)."""

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
from tests.integration.serving_helpers import FEATURES, request, toy_data, toy_store

pytestmark = pytest.mark.integration
http = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

ROUTE = "oiptoy"


@pytest.fixture(scope="module")
def served(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Store]]:
    from raymlops.monitor.lifecycle import start_monitor, stop_monitor
    from raymlops.monitor.reference import build_reference
    from raymlops.ray_session import NAMESPACE
    from raymlops.serve.deploy import undeploy
    from raymlops.serve.traffic import deploy_model

    store = toy_store(tmp_path_factory.mktemp("oip") / "home", name=ROUTE)
    X, _ = toy_data()
    cfg = ServeConfig(port=serve_port(), domain="training_range", domain_margin=0.5, batch_wait_timeout_s=0.002,
                      max_rows_per_request=50)
    try:
        start_monitor(ROUTE, build_reference({n: X[:, j] for j, n in enumerate(FEATURES)}),
                      {"seed": 0, "window_rows": 100}, NAMESPACE, detached=False)
        yield deploy_model(store, f"{ROUTE}@champion", route=ROUTE, serve_config=cfg, reason="test"), store
    finally:
        undeploy(ROUTE, shutdown=False)
        stop_monitor(ROUTE, NAMESPACE)


def client_for(url: str) -> Any:
    """tritonclient takes ``host:port/<route>`` (no scheme) and puts ``v2/...`` under that path."""
    return http.InferenceServerClient(url=url.split("://", 1)[1])


def model_of(store: Store, ref: str) -> Any:
    from raymlops.registry import get_model, load_model

    return load_model(store, get_model(store, ref))


def test_health_and_metadata(served: tuple[str, Store]) -> None:
    url, _ = served
    c = client_for(url)
    assert c.is_server_live() and c.is_server_ready()
    assert c.is_model_ready(ROUTE) and c.is_model_ready(ROUTE, "1") and c.is_model_ready(ROUTE, "v1")
    assert not c.is_model_ready("nope") and not c.is_model_ready(ROUTE, "7")
    meta = c.get_model_metadata(ROUTE)
    assert meta["name"] == ROUTE and meta["versions"] == ["v1"] and meta["platform"] == "sklearn_joblib"
    assert [i["name"] for i in meta["inputs"]] == list(FEATURES)
    assert meta["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [-1]},
                               {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]}]
    assert c.get_model_metadata(ROUTE, "v1")["versions"] == ["v1"]
    server = c.get_server_metadata()
    assert server["name"] == "raymlops" and "binary_tensor_data" in server["extensions"]
    with pytest.raises(InferenceServerException) as info:
        c.get_model_metadata("nope")
    assert info.value.status() == "404" and ROUTE in info.value.message()
    missing = request(f"{url}/v2/models/{ROUTE}/versions/9", method="GET")
    assert missing.status == 404 and set(missing.body) == {"error"}
    assert c.is_model_ready(ROUTE, "01")  # a version is a number, as Triton reads it
    with pytest.raises(InferenceServerException) as info:
        c.get_inference_statistics()  # GET v2/models/stats: not a model named "stats"
    assert info.value.status() == "404" and "statistics extension" in info.value.message()
    # HEAD, as uptime checkers and load balancers probe: the GET's status and headers, no body
    import httpx

    for path in ("health", "metadata", "v2/health/ready", f"v2/models/{ROUTE}", f"v2/models/{ROUTE}/ready"):
        head = httpx.head(f"{url}/{path}", timeout=30)
        assert head.status_code == 200 and head.content == b"", (path, head.status_code)
        assert head.headers["content-type"] == "application/json"


@pytest.mark.parametrize("binary", [True, False])
def test_infer_with_tritonclient_matches_the_model(served: tuple[str, Store], binary: bool) -> None:
    url, store = served
    model = model_of(store, f"{ROUTE}:v1")
    X, _ = toy_data()
    Xb = X[:7].astype(np.float32)
    c = client_for(url)
    x = http.InferInput("input-0", list(Xb.shape), "FP32")
    x.set_data_from_numpy(Xb, binary_data=binary)
    result = c.infer(ROUTE, [x], request_id="oip-req-1")
    assert result.get_response()["model_name"] == ROUTE and result.get_response()["model_version"] == "v1"
    assert result.get_response()["id"] == "oip-req-1"
    Xd = Xb.astype(np.float64)
    np.testing.assert_array_equal(result.as_numpy("predict"), model.predict(Xd))
    np.testing.assert_allclose(result.as_numpy("predict_proba"), model.predict_proba(Xd), rtol=1e-9)
    assert result.as_numpy("predict_proba").shape == (7, 2)
    # one tensor per feature, named by the feature, in any order; one output asked for
    per = []
    for j in reversed(range(len(FEATURES))):
        t = http.InferInput(FEATURES[j], [7], "FP64")
        t.set_data_from_numpy(Xd[:, j].copy(), binary_data=binary)
        per.append(t)
    only = c.infer(ROUTE, per, outputs=[http.InferRequestedOutput("predict", binary_data=binary)],
                   model_version="1")
    assert [o["name"] for o in only.get_response()["outputs"]] == ["predict"]
    np.testing.assert_array_equal(only.as_numpy("predict"), model.predict(Xd))
    # a compressed request, as tritonclient sends it (Content-Encoding), is decompressed
    for algorithm in ("gzip", "deflate"):
        packed = c.infer(ROUTE, [x], request_compression_algorithm=algorithm)
        np.testing.assert_array_equal(packed.as_numpy("predict"), model.predict(Xd))


def test_errors_are_the_protocols(served: tuple[str, Store]) -> None:
    url, _ = served
    c = client_for(url)
    x = http.InferInput("input-0", [1, 3], "FP64")
    x.set_data_from_numpy(np.zeros((1, 3)), binary_data=False)
    with pytest.raises(InferenceServerException) as info:
        c.infer(ROUTE, [x])
    assert info.value.status() == "400" and "[-1, 4]" in info.value.message()
    with pytest.raises(InferenceServerException) as info:
        c.infer("nope", [x])
    assert info.value.status() == "404"
    infer = f"{url}/v2/models/{ROUTE}/infer"
    far = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [0, 0, 0, 1e6]}]}
    r = request(infer, json.dumps(far).encode())
    assert r.status == 400 and set(r.body) == {"error"} and "outside the accepted range" in r.body["error"]
    many = {"inputs": [{"name": "x", "shape": [51, 4], "datatype": "FP64", "data": [0.0] * 204}]}
    assert request(infer, json.dumps(many).encode()).status == 413
    assert request(infer, b"{not json").status == 400
    # another Content-Encoding is named (415), never read as JSON; a corrupt gzip body is a 400
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [0, 0, 0, 1]}]}).encode()
    br = request(infer, body, headers={"Content-Type": "application/json", "Content-Encoding": "br"})
    assert br.status == 415 and "Content-Encoding 'br' is not supported" in br.body["error"], br.body
    bad = request(infer, b"\x1f\x8b not gzip", headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert bad.status == 400 and "not valid gzip" in bad.body["error"], bad.body
    import gzip

    predict = request(f"{url}/predict", gzip.compress(json.dumps({"inputs": [[0, 0, 0, 1]]}).encode()),
                      headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    assert predict.status == 200 and len(predict.body["predictions"]) == 1
    assert request(f"{url}/v2/models/{ROUTE}/versions/v9/infer", json.dumps(far).encode()).status == 404


def test_oip_traffic_is_counted_and_monitored_like_predict(served: tuple[str, Store]) -> None:
    import ray

    from raymlops.monitor.names import monitor_name
    from raymlops.ray_session import NAMESPACE

    url, _ = served
    monitor = ray.get_actor(monitor_name(ROUTE), namespace=NAMESPACE)
    before = int(ray.get(monitor.rows.remote()))
    X, _ = toy_data()
    infer = f"{url}/v2/models/{ROUTE}/infer"
    for i in range(0, 30, 5):
        body = {"id": f"oip-{i}", "inputs": [{"name": "x", "shape": [5, 4], "datatype": "FP64",
                                              "data": X[i:i + 5].ravel().tolist()}]}
        r = request(infer, json.dumps(body).encode())
        assert r.status == 200 and r.body["id"] == f"oip-{i}", r.body
        assert r.headers["x-model-version"] == f"{ROUTE}:v1"
    # one X-Request-Id header (Serve's proxy adds it; the body's id names the request for /feedback)
    import httpx

    for sent in ({}, {"X-Request-Id": "oip-h"}):
        answer = httpx.post(infer, json=body, headers=sent, timeout=60)
        assert answer.status_code == 200 and len(answer.headers.get_list("x-request-id")) == 1
        assert answer.json()["id"] == body["id"]
    bad = httpx.post(infer, json=body, headers={"X-Request-Id": "a b"}, timeout=60)
    assert bad.status_code == 400 and "header X-Request-Id 'a b'" in bad.json()["error"], bad.text
    deadline = time.monotonic() + 30
    while int(ray.get(monitor.rows.remote())) < before + 30 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert int(ray.get(monitor.rows.remote())) >= before + 30
    time.sleep(1.5)  # one replica push interval
    text = request(f"{url}/metrics", method="GET").body

    def sample(name: str, **labels: str) -> float:
        return sum(float(ln.rsplit(" ", 1)[1]) for ln in text.splitlines()
                   if ln.startswith(name + "{") and all(f'{k}="{v}"' in ln for k, v in labels.items()))

    assert sample("raymlops_serve_requests_total", route=ROUTE, version=f"{ROUTE}:v1", status="200") >= 6
    assert sample("raymlops_serve_rows_total", version=f"{ROUTE}:v1") >= 30
    assert sample("raymlops_serve_monitor_rows_total", outcome="sent") >= 30
