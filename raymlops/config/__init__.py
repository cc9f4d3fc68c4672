"""Typed, validated pipeline configs loaded from YAML: one module per config section.

A config is validated once, at load. Any problem raises :class:`ConfigError` whose message is
one line naming the file, the key path, what was expected and what was found::

    configs/bad.yaml: train.candidates[0].params: expected a mapping, found 'C=1' (str)

Modules: ``base`` (the strict base model), ``data``, ``train``, ``gate``, ``serve``, ``monitor``,
``retrain``, ``steps`` (one section each), ``pipeline`` (the whole config) and ``loading`` (YAML, one-line errors).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raymlops.config.base import Strict
    from raymlops.config.data import ColumnSpec, DataConfig, DriftConfig, RuleConfig, TransformConfig
    from raymlops.config.gate import ChampionRule, GateConfig, SliceRule
    from raymlops.config.loading import load_config, parse_config
    from raymlops.config.monitor import (
        BurnWindowConfig,
        CalibrationConfig,
        MonitorAlertsConfig,
        MonitorConfig,
        MonitorDifferentialConfig,
        MonitorPerformanceConfig,
        MonitorSLOConfig,
    )
    from raymlops.config.pipeline import PipelineConfig
    from raymlops.config.retrain import RETRAIN_TRIGGER_GROUPS, RetrainConfig, RetrainPromoteConfig
    from raymlops.config.serve import AutoscalingConfig, ServeConfig
    from raymlops.config.steps import BUILTIN_STEPS, UserStepConfig
    from raymlops.config.train import (
        CLASSIFICATION_METRICS,
        DISTRIBUTED_METRICS,
        LOWER_IS_BETTER,
        REGRESSION_METRICS,
        SEARCH_KINDS,
        TASK_METRICS,
        Candidate,
        SchedulerConfig,
        TrainConfig,
    )

# name -> the module that defines it: each is imported when first asked for, so that a command that
# needs one section (``monitor check``: MonitorConfig) does not build every config model at start-up
_WHERE = {
    "BUILTIN_STEPS": "steps", "UserStepConfig": "steps",
    "AutoscalingConfig": "serve", "BurnWindowConfig": "monitor", "CLASSIFICATION_METRICS": "train",
    "CalibrationConfig": "monitor", "Candidate": "train", "ChampionRule": "gate", "ColumnSpec": "data",
    "DISTRIBUTED_METRICS": "train", "DataConfig": "data", "DriftConfig": "data", "GateConfig": "gate",
    "LOWER_IS_BETTER": "train", "MonitorAlertsConfig": "monitor", "MonitorConfig": "monitor",
    "MonitorDifferentialConfig": "monitor", "MonitorPerformanceConfig": "monitor", "MonitorSLOConfig": "monitor",
    "PipelineConfig": "pipeline", "REGRESSION_METRICS": "train", "RETRAIN_TRIGGER_GROUPS": "retrain",
    "RetrainConfig": "retrain", "RetrainPromoteConfig": "retrain", "RuleConfig": "data", "SEARCH_KINDS": "train",
    "SchedulerConfig": "train", "ServeConfig": "serve", "SliceRule": "gate", "Strict": "base",
    "TASK_METRICS": "train", "TrainConfig": "train", "TransformConfig": "data", "load_config": "loading",
    "parse_config": "loading",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'raymlops.config' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"raymlops.config.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "AutoscalingConfig", "BUILTIN_STEPS", "BurnWindowConfig", "CLASSIFICATION_METRICS", "CalibrationConfig",
    "Candidate",
    "ChampionRule", "ColumnSpec", "DISTRIBUTED_METRICS", "DataConfig", "DriftConfig", "GateConfig",
    "LOWER_IS_BETTER", "MonitorAlertsConfig", "MonitorConfig", "MonitorDifferentialConfig",
    "MonitorPerformanceConfig", "MonitorSLOConfig", "PipelineConfig", "REGRESSION_METRICS",
    "RETRAIN_TRIGGER_GROUPS", "RetrainConfig", "RetrainPromoteConfig", "RuleConfig", "SEARCH_KINDS",
    "SchedulerConfig", "ServeConfig", "SliceRule", "Strict", "TASK_METRICS", "TrainConfig", "TransformConfig",
    "UserStepConfig", "load_config", "parse_config",
]
