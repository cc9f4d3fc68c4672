"""A Serve application builder for a registered model: the ``import_path`` of a Serve config.

For ``serve run`` / ``serve deploy`` and KubeRay's ``RayService`` (``serveConfigV2``)::

    applications:
      - name: breast-cancer
        route_prefix: /breast-cancer
        import_path: raymlops.serve.builder:app_builder
        args: {model: breast-cancer@champion, home: /data/raymlops}

``args``: ``model`` (``name:vN`` or ``name@alias``, required), ``home`` (default
``$RAYMLOPS_HOME``), ``artifact_root`` (default ``$RAYMLOPS_ARTIFACT_ROOT``),
``max_rows_per_request`` (1000), ``max_batch_size`` (32), ``batch_wait_timeout_s`` (0.01),
``monitor`` (false: attach the replicas to a running monitor actor named for the route).
The replicas verify the artifact's sha256 before loading it, as with ``raymlops run``.
"""

from __future__ import annotations

from typing import Any

from raymlops.exceptions import ConfigError
from raymlops.monitor.names import monitor_name
from raymlops.ray_session import NAMESPACE
from raymlops.registry import get_model
from raymlops.serve.routing import TrafficTable
from raymlops.serve.settings import STOP_OPTIONS, ServerSettings, new_deploy_id, split_spec
from raymlops.store.home import Store


def model_spec(args: dict[str, Any]) -> dict[str, Any]:
    """The ``ModelServer`` spec for the registered version ``args['model']`` (no Ray needed)."""
    if not args.get("model"):
        raise ConfigError("serve args: 'model' is required (name:vN or name@alias)")
    store = Store.open(args.get("home"), args.get("artifact_root"))
    version = get_model(store, str(args["model"]))
    if version.status != "registered":
        raise ConfigError(f"serve args: model {version.id} was rejected by the gate; it cannot be served")
    signature = version.signature
    lineage = version.record.get("lineage", {})
    # a representative row: the middle of each input's training range
    example = {
        i["name"]: (float(i["min"]) + float(i["max"])) / 2 if i.get("min") is not None and i.get("max") is not None
        else 0.0
        for i in signature["inputs"]
    }
    route = str(args.get("route") or version.name)
    return {
        "model_id": version.id,
        "artifact_root": store.artifacts.root_uri,
        "artifact_key": version.artifact_key,
        "artifact_sha256": version.artifact_sha256,
        "signature": signature,
        "metrics": version.record.get("metrics", {}),
        "lineage_summary": {k: lineage.get(k) for k in ("code", "config_hash", "snapshot_id", "seed", "run_id")},
        "input_example": example,
        "max_rows_per_request": int(args.get("max_rows_per_request", 1000)),
        "max_batch_size": int(args.get("max_batch_size", 32)),
        "batch_wait_timeout_s": float(args.get("batch_wait_timeout_s", 0.01)),
        "monitor_actor": monitor_name(route) if args.get("monitor") else None,
        "namespace": NAMESPACE,
    }


def app_builder(args: dict[str, Any]) -> Any:
    """A bound ``ModelServer`` application (Serve calls this with the config's ``args``).

    The first replica starts the route's control actor with the version of ``args['model']``
    as champion; each build gets a newer deploy id, so a changed config's table wins."""
    # Ray Serve and FastAPI: only when Serve builds the application
    from raymlops.serve.app import ModelServer

    args = dict(args or {})
    spec = model_spec(args)
    route = str(args.get("route") or spec["model_id"].split(":", 1)[0])
    model, settings = split_spec(spec, route)
    settings["deploy_id"] = new_deploy_id()
    s = ServerSettings.from_dict(settings)
    server: Any = ModelServer
    batch = int(s.max_batch_size)
    return server.options(max_ongoing_requests=max(64, 2 * batch), **STOP_OPTIONS).bind(
        s.to_dict(), TrafficTable(model).to_dict())
