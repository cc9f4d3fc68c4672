"""Ray adapter, driver side: start, find, re-baseline and stop the monitor actors of a route.

The actors themselves are :class:`raymlops.monitor.actor.DriftMonitor`, named by
:mod:`raymlops.monitor.names`; this module starts them with restarts and
checkpoints in the artifact store (:func:`start_monitor`), moves them to a new reference in place
(:func:`rebaseline_monitor`), reads their merged status (:func:`monitor_status`,
:func:`monitor_summary`) and stops them (:func:`stop_monitor`).
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path
from typing import Any

import ray

from raymlops.exceptions import NotFound
from raymlops.monitor.actor import DriftMonitor, monitor_config
from raymlops.monitor.names import PEER_TIMEOUT_S, monitor_name, shard_name
from raymlops.monitor.reference import MonitorReference
from raymlops.store.artifacts import ArtifactStore
from raymlops.store.home import Store

__all__ = ["monitor_handles", "monitor_status", "monitor_summary", "rebaseline_monitor", "start_monitor",
           "stop_monitor"]

# Non-detached actors die when their last handle goes away: the driver keeps one per shard here
# for as long as the deployment lives in this process.
_LIVE: dict[str, list[Any]] = {}
_MAX_SHARDS = 64


def _first(route: str, namespace: str) -> Any:
    try:
        return ray.get_actor(monitor_name(route), namespace=namespace)
    except ValueError:
        raise NotFound(f"no monitor for route {route!r} in namespace {namespace!r}") from None


def monitor_handles(route: str, namespace: str) -> list[Any]:
    """Handles of every shard of ``route``'s monitor, shard 0 first; NotFound when one is missing."""
    first = _first(route, namespace)
    names: list[str] = ray.get(first.shard_names.remote(), timeout=PEER_TIMEOUT_S)
    out = [first]
    for name in names[1:]:
        try:
            out.append(ray.get_actor(name, namespace=namespace))
        except ValueError:
            raise NotFound(f"monitor shard {name!r} of route {route!r} is not running") from None
    return out


def monitor_status(route: str, namespace: str) -> dict[str, Any]:
    """``status()`` of ``route``'s monitor, merged over its shards (what every caller should read);
    a shard that is down is named in ``status["shards"]["missing"]``."""
    out: dict[str, Any] = ray.get(_first(route, namespace).status.remote(), timeout=120)
    return out


def monitor_summary(route: str, namespace: str) -> dict[str, Any]:
    """``summary()`` of ``route``'s monitor, merged over its shards."""
    first = _first(route, namespace)
    out: dict[str, Any] = ray.get(first.summary.remote(), timeout=120)
    return out


def start_monitor(
    route: str, reference: MonitorReference, settings: dict[str, Any], namespace: str, detached: bool,
    *, home: str | Path | None = None, artifact_root: str | None = None,
) -> Any:
    """(Re)start the named monitor actor(s) for ``route``; detached when the cluster outlives us.
    Returns the handle of shard 0 (the only one with ``monitor.shards`` 1).

    With ``home`` (the raymlops home), the reference and checkpoints go to its artifact store
    (``artifact_root`` overrides where) and alerts to its audit log; each actor restarts up to
    ``monitor.max_restarts`` times and resumes from its last checkpoint. Without, the reference
    travels as an argument and there are no checkpoints.
    """
    cfg = monitor_config(settings)
    _kill_shards(route, namespace)
    options: dict[str, Any] = {"namespace": namespace, "num_cpus": 0}
    if detached:
        options["lifetime"] = "detached"
    kwargs: dict[str, Any] = {"settings": dict(settings), "shards": cfg.shards}
    if home is not None or artifact_root is not None:
        root = artifact_root
        if root is None:
            root = Store.open(home).artifacts.root_uri

        key = _store_reference(ArtifactStore(root), route, reference)
        kwargs.update(reference_key=key, artifact_root=root, home=None if home is None else str(home),
                      start_id=uuid.uuid4().hex[:12])
        options["max_restarts"] = cfg.max_restarts
    else:
        kwargs["reference"] = ray.put(reference.to_dict()) if cfg.shards > 1 else reference.to_dict()
    cls: Any = ray.remote(DriftMonitor)
    # the other shards first: shard 0 is what replicas look up, and it names the others
    handles = {i: cls.options(name=shard_name(route, i), **options).remote(route, shard=i, **kwargs)
               for i in [*range(1, cfg.shards), 0]}
    ray.get([h.local_rows.remote() for h in handles.values()])  # wait until all are up
    _LIVE[route] = [handles[i] for i in range(cfg.shards)]
    return handles[0]


def _store_reference(store: Any, route: str, reference: MonitorReference) -> str:
    key = f"monitor/{route}/reference-{reference.digest[:16]}.json"
    store.write_bytes(key, reference.to_json())
    return key


def rebaseline_monitor(route: str, reference: MonitorReference, namespace: str,
                       artifact_root: str | None = None,
                       calibration: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Move the running monitor of ``route`` (every shard, shard 0 first) to ``reference`` in
    place (:meth:`DriftMonitor.rebaseline`); NotFound when it is not running. With
    ``artifact_root`` the reference goes to the store and the actors read it by key.
    ``calibration``: the new model's probability calibration, for estimated performance."""
    handles = monitor_handles(route, namespace)
    if artifact_root is not None:
        key = _store_reference(ArtifactStore(artifact_root), route, reference)
        return [ray.get(h.rebaseline.remote(reference_key=key, calibration=calibration), timeout=120)
                for h in handles]
    return [ray.get(h.rebaseline.remote(reference=reference.to_dict(), calibration=calibration), timeout=120)
            for h in handles]


def _kill_shards(route: str, namespace: str) -> None:
    """Kill every monitor actor of ``route`` (however many shards an earlier start made)."""
    names = {shard_name(route, i) for i in range(_MAX_SHARDS)}
    live = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a.get("namespace") == namespace and a.get("name") in names]
    for name in live:
        with contextlib.suppress(ValueError):  # gone meanwhile
            ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)


def stop_monitor(route: str, namespace: str) -> None:
    _LIVE.pop(route, None)
    _kill_shards(route, namespace)
