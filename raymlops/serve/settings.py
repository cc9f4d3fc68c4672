"""What a model server needs besides the models it serves (pure: no Ray).

The models come in the traffic table (:mod:`raymlops.serve.routing`, one
:class:`~raymlops.registry.spec.ModelSpec` each). :class:`ReplicaSettings` is everything else:
the route's :class:`~raymlops.config.ServeConfig` itself (limits, batching, validation policy,
monitor hand-off, metrics port, token), plus the values a deployment decides at run time (route,
namespace, deploy id, monitor actor, sample rate, whether ``/feedback`` needs a token where Serve
really listens). It crosses to the replicas as a plain dict (:meth:`ReplicaSettings.to_dict`:
``ServeConfig.model_dump``; :meth:`ReplicaSettings.from_dict`: ``ServeConfig.model_validate``),
because Serve ships init arguments with cloudpickle and we keep ours data only; a field added to
``ServeConfig`` reaches the replicas with no second copy.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from raymlops.config import ServeConfig
from raymlops.ray_session import NAMESPACE
from raymlops.serve.auth import token_required

MAX_FEEDBACK_IDS = 10_000  # ids one /feedback request may label
SHADOW_LOG_SIZE = 1000  # shadow answers the control actor keeps per route
PUSH_INTERVAL_S = 1.0  # a replica's heartbeat to its control actor


@dataclass(frozen=True)
class ReplicaSettings:
    route: str
    serve: ServeConfig = field(default_factory=ServeConfig)
    namespace: str = NAMESPACE
    deploy_id: str = ""
    monitor_actor: str | None = None
    sample_rate: float = 1.0  # monitor.sample_rate (a traffic table may override it live)
    token_required: bool = False  # /feedback needs a bearer token (raymlops.serve.auth); its
    # variable's name is serve.token_env: only the name travels, never a value

    @classmethod
    def of(cls, serve: ServeConfig, route: str, *, namespace: str = NAMESPACE, monitor_actor: str | None = None,
           sample_rate: float = 1.0, deploy_id: str = "", host: str | None = None) -> ReplicaSettings:
        """The settings of a deployment of ``serve`` at ``route``; ``host``: where Serve really
        listens (default ``serve.host``), which decides whether ``/feedback`` needs a token."""
        return cls(route=route, serve=serve, namespace=namespace, deploy_id=deploy_id, monitor_actor=monitor_actor,
                   sample_rate=float(sample_rate),
                   token_required=token_required(serve.host if host is None else host, serve.require_token))

    @property
    def metrics_host(self) -> str:
        """Where the route's ``/metrics`` listens: ``serve.host``, loopback for a wildcard host."""
        return self.serve.host if self.serve.host not in ("0.0.0.0", "::", "") else "127.0.0.1"

    def to_dict(self) -> dict[str, Any]:
        return {"route": self.route, "serve": self.serve.model_dump(), "namespace": self.namespace,
                "deploy_id": self.deploy_id, "monitor_actor": self.monitor_actor, "sample_rate": self.sample_rate,
                "token_required": self.token_required}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReplicaSettings:
        return cls(route=str(data["route"]), serve=ServeConfig.model_validate(data["serve"]),
                   namespace=str(data["namespace"]), deploy_id=str(data["deploy_id"]),
                   monitor_actor=data.get("monitor_actor"), sample_rate=float(data["sample_rate"]),
                   token_required=bool(data["token_required"]))


def new_deploy_id() -> str:
    """Orders deployments of one route: a later deploy's table wins over an earlier one's."""
    return f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"


# A stopping replica checks for requests still in flight every 0.25 s (Serve: 2 s) and waits for
# them at most 10 s (Serve: 20 s): a stop is quick, and bounded, and drops none that finish in time.
STOP_OPTIONS: dict[str, Any] = {"graceful_shutdown_wait_loop_s": 0.25, "graceful_shutdown_timeout_s": 10.0}


def deployment_options(serve: ServeConfig) -> dict[str, Any]:
    """``ModelServer.options(...)`` from a ServeConfig: replicas or autoscaling, queue depth."""
    max_ongoing = max(serve.max_ongoing_requests, 2 * serve.max_batch_size)
    options: dict[str, Any] = {"max_ongoing_requests": max_ongoing} | STOP_OPTIONS
    if not serve.access_log:
        options["logging_config"] = {"enable_access_log": False}
    if serve.autoscaling is None:
        options["num_replicas"] = serve.num_replicas
    else:  # its fields are Serve's autoscaling_config keys; unset optional ones stay Serve's
        options["autoscaling_config"] = serve.autoscaling.model_dump(exclude_none=True)
    return options
