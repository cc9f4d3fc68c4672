"""Deploying a registered model with Ray Serve on loopback, and taking it down.

:func:`deploy` starts (or replaces) the Serve application of one route: the route's control
actor with a traffic table whose champion is the given model, and the ``ModelServer``
deployment (replicas or autoscaling from ``serve``). The artifact's sha256 is checked here
before anything starts, and again by every replica before it loads the model.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import time
import urllib.error
import urllib.request
from typing import Any

from raymlops.config import ServeConfig
from raymlops.exceptions import IntegrityError, NotFound, ServeError
from raymlops.ray_session import NAMESPACE
from raymlops.registry.spec import ModelSpec
from raymlops.serve.routing import TrafficTable
from raymlops.serve.settings import SHADOW_LOG_SIZE, ReplicaSettings, deployment_options, new_deploy_id
from raymlops.serve.throughput import check_cluster_ingress


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def serve_running() -> bool:
    """Whether Serve runs on the connected Ray. (``serve.status()`` answers without Serve too, with
    no proxies: a running Serve has at least one.)"""
    from ray import serve

    try:
        return bool(serve.status().proxies)
    except Exception:  # no Ray, or Serve's controller going away
        return False


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


def verify_artifact(model: ModelSpec) -> None:
    """ServeError naming the model when its artifact is missing or changed (before deploying)."""
    try:
        model.verify()
    except (IntegrityError, NotFound) as exc:
        raise ServeError(f"deployment of {model.model_id} refused: {exc}") from None


def _http_address(host: str, port: int) -> tuple[str, int]:
    """The address Serve's HTTP ingress really listens on (it keeps its first options)."""
    try:
        from ray.serve.context import _get_global_client

        client = _get_global_client()
        config: Any = client.http_config if client is not None else None
        if config is not None and config.port:
            return str(config.host or host), int(config.port)
    except Exception:  # private API moved: trust what we asked for
        pass
    return host, port


def deploy(
    model: ModelSpec,
    route: str,
    serve_config: ServeConfig | None = None,
    *,
    monitor_actor: str | None = None,
    sample_rate: float = 1.0,
    namespace: str = NAMESPACE,
    wait_s: float = 120.0,
    challenger: ModelSpec | None = None,
    mode: str | None = None,
    weight: float = 0.0,
    key: str | None = None,
) -> str:
    """Run ``model`` at ``/<route>`` and wait until ``/health`` answers; returns the base URL.

    ``serve_config`` (default: ``ServeConfig()``): host, port, replicas or autoscaling, limits,
    batching, validation policy and the monitor hand-off; the replicas receive it whole (see
    :mod:`raymlops.serve.settings`). ``monitor_actor``: the route's monitor, by name;
    ``sample_rate``: ``monitor.sample_rate``. ``challenger``/``mode``/``weight``/``key``: start
    with a challenger (see :mod:`raymlops.serve.routing`).
    """
    from ray import serve

    # Ray Serve (~2 s): only to deploy; http_json's callers (`raymlops status`, the demo) need no Ray
    from raymlops.serve.app import ModelServer
    from raymlops.serve.control import ensure_control

    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    cfg = ServeConfig() if serve_config is None else serve_config
    host, port = cfg.host, cfg.port
    try:
        table = TrafficTable(champion=model).with_challenger(challenger, mode, weight, key)
    except Exception as exc:
        raise ServeError(f"deployment of {model.model_id} refused: {exc}") from None
    for m in (table.champion, table.challenger):
        if m is not None:
            verify_artifact(m)

    # serve.high_throughput true: the cluster must have HAProxy; unset: say once how to get it
    note = check_cluster_ingress(cfg.high_throughput)
    if note:
        logging.getLogger("raymlops.serve").warning("%s", note)

    if not serve_running() and not port_free(host, port):
        raise ServeError(
            f"port {port} on {host} is in use by another program; set serve.port in the config or stop that program"
        )
    try:
        serve.start(http_options={"host": host, "port": port})
    except Exception as exc:
        taken = _port_error(exc, host, port)
        if taken is None:
            raise
        raise taken from exc
    # labels need a bearer token wherever Serve really listens beyond loopback (raymlops.serve.auth)
    s = ReplicaSettings.of(cfg, route, namespace=namespace, monitor_actor=monitor_actor, sample_rate=sample_rate,
                           deploy_id=new_deploy_id(), host=_http_address(host, port)[0])
    control = ensure_control(route, s.namespace, shadow_log_size=SHADOW_LOG_SIZE, metrics_port=cfg.metrics_port,
                             metrics_host=s.metrics_host)
    import ray

    ray.get(control.adopt.remote(s.deploy_id, table.to_dict()))
    server: Any = ModelServer  # a serve.Deployment at run time
    options = deployment_options(cfg)
    app = server.options(**options).bind(s.to_dict(), table.to_dict())
    existed = _app_exists(route)
    try:
        serve.run(app, name=route, route_prefix=f"/{route}")
    except Exception as exc:
        taken = _port_error(exc, host, port)
        if taken is not None:
            if not existed:
                undeploy(route, shutdown=False, namespace=s.namespace)
            raise taken from exc
        why = _root_message(exc)
        texts = list(_serve_messages(route))  # the replicas' own error (a changed artifact, ...)
        for text in texts:
            if "Error" in text:
                why = _root_message(RuntimeError(text))
                break
        if not existed:  # leave no failed app (nor its control actor) behind
            undeploy(route, shutdown=False, namespace=s.namespace)
        err = ServeError(f"deployment of {model.model_id} failed: {why}")
        err.replica_texts = texts  # type: ignore[attr-defined]  # for the run record's traceback
        raise err from exc
    real_host, real_port = _http_address(host, port)
    client_host = "127.0.0.1" if real_host in ("0.0.0.0", "::", "") else real_host
    endpoint = f"http://{client_host}:{real_port}/{route}"
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


