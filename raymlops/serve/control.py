"""Ray adapter: the control actor of one served route (``raymlops-serve-<route>``, detached).

It holds the route's traffic table and is the one place it changes: :meth:`ServeControl.set_table`
bumps the epoch atomically and wakes every replica long-polling :meth:`~ServeControl.wait_table`.
Each replica loads the models of the new table *beside* the ones it serves, swaps in one
assignment, and acknowledges; the caller waits for every live replica's acknowledgement
(:meth:`~ServeControl.wait_acks`). Requests in flight keep the model objects they started
with, so a swap neither fails nor drops a request.

It also sums the replicas' metrics (:class:`raymlops.serve.metrics.MetricsAggregator`) and keeps
a bounded log of shadow comparisons.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from typing import Any

import ray

from raymlops.serve.metrics import MetricsAggregator
from raymlops.serve.routing import TrafficTable

LIVE_AFTER_S = 5.0  # a replica that has not pushed for this long is not waited for


def control_name(route: str) -> str:
    return f"raymlops-serve-{route}"


class ServeControl:
    """State of one route; async actor (every method runs on one event loop: no locks needed)."""

    def __init__(self, route: str, shadow_log_size: int = 1000, metrics_port: int | None = None,
                 metrics_host: str = "127.0.0.1") -> None:
        self.route = route
        self.deploy_id = ""
        self.table: dict[str, Any] | None = None
        self.epoch = 0
        self.replicas: dict[str, dict[str, Any]] = {}
        self.metrics = MetricsAggregator()
        self.shadow: deque[dict[str, Any]] = deque(maxlen=max(1, int(shadow_log_size)))
        self._changed: asyncio.Event | None = None
        self.metrics_url: str | None = None
        if metrics_port:
            from prometheus_client import CollectorRegistry, start_http_server

            registry = CollectorRegistry(auto_describe=False)
            registry.register(self.metrics)
            start_http_server(int(metrics_port), addr=metrics_host, registry=registry)
            self.metrics_url = f"http://{metrics_host}:{metrics_port}/metrics"

    # -- the table ----------------------------------------------------------------------------
    def _event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def _install(self, table: dict[str, Any]) -> dict[str, Any]:
        TrafficTable.from_dict(table)  # refuse a malformed table before anyone sees it
        self.epoch += 1
        self.table = dict(table, epoch=self.epoch)
        old = self._event()
        self._changed = asyncio.Event()
        old.set()
        summary = TrafficTable.from_dict(self.table).summary()
        self.metrics.set_gauges("raymlops_serve_traffic_share",
                                (((self.route, v), share) for v, share in summary["shares"].items()))
        self.metrics.set_gauges("raymlops_serve_traffic_epoch", [((self.route,), self.epoch)])
        return self.table

    def adopt(self, deploy_id: str, table: dict[str, Any]) -> dict[str, Any]:
        """Take ``table`` when ``deploy_id`` is a newer deployment of the route (or we have none)."""
        if self.table is None or deploy_id > self.deploy_id:
            self.deploy_id = deploy_id
            self.replicas.clear()
            return self._install(table)
        return self.table

    def attach(self, replica_id: str, deploy_id: str, table: dict[str, Any]) -> dict[str, Any]:
        """A replica starts: it serves the current table (its own only if it is newer)."""
        current = self.adopt(deploy_id, table)
        self.replicas[replica_id] = {"seen": time.monotonic(), "epoch": None, "error": None}
        return current

    def detach(self, replica_id: str) -> None:
        self.replicas.pop(replica_id, None)

    def get_table(self) -> dict[str, Any] | None:
        return self.table

    def set_table(self, table: dict[str, Any], expect_epoch: int | None = None) -> dict[str, Any]:
        """Install ``table`` as the next epoch; with ``expect_epoch``, only if nobody changed it
        since (two operators cannot overwrite each other's change unknowingly)."""
        if expect_epoch is not None and expect_epoch != self.epoch:
            raise ValueError(f"the traffic table of {self.route!r} changed meanwhile (epoch {self.epoch}, "
                             f"expected {expect_epoch}); look again and retry")
        return self._install(table)

    async def wait_table(self, epoch: int, timeout_s: float = 30.0) -> dict[str, Any] | None:
        """The table once its epoch is past ``epoch`` (long poll); None after ``timeout_s``."""
        event = self._event()
        if self.table is not None and self.epoch > epoch:
            return self.table
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=timeout_s)
        return self.table if self.table is not None and self.epoch > epoch else None

    def ack(self, replica_id: str, epoch: int, error: str | None = None) -> None:
        info = self.replicas.setdefault(replica_id, {"seen": time.monotonic(), "epoch": None, "error": None})
        info["seen"] = time.monotonic()
        if error is None:
            info["epoch"] = max(int(info["epoch"] or 0), int(epoch))
            info["error"] = None
        else:
            info["error"] = (int(epoch), error)

    def _live(self) -> dict[str, dict[str, Any]]:
        now = time.monotonic()
        return {rid: info for rid, info in self.replicas.items() if now - info["seen"] <= LIVE_AFTER_S}

    def _running(self) -> set[str] | None:
        """Ids of the route's RUNNING replicas according to Serve (None when Serve cannot say)."""
        try:
            from ray.serve.context import _get_global_client

            client: Any = _get_global_client()
            details = client.get_serve_details()
            app = (details.get("applications") or {}).get(self.route) or {}
            return {str(r["replica_id"]) for dep in (app.get("deployments") or {}).values()
                    for r in dep.get("replicas") or [] if r.get("state") == "RUNNING"}
        except Exception:  # private API moved, or Serve is shutting down: heartbeats decide
            return None

    async def wait_acks(self, epoch: int, timeout_s: float = 60.0) -> dict[str, Any]:
        """Wait until every replica that may still answer requests serves ``epoch`` (or
        reported that it cannot).

        That is every replica Serve reports RUNNING, and also every replica that sent a
        heartbeat within ``LIVE_AFTER_S``: a replica Serve is replacing (say, after a slow health
        check on a loaded machine) is STOPPING, not RUNNING, yet proxies with a stale view may still
        route new requests to it until it drains. A replica silent for ``LIVE_AFTER_S`` is gone."""
        deadline = time.monotonic() + timeout_s
        running: set[str] | None = None
        asked = 0.0
        while True:
            if time.monotonic() - asked > 0.5:
                running, asked = self._running(), time.monotonic()
            expected = set(self._live()) | (running or set())
            infos = {rid: self.replicas.get(rid, {"epoch": None, "error": None}) for rid in expected}
            errors = {rid: info["error"][1] for rid, info in infos.items()
                      if info["error"] is not None and info["error"][0] >= epoch}
            pending = [rid for rid, info in infos.items() if rid not in errors and int(info["epoch"] or 0) < epoch]
            if errors or not pending or time.monotonic() >= deadline:
                return {"epoch": epoch, "replicas": len(expected), "pending": sorted(pending), "errors": errors}
            await asyncio.sleep(0.05)

    # -- metrics, heartbeats, shadow log ------------------------------------------------------
    def push(self, replica_id: str, epoch: int, deltas: dict[str, Any],
             shadow: list[dict[str, Any]] | None = None) -> int:
        """A replica's heartbeat: its metric deltas and shadow records; returns the table epoch."""
        info = self.replicas.setdefault(replica_id, {"seen": 0.0, "epoch": None, "error": None})
        info["seen"] = time.monotonic()
        info["epoch"] = max(int(info["epoch"] or 0), int(epoch))
        self.metrics.merge(deltas)
        if shadow:
            self.shadow.extend(shadow)
        return self.epoch

    def exposition(self) -> bytes:
        self.metrics.set_gauges("raymlops_serve_replicas", [((self.route,), len(self._live()))])
        return self.metrics.exposition()

    def counter(self, name: str, labels: dict[str, str] | None = None) -> float:
        return self.metrics.value(name, **(labels or {}))

    def shadow_log(self, limit: int | None = None) -> list[dict[str, Any]]:
        items = list(self.shadow)
        return items[-limit:] if limit else items

    def status(self) -> dict[str, Any]:
        live = self._live()
        summary = TrafficTable.from_dict(self.table).summary() if self.table else None
        return {"route": self.route, "deploy_id": self.deploy_id, "epoch": self.epoch, "traffic": summary,
                "replicas": {rid: {"epoch": info["epoch"], "error": info["error"]} for rid, info in live.items()},
                "shadow_records": len(self.shadow), "metrics_url": self.metrics_url}


