"""Typed, validated pipeline configs loaded from YAML: one module per config section.

A config is validated once, at load. Any problem raises :class:`ConfigError` whose message is
one line naming the file, the key path, what was expected and what was found::

    configs/bad.yaml: train.candidates[0].params: expected a mapping, found 'C=1' (str)

Modules: ``base`` (the strict base model), ``data``, ``train``, ``gate``, ``serve``, ``monitor``,
``retrain``, ``steps`` (one section each), ``pipeline`` (the whole config) and ``loading`` (YAML, one-line errors).
"""

from __future__ import annotations

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

__all__ = [
    "AutoscalingConfig", "BUILTIN_STEPS", "BurnWindowConfig", "CLASSIFICATION_METRICS", "CalibrationConfig",
    "Candidate",
    "ChampionRule", "ColumnSpec", "DISTRIBUTED_METRICS", "DataConfig", "DriftConfig", "GateConfig",
    "LOWER_IS_BETTER", "MonitorAlertsConfig", "MonitorConfig", "MonitorDifferentialConfig",
    "MonitorPerformanceConfig", "MonitorSLOConfig", "PipelineConfig", "REGRESSION_METRICS",
    "RETRAIN_TRIGGER_GROUPS", "RetrainConfig", "RetrainPromoteConfig", "RuleConfig", "SEARCH_KINDS",
    "SchedulerConfig", "ServeConfig", "SliceRule", "Strict", "TASK_METRICS", "TrainConfig", "TransformConfig",
    "UserStepConfig",
    "load_config", "parse_config",
]
