"""Serve's HAProxy ingress (serve.high_throughput) made loopback-safe, in a separate process with
its own Ray (the mode is read when Ray starts): requests are answered, and every listener of that
HAProxy (HTTP, stats, Prometheus), the replica's direct-ingress HTTP port and the fallback proxy
is on 127.0.0.1; a stop with requests in flight is quick and drops none of them. (Ray's own
cluster ports, a replica's core-worker and inter-deployment gRPC ports among them, listen on every
interface by Ray's design; see the README.)"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

DRIVER = Path(__file__).with_name("ha_driver.py")


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2) to list listening sockets")
def test_haproxy_mode_serves_and_listens_on_loopback_only() -> None:
    out = subprocess.run([sys.executable, str(DRIVER)], capture_output=True, text=True, timeout=420, check=False)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line is not None, out.stdout[-2000:] + out.stderr[-3000:]
    res = json.loads(line[len("RESULT "):])
    assert res["status"] == 200 and res["version"] == "haloop:v1"
    serving = [(addr, name) for addr, name in res["listeners"] if name != "ray-internal"]
    ports = {int(addr.rsplit(":", 1)[1]) for addr, _ in serving}
    assert {res["ports"]["http"], res["ports"]["stats"], res["ports"]["metrics"], res["ports"]["fallback"]} <= ports
    assert {name for _, name in serving} == {"haproxy", "replica", "fallback"}
    wide = [f"{name} {addr}" for addr, name in serving if not addr.startswith("127.0.0.1:")]
    assert not wide, f"listening beyond loopback: {wide}"
    assert res["admin_socket_modes"] and set(res["admin_socket_modes"]) == {"0o600"}
    assert res["oip_status"] == 200  # the v2 routes through HAProxy too
    # quick to stop (Ray's default drain behind HAProxy took ~30 s), dropping no request in flight
    assert res["in_flight_ok"] > 0 and res["in_flight_failed"] == 0, res
    assert res["undeploy_s"] <= 6 and res["shutdown_s"] <= 8, res
