"""Serve's HAProxy ingress (serve.high_throughput), made loopback-safe, as this session's Ray runs it
(``tests.ports.start_session_ray`` starts it the way ``raymlops run`` starts a private Ray; the mode is
read when Ray starts): requests are answered, and every listener of that HAProxy (HTTP, stats,
Prometheus), the replica's direct-ingress HTTP port and the fallback proxy is on 127.0.0.1; a stop
with requests in flight is quick and drops none of them. (Ray's own cluster ports, a replica's
core-worker and inter-deployment gRPC ports among them, listen on every interface by Ray's design;
see the README.) The test ends with Serve shut down: the next deploy starts it again."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from raymlops.config import ServeConfig
from raymlops.store.home import Store
from tests.ports import SESSION_INGRESS

from .conftest import serve_port
from .serving_helpers import Load, predict, request, toy_store

pytestmark = pytest.mark.integration

APP = "haloop"


def listeners() -> list[tuple[str, str, int]]:
    """(local address, process name, pid) of every listening TCP socket."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 6:
            continue
        for name, pid in ((u.split('"')[1], int(u.split("pid=")[1].split(",")[0]))
                          for u in parts[5].split("),(") if "pid=" in u):
            rows.append((parts[3], name, pid))
    return rows


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to list listening sockets")
def test_haproxy_mode_serves_and_listens_on_loopback_only(ray_session: None, tmp_path: Path) -> None:
    from ray import serve

    from raymlops.serve.deploy import undeploy
    from raymlops.serve.traffic import deploy_model

    folder = SESSION_INGRESS.get("RAY_SERVE_HAPROXY_SERVER_STATE_BASE")
    assert folder, f"this session's Ray serves through Serve's Python proxy (no HAProxy binary?): {SESSION_INGRESS}"
    store: Store = toy_store(tmp_path / "home", name=APP)
    port = serve_port()
    url = deploy_model(store, f"{APP}@champion", serve_config=ServeConfig(port=port, high_throughput=True))
    try:
        reply = predict(url, {"inputs": [[0.1, 0.2, 0.3, 0.4]]})
        assert reply.status == 200 and reply.headers.get("x-model-version") == f"{APP}:v1"
        v2 = request(f"{url}/v2/models/{APP}/infer", json.dumps(
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0.1, 0.2, 0.3, 0.4]}]}).encode())
        assert v2.status == 200  # the v2 routes through HAProxy too

        fallback = SESSION_INGRESS["RAY_SERVE_FALLBACK_PROXY_HTTP_PORT"]
        expected = {port, int(SESSION_INGRESS["RAY_SERVE_HAPROXY_STATS_PORT"]),
                    int(SESSION_INGRESS["RAY_SERVE_HAPROXY_METRICS_PORT"]), int(fallback)}
        deadline = time.monotonic() + 15
        while True:  # HAProxy reloads as the app is added: its new process may not hold the sockets yet
            serving = []
            for addr, name, pid in listeners():
                line = cmdline(pid)
                if name == "haproxy" and folder in line:
                    serving.append((addr, "haproxy"))
                elif f"ServeReplica:{APP}:" in line and 30000 <= int(addr.rsplit(":", 1)[1]) <= 31000:
                    # Serve's direct-ingress HTTP port comes from RAY_SERVE_DIRECT_INGRESS_MIN/MAX_HTTP_PORT
                    # (30000-31000); the replica's other listeners are Ray's own (its core worker port and
                    # Serve's inter-deployment gRPC server), which Ray binds on every interface
                    serving.append((addr, "replica"))
            serving += [(addr, "fallback") for addr, _, _ in listeners() if addr.endswith(f":{fallback}")]
            ports = {int(addr.rsplit(":", 1)[1]) for addr, _ in serving}
            if expected <= ports or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert expected <= ports, serving
        assert {name for _, name in serving} == {"haproxy", "replica", "fallback"}, serving
        wide = [f"{name} {addr}" for addr, name in serving if not addr.startswith("127.0.0.1:")]
        assert not wide, f"listening beyond loopback: {wide}"
        modes = [oct(stat.S_IMODE(p.stat().st_mode)) for p in Path(folder).rglob("admin.sock")]
        assert modes and set(modes) == {"0o600"}, modes

        # a stop asked for while requests are in flight: quick (Ray's default drain behind HAProxy took
        # ~30 s), and none of them dropped
        with Load(url, lambda i: {"inputs": [[0.1, 0.2, 0.3, 0.4]]}, threads=4) as load:
            load.wait_for(20, timeout_s=30)
            t0 = time.monotonic()
            undeploy(APP, shutdown=False)
            undeploy_s = time.monotonic() - t0
        sent_before = [status for t, status, _ in load.replies if t < t0]
        assert sent_before and all(status == 200 for status in sent_before), sent_before
        assert undeploy_s <= 6, undeploy_s
        deploy_model(store, f"{APP}@champion", serve_config=ServeConfig(port=port, high_throughput=True))
        t0 = time.monotonic()
        serve.shutdown()
        assert time.monotonic() - t0 <= 8
    finally:
        serve.shutdown()
