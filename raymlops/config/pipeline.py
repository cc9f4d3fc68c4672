"""The whole pipeline config: one section per step (data, train, gate, serve, monitor, retrain), and
the user's own steps (``steps``)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import (
    Field,
    PrivateAttr,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from raymlops.config.base import NAME_PATTERN, Strict
from raymlops.config.data import DataConfig
from raymlops.config.gate import GateConfig
from raymlops.config.monitor import MonitorConfig
from raymlops.config.retrain import RetrainConfig
from raymlops.config.serve import ServeConfig
from raymlops.config.steps import UserStepConfig, unique_step_names
from raymlops.config.train import TrainConfig
from raymlops.hooks.settings import WebhookConfig
from raymlops.tracking.settings import TrackingConfig


class PipelineConfig(Strict):
    """A whole pipeline: data → train → gate → register → serve → monitor."""

    name: str
    seed: int = Field(0, ge=0, le=2**32 - 1, description="0 to 4294967295: numpy and scikit-learn take no larger seed")
    data: DataConfig
    train: TrainConfig
    gate: GateConfig = Field(default_factory=GateConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig, validate_default=True)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)
    webhooks: list[WebhookConfig] = Field(default_factory=list, description="signed event POSTs (raymlops.hooks)")
    tracking: TrackingConfig | None = Field(None, description="mirror runs into MLflow (raymlops.tracking)")
    #: the file it was loaded from (load_config), whose folder's git state is the run's code version
    _file: str | None = PrivateAttr(default=None)
    steps: list[UserStepConfig] = Field(default_factory=list, description="the user's steps (config.steps)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_PATTERN.match(v):
            raise ValueError("expected lowercase letters, digits and '-', at most 63 characters")
        return v

    @field_validator("steps")
    @classmethod
    def _unique_steps(cls, v: list[UserStepConfig]) -> list[UserStepConfig]:
        return unique_step_names(v)

    @field_validator("gate", mode="wrap")
    @classmethod
    def _gate_for_task(cls, v: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        """Gate rules may only name metrics the training task produces (r2 is no classification metric)."""
        train = info.data.get("train")
        if isinstance(v, dict) and isinstance(train, TrainConfig):
            return GateConfig.model_validate(v, context={"task": train.task})
        return handler(v)

    @field_validator("monitor", mode="wrap")
    @classmethod
    def _monitor_for_task(cls, v: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        """The monitor scores labels as the model is trained: ``monitor.performance.task`` is
        derived from ``train.task`` (a regression's labels are errors to average, not classes to
        match), whatever the section says (a config recorded before this rule says
        classification there)."""
        train = info.data.get("train")
        out = handler(v)
        if isinstance(train, TrainConfig) and isinstance(out, MonitorConfig) and out.performance.task != train.task:
            out = out.model_copy(update={"performance": out.performance.model_copy(update={"task": train.task})})
        return out

    @property
    def route(self) -> str:
        return self.serve.name or self.name

    def config_hash(self) -> str:
        """sha256 of the canonical JSON form: equal configs hash equal, whatever the YAML layout."""
        data = self.model_dump(mode="json")
        if not data["steps"]:  # a config without user steps hashes as it did before `steps:` existed
            del data["steps"]
        canon = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()
