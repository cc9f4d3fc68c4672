"""What a model server needs to know, split from the model it serves (pure: no Ray).

A *model spec* names one registered version: its artifact (root, key, sha256), signature,
metrics, lineage summary and an input example; it travels in the traffic table
(:mod:`raymlops.serve.routing`). *Server settings* are everything else: limits, batching,
validation policy, monitor hand-off and the route's control actor. Both are plain dicts on the
wire, because Serve ships init arguments to replicas with cloudpickle and we keep ours data only.

``deploy(spec, ...)`` still accepts the flat dict the pipeline runner builds (model fields and
settings mixed); :func:`split_spec` takes it apart.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, fields
from typing import Any

from raymlops.ray_session import NAMESPACE
from raymlops.serve.auth import DEFAULT_TOKEN_ENV, token_required

MODEL_FIELDS = ("model_id", "artifact_root", "artifact_key", "artifact_sha256", "signature", "metrics",
                "lineage_summary", "input_example")


@dataclass(frozen=True)
class ServerSettings:
    route: str
    namespace: str = NAMESPACE
    deploy_id: str = ""
    max_rows_per_request: int = 1000
    max_body_bytes: int = 4 * 1024 * 1024
    max_feedback_ids: int = 10_000
    max_batch_size: int = 32
    batch_wait_timeout_s: float = 0.01
    domain: str = "any"
    domain_margin: float = 0.0
    monitor_actor: str | None = None
    sample_rate: float = 1.0
    monitor_queue_rows: int = 50_000
    monitor_flush_interval_s: float = 0.25
    monitor_budget: float = 0.5
    shadow_max_pending: int = 64
    shadow_log_size: int = 1000
    push_interval_s: float = 1.0
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    require_token: bool = False  # /feedback needs a bearer token (raymlops.serve.auth)
    token_env: str = "RAYMLOPS_FEEDBACK_TOKEN"  # the variable holding it (its name only travels)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServerSettings:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def new_deploy_id() -> str:
    """Orders deployments of one route: a later deploy's table wins over an earlier one's."""
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"


def split_spec(spec: dict[str, Any], route: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(model_spec, settings)`` of a flat spec (the runner's), settings filled with defaults."""
    model = {k: spec[k] for k in MODEL_FIELDS if k in spec}
    model.setdefault("metrics", {})
    model.setdefault("lineage_summary", {})
    model.setdefault("input_example", {})
    known = {f.name for f in fields(ServerSettings)}
    settings = {k: v for k, v in spec.items() if k in known and v is not None}
    settings["route"] = route
    return model, settings


def settings_from_config(serve: Any, route: str, *, namespace: str, monitor_actor: str | None,
                         sample_rate: float = 1.0) -> dict[str, Any]:
    """Server settings from a :class:`raymlops.config.ServeConfig`."""
    return ServerSettings(
        route=route,
        namespace=namespace,
        max_rows_per_request=serve.max_rows_per_request,
        max_body_bytes=serve.max_body_bytes,
        max_batch_size=serve.max_batch_size,
        batch_wait_timeout_s=serve.batch_wait_timeout_s,
        domain=serve.domain,
        domain_margin=serve.domain_margin,
        monitor_actor=monitor_actor,
        sample_rate=sample_rate,
        monitor_queue_rows=serve.monitor_queue_rows,
        monitor_flush_interval_s=serve.monitor_flush_interval_s,
        monitor_budget=serve.monitor_budget,
        shadow_max_pending=serve.shadow_max_pending,
        metrics_port=serve.metrics_port,
        metrics_host=serve.host if serve.host not in ("0.0.0.0", "::", "") else "127.0.0.1",
        require_token=token_required(serve.host, getattr(serve, "require_token", False)),
        token_env=getattr(serve, "token_env", DEFAULT_TOKEN_ENV),
    ).to_dict()


# A stopping replica checks for requests still in flight every 0.25 s (Serve: 2 s) and waits for
# them at most 10 s (Serve: 20 s): a stop is quick, and bounded, and drops none that finish in time.
STOP_OPTIONS: dict[str, Any] = {"graceful_shutdown_wait_loop_s": 0.25, "graceful_shutdown_timeout_s": 10.0}


def deployment_options(serve: Any | None, num_replicas: int, max_batch_size: int) -> dict[str, Any]:
    """``ModelServer.options(...)`` from a ServeConfig: replicas or autoscaling, queue depth."""
    max_ongoing = max(int(getattr(serve, "max_ongoing_requests", 64)), 2 * int(max_batch_size))
    options: dict[str, Any] = {"max_ongoing_requests": max_ongoing} | STOP_OPTIONS
    if serve is not None and not serve.access_log:
        options["logging_config"] = {"enable_access_log": False}
    auto = getattr(serve, "autoscaling", None)
    if auto is None:
        options["num_replicas"] = int(num_replicas)
        return options
    config: dict[str, Any] = {
        "min_replicas": auto.min_replicas,
        "max_replicas": auto.max_replicas,
        "target_ongoing_requests": auto.target_ongoing_requests,
        "upscale_delay_s": auto.upscale_delay_s,
        "downscale_delay_s": auto.downscale_delay_s,
        "metrics_interval_s": auto.metrics_interval_s,
        "look_back_period_s": auto.look_back_period_s,
    }
    if auto.initial_replicas is not None:
        config["initial_replicas"] = auto.initial_replicas
    if auto.downscale_to_zero_delay_s is not None:
        config["downscale_to_zero_delay_s"] = auto.downscale_to_zero_delay_s
    options["autoscaling_config"] = config
    return options
