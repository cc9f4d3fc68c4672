"""Deploying a registered model with Ray Serve on loopback, and taking it down."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import time
import urllib.error
import urllib.request
from typing import Any

from raymlops.exceptions import ServeError


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _serve_running() -> bool:
    from ray import serve

    try:
        serve.status()
    except Exception:  # Serve not started on this cluster
        return False
    return True


def http_json(method: str, url: str, body: Any = None, timeout: float = 10.0) -> tuple[int, Any]:
    """(status, parsed JSON body) of one loopback HTTP call; never raises on HTTP errors."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback URL we built
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode(errors="replace")


def deploy(spec: dict[str, Any], route: str, host: str, port: int, num_replicas: int, wait_s: float = 120.0) -> str:
    """Run the model app at ``/<route>`` and wait until ``/health`` answers; returns the base URL."""
    from ray import serve

    from raymlops.serve.app import ModelServer

    logging.getLogger("ray.serve").setLevel(logging.WARNING)

    if not _serve_running() and not port_free(host, port):
        raise ServeError(
            f"port {port} on {host} is in use by another program; set serve.port in the config or stop that program"
        )
    serve.start(http_options={"host": host, "port": port})
    batch = int(spec["max_batch_size"])
    server: Any = ModelServer  # a serve.Deployment at run time
    app = server.options(num_replicas=num_replicas, max_ongoing_requests=max(64, 2 * batch)).bind(spec)
    try:
        serve.run(app, name=route, route_prefix=f"/{route}")
    except Exception as exc:
        raise ServeError(f"deployment of {spec['model_id']} failed: {_root_message(exc)}") from exc
    client_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    endpoint = f"http://{client_host}:{port}/{route}"
    deadline = time.monotonic() + wait_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            status, last = http_json("GET", f"{endpoint}/health", timeout=5)
            if status == 200:
                return endpoint
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    raise ServeError(f"{endpoint}/health did not answer within {wait_s:.0f} s (last: {last})")


def _root_message(exc: BaseException) -> str:
    text = str(exc)
    for marker in ("IntegrityError: ", "raymlops.exceptions."):
        if marker in text:
            text = text[text.rindex(marker) + len(marker):]
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def undeploy(route: str, shutdown: bool = True) -> None:
    from ray import serve

    with contextlib.suppress(Exception):  # already gone
        serve.delete(route)
    if shutdown:
        serve.shutdown()