def ensure_control(route: str, namespace: str, *, shadow_log_size: int = 1000, metrics_port: int | None = None,
                   metrics_host: str = "127.0.0.1") -> Any:
    """The route's control actor, started (detached, so replicas outlive the deploying driver) if
    it is not running."""
    return ray.remote(ServeControl).options(
        name=control_name(route), namespace=namespace, lifetime="detached", get_if_exists=True,
        num_cpus=0, max_concurrency=1000, max_restarts=-1,
    ).remote(route, shadow_log_size, metrics_port, metrics_host)


def get_control(route: str, namespace: str) -> Any | None:
    try:
        return ray.get_actor(control_name(route), namespace=namespace)
    except ValueError:
        return None


def stop_control(route: str, namespace: str) -> None:
    handle = get_control(route, namespace)
    if handle is not None:
        with contextlib.suppress(Exception):
            ray.kill(handle, no_restart=True)


def live_routes(namespace: str) -> list[str]:
    """Routes with a control actor on the connected cluster."""
    from ray.util import list_named_actors

    prefix = control_name("")
    out = []
    for entry in list_named_actors(all_namespaces=True):
        name = entry["name"] if isinstance(entry, dict) else str(entry)
        ns = entry.get("namespace") if isinstance(entry, dict) else namespace
        if ns == namespace and name.startswith(prefix):
            out.append(name[len(prefix):])
    return sorted(out)
