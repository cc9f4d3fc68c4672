"""Champion / challenger on live deployments: the Python API behind ``raymlops deploy`` and the
live half of ``raymlops models promote | rollback``.

Every function here takes the :class:`~raymlops.store.home.Store` whose registry names the
versions, changes serving through the route's control actor (:mod:`raymlops.serve.control`),
waits until every live replica serves the new table, and writes one audit record in a metadata
transaction: ``deployment.created``, ``deployment.traffic_changed``, ``deployment.promoted``,
``deployment.rolled_back``, ``deployment.sampling_changed`` or ``deployment.deleted``. A change a
replica cannot apply (say, a changed artifact) is undone everywhere and raised as
:class:`~raymlops.exceptions.ServeError`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from raymlops import audit
from raymlops.config import ServeConfig
from raymlops.exceptions import NotFound, ServeError, ValidationError
from raymlops.hooks import emit
from raymlops.monitor.names import monitor_name
from raymlops.ray_session import NAMESPACE
from raymlops.registry.registry import get_model
from raymlops.registry.spec import ModelSpec
from raymlops.serve.builder import model_spec
from raymlops.serve.control import get_control, live_routes
from raymlops.serve.deploy import _root_message, deploy, undeploy, verify_artifact
from raymlops.serve.routing import TrafficTable
from raymlops.store.home import Store


def model_spec_of(store: Store, ref: str) -> ModelSpec:
    """The spec of a registered version or alias that may be served (the gate passed it)."""
    return model_spec({"model": ref, "home": str(store.home), "artifact_root": store.artifacts.root_uri})


def _record(store: Store, action: str, route: str, model: str, reason: str | None, how: dict[str, Any]) -> None:
    with store.metadata.transaction() as conn:
        audit.append(conn, action, {"model": model, "deployment": route}, reason, how)
    emit(store.home, "deployment.changed", {"action": action, "deployment": route, "model": model, "reason": reason})


def _control(route: str) -> Any:
    handle = get_control(route, NAMESPACE)
    if handle is None:
        raise NotFound(f"no live deployment at route {route!r} on this Ray cluster (deploy it first)")
    return handle


def current_table(route: str) -> TrafficTable:
    import ray

    table = ray.get(_control(route).get_table.remote())
    if table is None:
        raise NotFound(f"the deployment at route {route!r} has no traffic table yet")
    return TrafficTable.from_dict(table)


def update_traffic(route: str, change: Callable[[TrafficTable], TrafficTable],
                   timeout_s: float = 120.0) -> tuple[TrafficTable, TrafficTable]:
    """Apply ``change`` to the live table of ``route``; ``(before, after)`` once every live replica
    serves ``after``. A replica that cannot load a model makes the whole change roll back."""
    import ray

    control = _control(route)
    raw = ray.get(control.get_table.remote())
    if raw is None:
        raise NotFound(f"the deployment at route {route!r} has no traffic table yet")
    before = TrafficTable.from_dict(raw)
    after = change(before)
    for m in (after.champion, after.challenger):
        if m is not None:
            verify_artifact(m)
    try:
        installed = ray.get(control.set_table.remote(after.to_dict(), expect_epoch=before.epoch))
    except ray.exceptions.RayTaskError as exc:  # the table changed meanwhile (or was refused)

        raise ServeError(f"traffic change of {route!r} refused: {_root_message(exc)}") from None
    result = ray.get(control.wait_acks.remote(int(installed["epoch"]), timeout_s))
    if result["errors"]:
        ray.get(control.set_table.remote(before.to_dict()))
        rid, why = next(iter(result["errors"].items()))
        raise ServeError(f"replica {rid} of {route!r} cannot serve the change ({why}); "
                         "the previous traffic table is restored")
    if result["pending"]:
        raise ServeError(f"{len(result['pending'])} of {result['replicas']} replicas of {route!r} did not confirm "
                         f"the change within {timeout_s:.0f} s; they switch as soon as they can")
    return before, TrafficTable.from_dict(installed)


def routes_serving(name: str) -> list[str]:
    """Live routes whose champion (or challenger) is a version of model ``name``."""
    import ray

    out = []
    for route in live_routes(NAMESPACE):
        handle = get_control(route, NAMESPACE)
        if handle is None:
            continue
        try:
            table = ray.get(handle.get_table.remote(), timeout=30)
        except Exception:  # a dying actor: not serving
            continue
        if not table:
            continue
        t = TrafficTable.from_dict(table)
        if any(m is not None and m.name == name for m in (t.champion, t.challenger)):
            out.append(route)
    return out


def set_challenger(store: Store, route: str, ref: str | None, mode: str | None = None, weight: float = 0.0,
                   key: str | None = None, reason: str | None = None) -> TrafficTable:
    """Serve ``ref`` as the challenger of ``route`` (``None`` retires the challenger)."""
    if ref is not None and mode not in ("canary", "shadow"):
        raise ValidationError(f"mode must be canary or shadow, found {mode!r}")
    if mode == "canary" and not 0.0 <= weight <= 1.0:
        raise ValidationError(f"--weight must be within [0, 1], found {weight}")
    spec = model_spec_of(store, ref) if ref is not None else None
    before, after = update_traffic(route, lambda t: t.with_challenger(spec, mode, weight, key))
    _record(store, "deployment.traffic_changed", route, spec.model_id if spec else before.champion.model_id,
            reason, {"before": before.summary(), "after": after.summary()})
    return after


def set_champion(store: Store, route: str, ref: str, reason: str | None = None,
                 action: str = "deployment.traffic_changed") -> TrafficTable:
    """Serve ``ref`` as the champion of ``route``; a challenger that is ``ref`` is retired."""
    spec = model_spec_of(store, ref)
    before, after = update_traffic(route, lambda t: t.with_champion(spec))
    _record(store, action, route, spec.model_id, reason,
            {"before": before.summary(), "after": after.summary(), "previous": before.champion.model_id})
    return after


def set_sample_rate(store: Store, route: str, rate: float | None, reason: str | None = None) -> TrafficTable:
    """Hand ``rate`` of ``route``'s requests to its monitor from now on (None: the deployment's
    configured ``monitor.sample_rate``); every replica applies it before this returns."""
    if rate is not None and not 0.0 <= rate <= 1.0:
        raise ValidationError(f"--sample-rate must be within [0, 1], found {rate}")
    before, after = update_traffic(route, lambda t: t.with_sample_rate(rate))
    _record(store, "deployment.sampling_changed", route, after.champion.model_id, reason,
            {"before": before.sample_rate, "after": after.sample_rate})
    return after


def follow_champion(store: Store, name: str, action: str, reason: str | None = None) -> dict[str, TrafficTable]:
    """After the registry moved ``name@champion``: make every live route of ``name`` serve it
    (``models promote`` -> ``deployment.promoted``, ``models rollback`` -> ``deployment.rolled_back``)."""
    champion = get_model(store, f"{name}@champion")
    out = {}
    for route in routes_serving(name):
        current = current_table(route)
        if current.champion.model_id == champion.id and current.challenger is None:
            continue
        out[route] = set_champion(store, route, champion.id, reason, action=action)
    return out


def deploy_model(store: Store, ref: str, *, route: str | None = None, serve_config: Any = None,
                 sample_rate: float = 1.0, monitor: bool = True, reason: str | None = None,
                 host: str | None = None, port: int | None = None) -> str:
    """Deploy a registered version as the champion of a new (or replaced) route; the endpoint."""
    cfg = serve_config or ServeConfig()
    model = model_spec_of(store, ref)
    name = route or cfg.name or model.name
    monitor_actor = None
    if monitor:
        import ray

        try:
            ray.get_actor(monitor_name(name), namespace=NAMESPACE)
            monitor_actor = monitor_name(name)
        except ValueError:
            monitor_actor = None
    if host or port:  # validated like the config's own values
        cfg = ServeConfig.model_validate(cfg.model_dump() | {"host": host or cfg.host, "port": port or cfg.port})
    replaced = get_control(name, NAMESPACE) is not None
    endpoint = deploy(model, name, cfg, monitor_actor=monitor_actor, sample_rate=sample_rate, namespace=NAMESPACE)
    _record(store, "deployment.created", name, model.model_id, reason,
            {"endpoint": endpoint, "replaced": replaced, "monitor": monitor_actor,
             "autoscaling": cfg.autoscaling.model_dump() if cfg.autoscaling else None,
             "high_throughput": cfg.high_throughput})
    return endpoint


def stop_route(store: Store, route: str, reason: str | None = None, shutdown: bool = False) -> None:
    """Remove the live deployment at ``route`` (its Serve app and control actor)."""
    try:
        serving = current_table(route).champion.model_id
    except NotFound:
        serving = None
    undeploy(route, shutdown=shutdown, namespace=NAMESPACE)
    if serving is not None:
        _record(store, "deployment.deleted", route, serving, reason, {})
