"""raymlops: the whole life of a tabular ML model on Ray.

Versioned data (Ray Data → content-addressed snapshots), training (Ray Tune → holdout
evaluation → gate), a registry with lineage, Ray Serve deployment and drift monitoring.

    from raymlops import load_config, run_pipeline
    result = run_pipeline(load_config("configs/quickstart.yaml"))
"""

import importlib
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("raymlops")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

from typing import TYPE_CHECKING, Any

from raymlops.exceptions import (
    ConfigError,
    IntegrityError,
    NotFittedError,
    NotFound,
    RaymlopsError,
    ServeError,
    StepFailed,
    ValidationError,
)

# The rest of the public API is imported on first use (PEP 562): ``import raymlops`` (and every
# CLI command, e.g. ``raymlops monitor check``) then costs the exceptions module, not the config
# models, the pipeline and what they import.
_LAZY = {
    "PipelineConfig": "raymlops.config",
    "load_config": "raymlops.config",
    "parse_config": "raymlops.config",
    "Failure": "raymlops.pipeline.failures",
    "get_run": "raymlops.pipeline.history",
    "list_runs": "raymlops.pipeline.history",
    "Pipeline": "raymlops.pipeline.runner",
    "RunResult": "raymlops.pipeline.runner",
    "StepResult": "raymlops.pipeline.runner",
    "run_pipeline": "raymlops.pipeline.runner",
    "stop_serving": "raymlops.pipeline.runner",
    "run_doctor": "raymlops.registry.doctor",
    "Store": "raymlops.store.home",
}

if TYPE_CHECKING:
    from raymlops.config import PipelineConfig, load_config, parse_config
    from raymlops.pipeline.failures import Failure
    from raymlops.pipeline.history import get_run, list_runs
    from raymlops.pipeline.runner import Pipeline, RunResult, StepResult, run_pipeline, stop_serving
    from raymlops.registry.doctor import run_doctor
    from raymlops.store.home import Store


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'raymlops' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ConfigError",
    "Failure",
    "IntegrityError",
    "NotFittedError",
    "NotFound",
    "Pipeline",
    "PipelineConfig",
    "RaymlopsError",
    "RunResult",
    "ServeError",
    "StepFailed",
    "Store",
    "StepResult",
    "ValidationError",
    "__version__",
    "get_run",
    "list_runs",
    "load_config",
    "parse_config",
    "run_doctor",
    "run_pipeline",
    "stop_serving",
]
