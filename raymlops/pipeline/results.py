"""What a run reports: one :class:`StepResult` per step and the :class:`RunResult` of the run
(both saved in the run record, :mod:`raymlops.pipeline.history`; no Ray here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from raymlops.pipeline.steplog import StepLog

__all__ = ["RunResult", "StepResult"]


@dataclass
class StepResult:
    name: str
    status: str  # ran | cached | skipped | failed (running while it runs)
    seconds: float
    detail: str = ""
    started_at: float | None = None
    ended_at: float | None = None
    cache_key: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)
    rows: int | None = None
    bytes: int | None = None
    error: dict[str, Any] | None = None
    log: StepLog = field(default_factory=StepLog, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "status": self.status, "seconds": round(self.seconds, 3), "detail": self.detail,
            "started_at": self.started_at, "ended_at": self.ended_at, "cache_key": self.cache_key,
            "inputs": self.inputs, "outputs": self.outputs, "rows": self.rows, "bytes": self.bytes,
            "error": self.error,
        }


@dataclass
class RunResult:
    run_id: str
    pipeline: str
    snapshot: str | None = None
    model: str | None = None
    gate: str | None = None
    gate_reasons: list[str] = field(default_factory=list)
    endpoint: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    drift: dict[str, Any] | None = None
    validation: dict[str, Any] | None = None
    data_drift: dict[str, Any] | None = None
    metrics_url: str | None = None
    steps: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0
    status: str = "running"
    error: dict[str, Any] | None = None
    tracking: dict[str, Any] | None = None  # tracking: (MLflow) status, parent run, registered version, errors

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run_id, "pipeline": self.pipeline, "status": self.status,
            "snapshot": self.snapshot, "model": self.model, "gate": self.gate, "gate_reasons": self.gate_reasons,
            "endpoint": self.endpoint, "model_metrics": self.metrics, "drift": self.drift,
            # the monitor's Prometheus URL (monitor.metrics_port, or a free loopback port for a private Ray)
            "metrics": self.metrics_url, "validation": self.validation, "data_drift": self.data_drift,
            "seconds": round(self.seconds, 3), "steps": [s.to_dict() for s in self.steps], "error": self.error,
        } | ({"tracking": self.tracking} if self.tracking is not None else {})
