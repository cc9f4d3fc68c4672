"""Run in a subprocess by test_high_throughput.py: a private Ray started with Serve's HAProxy
ingress made loopback-safe (raymlops.serve.throughput), one deployment, one request, and every
listening socket of that HAProxy, the app's replica and the fallback proxy. Prints one JSON line."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


from tests.ports import free_port  # noqa: E402 - after the path insert above


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


def main() -> None:
    os.environ.pop("RAY_ADDRESS", None)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    from raymlops.serve.throughput import prepare_high_throughput

    env = prepare_high_throughput()
    folder = env["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"]
    home = tempfile.mkdtemp(prefix="raymlops-ha-")
    import ray
    from ray import serve

    from raymlops.config import ServeConfig
    from raymlops.ray_session import NAMESPACE, PRIVATE_RAY_CONFIG
    from raymlops.serve.traffic import deploy_model
    from tests.integration.serving_helpers import Load, predict, request, toy_store

    app = "haloop"
    result: dict[str, object] = {}
    ray.init(address="local", include_dashboard=False, _system_config=PRIVATE_RAY_CONFIG, namespace=NAMESPACE,
             log_to_driver=False, logging_level=logging.ERROR)
    try:
        store = toy_store(Path(home) / "home", name=app)
        port = free_port()
        url = deploy_model(store, f"{app}@champion", serve_config=ServeConfig(port=port, high_throughput=True))
        reply = predict(url, {"inputs": [[0.1, 0.2, 0.3, 0.4]]})
        result["status"] = reply.status
        result["version"] = reply.headers.get("x-model-version")
        v2 = request(f"{url}/v2/models/{app}/infer", json.dumps(
            {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [0.1, 0.2, 0.3, 0.4]}]}).encode())
        result["oip_status"] = v2.status
        ours = []
        for addr, name, pid in listeners():
            line = cmdline(pid)
            if name == "haproxy" and folder in line:
                ours.append([addr, "haproxy"])
            elif f"ServeReplica:{app}:" in line:  # (ss shows the first 15 characters of the name)
                # Serve's direct-ingress HTTP port comes from RAY_SERVE_DIRECT_INGRESS_MIN/MAX_HTTP_PORT
                # (30000-31000); the replica's other listeners are Ray's own (its core worker port
                # and Serve's inter-deployment gRPC server), which Ray binds on every interface
                http = 30000 <= int(addr.rsplit(":", 1)[1]) <= 31000
                ours.append([addr, "replica" if http else "ray-internal"])
        fallback = env["RAY_SERVE_FALLBACK_PROXY_HTTP_PORT"]
        ours += [[addr, "fallback"] for addr, _, _ in listeners() if addr.endswith(f":{fallback}")]
        result["listeners"] = ours
        result["ports"] = {"http": port, "stats": int(env["RAY_SERVE_HAPROXY_STATS_PORT"]),
                           "metrics": int(env["RAY_SERVE_HAPROXY_METRICS_PORT"]), "fallback": int(fallback)}
        socks = [p for p in Path(folder).rglob("admin.sock")]
        result["admin_socket_modes"] = [oct(stat.S_IMODE(p.stat().st_mode)) for p in socks]
        # a stop asked for while requests are in flight: quick, and none of them dropped
        from raymlops.serve.deploy import undeploy

        with Load(url, lambda i: {"inputs": [[0.1, 0.2, 0.3, 0.4]]}, threads=4) as load:
            load.wait_for(20, timeout_s=30)
            t0 = time.monotonic()
            undeploy(app, shutdown=False)
            result["undeploy_s"] = round(time.monotonic() - t0, 2)
        sent_before = [(t, status) for t, status, _ in load.replies if t < t0]
        result["in_flight_ok"] = sum(1 for _, status in sent_before if status == 200)
        result["in_flight_failed"] = sum(1 for _, status in sent_before if status != 200)
        result["load_errors_before_stop"] = len(load.errors)  # connection errors (none expected before 404s)
        deploy_model(store, f"{app}@champion", serve_config=ServeConfig(port=port, high_throughput=True))
        t0 = time.monotonic()
        serve.shutdown()
        result["shutdown_s"] = round(time.monotonic() - t0, 2)
    finally:
        serve.shutdown()
        ray.shutdown()
        for pid_dir in Path("/proc").iterdir():  # an HAProxy of this run that outlived Ray
            if pid_dir.name.isdigit() and "haproxy" in cmdline(int(pid_dir.name)) and folder in cmdline(
                    int(pid_dir.name)):
                os.kill(int(pid_dir.name), signal.SIGTERM)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
