"""``serve:``: the Ray Serve route, its replicas, batching, autoscaling and request limits."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from raymlops.config.base import NAME_PATTERN, Strict


class AutoscalingConfig(Strict):
    """``serve.autoscaling``: Ray Serve autoscaling of the model replicas (``min_replicas: 0``
    scales to zero when idle; the first request then waits for a cold start)."""

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(2, ge=1)
    initial_replicas: int | None = Field(None, ge=0)
    target_ongoing_requests: float = Field(2.0, gt=0.0)
    upscale_delay_s: float = Field(0.0, ge=0.0)
    downscale_delay_s: float = Field(30.0, ge=0.0)
    downscale_to_zero_delay_s: float | None = Field(None, ge=0.0)
    metrics_interval_s: float = Field(1.0, gt=0.0)
    look_back_period_s: float = Field(2.0, gt=0.0)

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"expected min_replicas <= max_replicas, found {self.min_replicas} > {self.max_replicas}")
        if self.initial_replicas is not None and not self.min_replicas <= self.initial_replicas <= self.max_replicas:
            raise ValueError("expected min_replicas <= initial_replicas <= max_replicas, "
                             f"found {self.initial_replicas}")
        return self


class ServeConfig(Strict):
    enabled: bool = True
    name: str | None = Field(None, description="route prefix /<name>; defaults to the pipeline name")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    num_replicas: int = Field(1, ge=1)
    max_batch_size: int = Field(32, ge=1)
    batch_wait_timeout_s: float = Field(0.01, ge=0.0)
    max_rows_per_request: int = Field(1000, ge=1)
    # -- serving (raymlops.serve) --
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=64, description="larger request bodies get 413")
    max_ongoing_requests: int = Field(64, ge=1, description="per replica; at least max_batch_size")
    domain: Literal["any", "training_range"] = Field(
        "any", description="training_range: 422 for a value outside the training min/max (widened by domain_margin)")
    domain_margin: float = Field(0.0, ge=0.0, description="fraction of each feature's training range")
    autoscaling: AutoscalingConfig | None = Field(None, description="replaces num_replicas when set")
    high_throughput: bool | None = Field(
        None, description="Serve's HAProxy ingress. Unset (default): used wherever raymlops starts Ray itself, and "
        "wherever the cluster was started with it; true: required (a cluster without it is refused); false: Serve's "
        "Python proxy (see raymlops.serve.throughput)")
    monitor_queue_rows: int = Field(50_000, ge=1, description="per replica; rows beyond it are dropped and counted")
    monitor_flush_interval_s: float = Field(0.25, gt=0.0)
    monitor_budget: float = Field(
        0.5, gt=0.0, le=1.0, description="most of its time the monitor spends on one replica's rows; beyond it rows "
        "are dropped and counted (1: as fast as the monitor takes them). A safety valve: a replica's saturated "
        "throughput needs well under it")
    shadow_max_pending: int = Field(64, ge=1, description="per replica; shadow requests beyond it are dropped")
    metrics_port: int | None = Field(None, ge=1, le=65535, description="also expose /metrics on this loopback port")
    access_log: bool = Field(True, description="Serve's per-request log line (requests are counted in metrics anyway)")
    require_token: bool = Field(
        False, description="/feedback needs 'Authorization: Bearer <token>' on loopback too (always when host is not "
        "loopback)")
    token_env: str = Field("RAYMLOPS_FEEDBACK_TOKEN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                           description="environment variable (where Ray runs) holding the /feedback bearer token")

    @field_validator("max_ongoing_requests")
    @classmethod
    def _room_for_a_batch(cls, v: int, info: ValidationInfo) -> int:
        batch = info.data.get("max_batch_size")
        if batch is not None and v < batch:
            raise ValueError(f"expected max_ongoing_requests >= max_batch_size ({batch}), or batches never fill")
        return v

    @field_validator("name")
    @classmethod
    def _route_name(cls, v: str | None) -> str | None:
        if v is not None and not NAME_PATTERN.match(v):
            raise ValueError("expected lowercase letters, digits and '-' (a URL path segment)")
        return v
