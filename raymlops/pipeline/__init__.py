"""The pipeline runner."""

from raymlops.pipeline.runner import Pipeline, RunResult, StepResult, run_pipeline, stop_serving

__all__ = ["Pipeline", "RunResult", "StepResult", "run_pipeline", "stop_serving"]
