"""Serving under faults and hostile input, over real HTTP on loopback, on one deployment of a tiny
model with two replicas and a monitor exposing /metrics:

* hostile and fuzzed bodies (hypothesis) never get a 500, and every rejection names the problem;
* every socket raymlops opened listens on loopback only;
* fault 2: a replica killed under steady load (failed requests and time to full throughput)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raymlops.config import ServeConfig
from tests.integration.conftest import serve_port
from tests.integration.serving_helpers import FEATURES, predict, request, row, toy_data, toy_store
from tests.reliability.conftest import free_port
from tests.reliability.faults import kill_replica_under_load, listening_sockets

ROUTE = "rel"
LIMITS = {"max_rows_per_request": 20, "max_body_bytes": 16_384}


@pytest.fixture(scope="module")
def served(ray_local: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from raymlops.monitor.lifecycle import start_monitor, stop_monitor
    from raymlops.monitor.reference import build_reference
    from raymlops.ray_session import NAMESPACE
    from raymlops.serve.deploy import undeploy
    from raymlops.serve.traffic import deploy_model

    home = tmp_path_factory.mktemp("rel-serving") / "home"
    store = toy_store(home)
    X, _ = toy_data()
    ports = {"serve": serve_port(), "serve_metrics": free_port(), "monitor_metrics": free_port()}
    cfg = ServeConfig(port=ports["serve"], num_replicas=2, batch_wait_timeout_s=0.002,
                      metrics_port=ports["serve_metrics"], access_log=False, **LIMITS)
    try:
        start_monitor(ROUTE, build_reference({n: X[:, j] for j, n in enumerate(FEATURES)}),
                      {"seed": 0, "window_rows": 200, "metrics_port": ports["monitor_metrics"], "checkpoint_s": 1.0,
                       "alerts": {"log": False}}, NAMESPACE, detached=False, home=home)
        endpoint = deploy_model(store, "toy@champion", route=ROUTE, serve_config=cfg, reason="reliability")
        yield {"url": endpoint, "store": store, "ports": ports}
    finally:
        undeploy(ROUTE, shutdown=False)
        stop_monitor(ROUTE, NAMESPACE)


def _rejected(reply: Any) -> None:
    """A client error the way the API documents it: 4xx, JSON, an error code and a message."""
    assert 400 <= reply.status < 500, (reply.status, reply.body)
    assert isinstance(reply.body, dict) and reply.body.get("error") and reply.body.get("message"), reply.body


EXAMPLE = row(toy_data()[0][0])


def test_hostile_bodies_over_http_are_named_4xx(served: dict[str, Any]) -> None:
    url = served["url"] + "/predict"
    cases: dict[str, tuple[bytes, dict[str, str] | None, int, str]] = {
        "huge": (b'{"inputs": [' + b"[0,0,0,0]," * 2_000_000 + b"[0,0,0,0]]}", None, 413, "payload_too_large"),
        "deep": (b"[" * 8_000 + b"]" * 8_000, None, 400, "malformed_json"),
        "not_utf8": ('{"instances": [{"a": "é"}]}'.encode("latin-1"), None, 400, "malformed_json"),
        "number_as_string": (json.dumps({"instances": [{**EXAMPLE, "a": "0.5"}]}).encode(), None, 422,
                             "invalid_value"),
        "1e309": (b'{"inputs": [[1e309, 0, 0, 0]]}', None, 422, "invalid_value"),
        "category": (json.dumps({"instances": [{**EXAMPLE, "b": "never-seen"}]}).encode(), None, 422,
                     "invalid_value"),
        "path_column": (json.dumps({"instances": [{**EXAMPLE, "../../etc/passwd": 1}]}).encode(), None, 422,
                        "unknown_feature"),
        "text_plain": (b"a,b,c,d\n1,2,3,4", {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
        "empty": (b"", None, 400, "malformed_json"),
        "too_many_rows": (json.dumps({"inputs": [[0, 0, 0, 0]] * 21}).encode(), None, 413, "too_many_rows"),
    }
    for name, (body, headers, status, error) in cases.items():
        reply = request(url, body, headers=headers)
        assert (reply.status, reply.body.get("error") if isinstance(reply.body, dict) else reply.body) == \
            (status, error), name
        _rejected(reply)
    assert predict(served["url"], {"instances": [EXAMPLE]}).status == 200  # still serving


json_values = st.recursive(
    st.one_of(st.floats(allow_nan=False), st.integers(), st.text(max_size=5), st.booleans(), st.none()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=3), inner, max_size=4)),
    max_leaves=12)
bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.lists(st.dictionaries(st.sampled_from([*FEATURES, "z"]), json_values, max_size=5), max_size=4)
    .map(lambda rows: json.dumps({"instances": rows}).encode()),
    st.lists(st.lists(json_values, max_size=5), max_size=4).map(lambda rows: json.dumps({"inputs": rows}).encode()),
)


@settings(max_examples=40, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_fuzzed_bodies_over_http_never_get_a_500(served: dict[str, Any], body: bytes) -> None:
    reply = request(served["url"] + "/predict", body)
    assert reply.status != 500 and reply.status < 500, (reply.status, reply.body, body[:200])
    if reply.status != 200:
        _rejected(reply)


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    seen, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo += children.get(pid, [])
    return seen


def _cmd(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:80]
    except OSError:
        return "?"


def test_sockets_raymlops_opens_listen_on_loopback_only(served: dict[str, Any]) -> None:
    """What raymlops opens (Serve's HTTP port, /metrics of the replicas and of the monitor) is on
    127.0.0.1. Ray itself listens on every interface (GCS, raylet, and one gRPC port per worker
    process, RAY-NOTES.md): raymlops' own actors (monitor, control) may have only what a plain
    actor has."""
    import ray

    @ray.remote(num_cpus=0)
    class Plain:
        def pid(self) -> int:
            return os.getpid()

    plain = Plain.remote()  # type: ignore[attr-defined]
    plain_pid = ray.get(plain.pid.remote())
    ours = _descendants(os.getpid())  # this test's Ray: GCS, raylet, workers (Serve proxy, replicas, monitor)
    sockets = [(a, p, pid) for a, p, pid in listening_sockets() if pid in ours]
    ray.kill(plain)
    by_port = {p: a for a, p, _ in sockets}
    for name, port in served["ports"].items():  # what raymlops opened: Serve's HTTP, both /metrics
        assert by_port.get(port) == "127.0.0.1", (name, port, by_port.get(port))

    def public(pid: int) -> list[int]:
        return sorted(p for a, p, q in sockets if q == pid and a not in ("127.0.0.1", "::1"))

    baseline = len(public(plain_pid))
    assert baseline >= 1  # Ray's worker gRPC port: the yardstick
    for pid in {q for _, _, q in sockets}:
        cmd = _cmd(pid)
        if cmd.startswith(("ray::DriftMonitor", "ray::ServeControl ")) or cmd.strip() == "ray::ServeControl":
            assert len(public(pid)) == baseline, (cmd, public(pid), baseline)


def test_replica_killed_under_steady_load(served: dict[str, Any]) -> None:
    r = kill_replica_under_load(served["url"], ROUTE, {"instances": [EXAMPLE]}, before_s=3.0, after_s=10.0,
                                threads=4)
    assert r["requests"] > 100, r
    assert r["failed_pct"] < 0.5, r
    assert r["throughput_back_s"] is not None and r["throughput_back_s"] < 10.0, r  # the other replica takes over
    assert r["replica_replaced_s"] is not None, r  # and Serve starts a new one
