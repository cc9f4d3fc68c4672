"""A Serve application builder for a registered model: the ``import_path`` of a Serve config.

For ``serve run`` / ``serve deploy`` and KubeRay's ``RayService`` (``serveConfigV2``)::

    applications:
      - name: breast-cancer
        route_prefix: /breast-cancer
        import_path: raymlops.serve.builder:app_builder
        args: {model: breast-cancer@champion, home: /data/raymlops}

``args``: ``model`` (``name:vN`` or ``name@alias``, required), ``home`` (default
``$RAYMLOPS_HOME``), ``artifact_root`` (default ``$RAYMLOPS_ARTIFACT_ROOT``),
``max_rows_per_request`` (1000), ``max_batch_size`` (32), ``batch_wait_timeout_s`` (0.01) (checked
as the ``serve:`` fields of a pipeline config, which the replicas receive),
``monitor`` (false: attach the replicas to a running monitor actor named for the route).
The replicas verify the artifact's sha256 before loading it, as with ``raymlops run``.
"""

from __future__ import annotations

from typing import Any

from raymlops.config import ServeConfig
from raymlops.exceptions import ConfigError
from raymlops.monitor.names import monitor_name
from raymlops.registry import get_model
from raymlops.registry.spec import ModelSpec
from raymlops.serve.routing import TrafficTable
from raymlops.serve.settings import STOP_OPTIONS, ReplicaSettings, new_deploy_id
from raymlops.store.home import Store

# the args that configure the replicas (ServeConfig fields); the rest name the model and home
SERVE_ARGS = ("max_rows_per_request", "max_batch_size", "batch_wait_timeout_s")


def model_spec(args: dict[str, Any]) -> ModelSpec:
    """The spec of the registered version ``args['model']`` (no Ray needed); a version the gate
    rejected is refused."""
    if not args.get("model"):
        raise ConfigError("serve args: 'model' is required (name:vN or name@alias)")
    store = Store.open(args.get("home"), args.get("artifact_root"))
    version = get_model(store, str(args["model"]))
    if version.status != "registered":
        raise ConfigError(f"serve args: model {version.id} was rejected by the gate; it cannot be served")
    return ModelSpec.of(version, store.artifacts.root_uri)


def app_builder(args: dict[str, Any]) -> Any:
    """A bound ``ModelServer`` application (Serve calls this with the config's ``args``).

    The first replica starts the route's control actor with the version of ``args['model']``
    as champion; each build gets a newer deploy id, so a changed config's table wins."""
    from pydantic import ValidationError as PydanticValidationError

    # Ray Serve and FastAPI: only when Serve builds the application (model_spec needs no Ray)
    from raymlops.serve.app import ModelServer

    args = dict(args or {})
    spec = model_spec(args)
    route = str(args.get("route") or spec.name)
    try:  # lax: the args come from YAML or a Python dict (1 for 1.0 is fine)
        cfg = ServeConfig.model_validate({k: args[k] for k in SERVE_ARGS if k in args}, strict=False)
    except PydanticValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(f"serve args: {'.'.join(map(str, err['loc']))}: {err['msg']}") from None
    s = ReplicaSettings.of(cfg, route, monitor_actor=monitor_name(route) if args.get("monitor") else None,
                           deploy_id=new_deploy_id())
    server: Any = ModelServer
    return server.options(max_ongoing_requests=max(64, 2 * cfg.max_batch_size), **STOP_OPTIONS).bind(
        s.to_dict(), TrafficTable(spec).to_dict())
