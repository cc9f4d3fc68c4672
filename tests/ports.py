"""Loopback ports for the tests' servers, chosen outside the ranges the OS and Ray hand out.

A port from ``bind(0)`` is an ephemeral one (32768-60999 on Linux), and Ray's worker processes
take ports in 10002-19999 (``min_worker_port`` / ``max_worker_port``); Serve's direct ingress
starts at 30000. With two test processes each running a Ray, a port chosen the ephemeral way
is often taken by the other Ray's processes before the test's server binds it. Ports here come
from 20000-29999, which nothing takes on its own: each test process (pytest-xdist worker) draws
from its own share of that range, so two processes never pick the same one."""

from __future__ import annotations

import contextlib
import os
import random
import socket
from collections.abc import Iterator

LOW, HIGH = 20_000, 30_000


def _share() -> range:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = max(int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")), 1)
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    size = (HIGH - LOW) // count
    return range(LOW + index * size, LOW + (index + 1) * size)


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports that nothing listens on now (held together while choosing)."""
    share, socks = _share(), []
    try:
        for _ in range(100 * n):
            if len(socks) == n:
                break
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", random.choice(share)))
            except OSError:
                s.close()
                continue
            socks.append(s)
        if len(socks) < n:
            raise RuntimeError(f"no {n} free ports in {share}")
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    """A port that nothing listens on now."""
    return free_ports(1)[0]


#: Serve's HAProxy ingress ports: chosen when the Ray starts, bound at each Serve start
HAPROXY_PORTS = ("RAY_SERVE_HAPROXY_STATS_PORT", "RAY_SERVE_HAPROXY_METRICS_PORT",
                 "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT", "RAY_SERVE_FALLBACK_PROXY_GRPC_PORT")
#: the variables this process's Ray was started with for its ingress (ports, HAProxy's folder; empty
#: when it serves through Serve's Python proxy): ``test_high_throughput`` checks that ingress
SESSION_INGRESS: dict[str, str] = {}


def start_session_ray() -> None:
    """This test process's local Ray, with the ingress ``raymlops run`` gets (Serve's HAProxy where
    it exists), its ports from this process's range. The variables that set it up are removed from
    this process's environment once the Ray has them, so a ``raymlops`` the tests start in a
    subprocess sets up its own Ray and ports, as a user's would."""
    import logging

    import ray

    from raymlops.ray_session import NAMESPACE, PRIVATE_RAY_CONFIG, ensure_ray, quiet_ray_logs
    from raymlops.serve.throughput import clear_high_throughput, fast_ingress_for_private_ray

    os.environ.pop("RAY_ADDRESS", None)
    quiet_ray_logs()
    chosen = {name: str(port) for name, port in zip(HAPROXY_PORTS, free_ports(len(HAPROXY_PORTS)), strict=True)}
    os.environ.update(chosen)
    env = fast_ingress_for_private_ray(None) or {}
    try:
        ray.init(address="local", include_dashboard=False, _system_config=PRIVATE_RAY_CONFIG, namespace=NAMESPACE,
                 log_to_driver=False, logging_level=logging.ERROR)
    finally:
        clear_high_throughput({**chosen, **env})
    SESSION_INGRESS.update(env and {**chosen, **env})
    ensure_ray()  # reuses this Ray and applies raymlops' Ray Data settings (row order, no progress bars)


@contextlib.contextmanager
def session_ray() -> Iterator[None]:
    """The test process's Ray for a tier's session fixture: started here (:func:`start_session_ray`)
    unless the other tier's fixture already started it in this process; Serve and Ray stop on exit
    only where they were started here."""
    import ray

    if ray.is_initialized():
        yield
        return
    start_session_ray()
    try:
        yield
    finally:
        from ray import serve

        serve.shutdown()
        ray.shutdown()
