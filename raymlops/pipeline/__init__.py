"""The pipeline: step objects (:mod:`.step`; the built-in ones in :mod:`.data_steps`,
:mod:`.model_steps`, :mod:`.serve_steps`; the user's in :mod:`.user_steps`) run by a small
runner (:mod:`.runner`) over a :class:`RunContext` (:mod:`.context`)."""

from raymlops.pipeline.context import RunContext
from raymlops.pipeline.data_steps import (
    DataDriftStep,
    IngestStep,
    SchemaIn,
    SchemaStep,
    SnapshotIn,
    SnapshotStep,
    ValidateIn,
    ValidateStep,
)
from raymlops.pipeline.model_steps import EvaluateStep, GateStep, RegisterStep, TrainIn, TrainStep
from raymlops.pipeline.runner import (
    STEPS,
    Pipeline,
    Runner,
    RunResult,
    StepResult,
    builtin_steps,
    plan,
    run_pipeline,
    stop_serving,
)
from raymlops.pipeline.serve_steps import DeployStep, MonitorStep, SmokeStep
from raymlops.pipeline.step import Step
from raymlops.pipeline.user_steps import StepInput, UserStep

__all__ = ["STEPS", "DataDriftStep", "DeployStep", "EvaluateStep", "GateStep", "IngestStep", "MonitorStep", "Pipeline",
           "RegisterStep", "RunContext", "RunResult", "Runner", "SchemaIn", "SchemaStep", "SmokeStep", "SnapshotIn",
           "SnapshotStep", "Step", "StepInput", "StepResult", "TrainIn", "TrainStep", "UserStep", "ValidateIn",
           "ValidateStep", "builtin_steps", "plan", "run_pipeline", "stop_serving"]