_BIND_FAILURES = ("Failed to bind to address", "cannot bind socket", "Address already in use")


def _port_error(exc: BaseException, host: str, port: int) -> ServeError | None:
    """The one-line "port in use" error when Serve's ingress (its Python proxy, or HAProxy, which
    reports "cannot bind socket" and exits) could not listen on the configured port; else None."""
    text = str(exc)
    if not any(marker in text for marker in _BIND_FAILURES):
        return None
    return ServeError(f"port {port} on {host} is in use by another program (Serve's ingress could not listen "
                      "on it); set serve.port in the config or stop that program")


def _app_exists(route: str) -> bool:
    from ray import serve

    try:
        return route in serve.status().applications
    except Exception:  # Serve not running yet
        return False


def _serve_messages(route: str) -> list[str]:
    """Status messages of the app's deployments (where Serve puts a replica's constructor error)."""
    from ray import serve

    try:
        app = serve.status().applications.get(route)
    except Exception:  # Serve itself is down: nothing more to learn
        return []
    if app is None:
        return []
    texts = [d.message for d in app.deployments.values() if getattr(d, "message", "")]
    return texts + ([app.message] if app.message else [])


def _root_message(exc: BaseException) -> str:
    """The innermost error line of a (Ray-wrapped) exception, without the traceback."""
    text = str(exc)
    for marker in ("IntegrityError: ", "raymlops.exceptions."):
        if marker in text:
            text = text[text.rindex(marker) + len(marker):]
            return text.strip().splitlines()[0]
    errors = [ln.strip() for ln in text.splitlines() if re.match(r"^[A-Za-z_][\w.]*(Error|Exception): ", ln.strip())]
    if errors:
        return errors[-1]
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def undeploy(route: str, shutdown: bool = True, namespace: str = NAMESPACE) -> None:
    """Delete the route's Serve app and control actor (``shutdown``: Serve too). The replicas
    drain: requests in flight finish (bounded by the deployment's graceful_shutdown_timeout_s)."""

    # imports Ray: only to undeploy (see deploy())
    from raymlops.serve.control import stop_control

    # the app first, whatever comes after: its replicas finish the requests in flight while the
    # ingress still carries their answers (serve.shutdown() alone took HAProxy down with them, and
    # Ctrl-C on `raymlops run --serve` dropped every request in flight)
    with contextlib.suppress(Exception):  # already gone, or Serve not running
        delete_app(route)
    if shutdown:
        shutdown_serve()
    with contextlib.suppress(Exception):  # Ray already down
        stop_control(route, namespace)


def shutdown_serve(timeout_s: float = 30.0) -> None:
    """``serve.shutdown()``, without the warning Ray prints on the driver's stdout each time.

    ``serve.shutdown()`` asks the controller to shut down and waits on that call until the
    controller kills itself; the call then fails while its retries are infinite, and Ray's core
    worker publishes "(raylet) Task ServeController.graceful_shutdown failed. There are infinite
    retries remaining ..." to the driver, in the middle of ``raymlops run``'s output. Here the
    controller is told to shut down without waiting (``graceful_shutdown(wait=False)``), it is
    waited for by name until it is gone, and ``serve.shutdown()`` then only forgets it."""
    import ray
    from ray import serve

    try:  # Serve's own names for its controller (not public: a Ray without them shuts down Serve's way)
        from ray.serve._private.constants import SERVE_CONTROLLER_NAME, SERVE_NAMESPACE
    except ImportError:
        serve.shutdown()
        return
    try:
        controller = ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
        ray.get(controller.graceful_shutdown.remote(False), timeout=timeout_s)
    except (ValueError, ray.exceptions.RayError):  # no Serve running, or it went already
        controller = None
    deadline = time.monotonic() + timeout_s
    while controller is not None and time.monotonic() < deadline:
        try:
            ray.get_actor(SERVE_CONTROLLER_NAME, namespace=SERVE_NAMESPACE)
        except ValueError:  # gone: its apps, proxies and HAProxy are shut down
            break
        time.sleep(0.1)
    serve.shutdown()


def delete_app(route: str, timeout_s: float = 60.0) -> None:
    """``serve.delete(route)``, waiting for it in 0.1 s steps (Serve's own wait polls once a
    second, which made a 1 s drain take 2 s)."""
    from ray import serve

    serve.delete(route, _blocking=False)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app = serve.status().applications.get(route)
        if app is None or str(app.status).rsplit(".", 1)[-1] == "NOT_STARTED":
            return
        time.sleep(0.1)
    raise ServeError(f"the Serve app {route!r} was not deleted within {timeout_s:.0f} s")
