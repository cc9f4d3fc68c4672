"""raymlops: the whole life of a tabular ML model on Ray.

Versioned data (Ray Data → content-addressed snapshots), training (Ray Tune → holdout
evaluation → gate), a registry with lineage, Ray Serve deployment and drift monitoring.

    from raymlops import load_config, run_pipeline
    result = run_pipeline(load_config("configs/quickstart.yaml"))
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("raymlops")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

from raymlops.config import PipelineConfig, load_config, parse_config
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
from raymlops.pipeline.failures import Failure
from raymlops.pipeline.history import get_run, list_runs
from raymlops.pipeline.runner import Pipeline, RunResult, StepResult, run_pipeline, stop_serving
from raymlops.store.doctor import run_doctor
from raymlops.store.home import Store

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
