"""The pipeline runner: ingest → schema → validate → snapshot → data_drift → train → evaluate →
gate → register → deploy → smoke → monitor, each step timed, reported, recorded, and reused
from the step cache when its inputs did not change.

The steps live in :mod:`.data_steps`, :mod:`.model_steps` and :mod:`.serve_steps`, the
bookkeeping they share in :mod:`.base`. Steps that cannot change when their inputs did not
(ingest → validate → snapshot; train → register) are cached (:mod:`raymlops.pipeline.cache`);
data_drift, deploy, smoke and monitor always run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from raymlops.config import PipelineConfig
from raymlops.exceptions import ConfigError
from raymlops.pipeline.base import STEPS, PipelineBase, RunResult, StepResult, where
from raymlops.pipeline.data_steps import DataSteps
from raymlops.pipeline.failures import unwrap
from raymlops.pipeline.history import submission_id, who
from raymlops.pipeline.model_steps import ModelSteps
from raymlops.pipeline.serve_steps import ServeSteps
from raymlops.pipeline.steplog import StepLog, capture_logging
from raymlops.store.home import Store

__all__ = ["STEPS", "Pipeline", "PipelineBase", "RunResult", "StepResult", "run_pipeline", "stop_serving",
           "submission_id", "unwrap", "where", "who"]

SERVE_STEPS = ("deploy", "smoke", "monitor")


class Pipeline(DataSteps, ModelSteps, ServeSteps):
    """Runs one :class:`PipelineConfig` against a :class:`Store` on the connected Ray."""

    def _run_steps(self) -> None:
        self._preflight()
        snap, features = self._data_steps()
        version, passed = self._model_steps(snap, features)
        if not passed:
            for name in SERVE_STEPS:
                self._skip(name, "gate rejected the model")
            return
        if not self.config.serve.enabled:
            for name in SERVE_STEPS:
                self._skip(name, "serve.enabled is false")
            return
        if self.alias != "champion":
            for name in SERVE_STEPS:
                self._skip(name, f"{version.id} was registered without the champion alias")
            return
        self._serve_steps(snap, features, version)


    def _preflight(self) -> None:
        """Mistakes that only show when a step runs, found before any step does (an estimator
        that cannot be imported would otherwise fail after ingest and snapshot): ConfigError,
        exit 2, naming the key path."""
        from raymlops.train.search import import_estimator

        for i, candidate in enumerate(self.config.train.candidates):
            try:
                import_estimator(candidate.estimator)
            except ConfigError as exc:
                where = f"train.candidates[{i}].estimator:"
                raise ConfigError(str(exc).replace("train.candidates:", where, 1)) from None


def run_pipeline(
    config: PipelineConfig | str,
    home: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    keep_serving: bool | None = None,
    use_cache: bool = True,
    *,
    reason: str | None = None,
    alias: str | None = "champion",
    ray_progress: bool = False,
) -> RunResult:
    """Run a pipeline from a config object or YAML path: the one call behind ``raymlops run``.

    ``keep_serving``: leave the deployment up after returning (default: only when connected to
    an existing cluster through ``RAY_ADDRESS``). Call :func:`stop_serving` to take it down.
    ``use_cache``: reuse steps whose inputs did not change since a successful run (ingest →
    snapshot, train → register); False runs every step (and refreshes the cache).
    ``reason``: why (the audit records' reason; default ``pipeline NAME run ID``). ``alias``: the
    alias a model that passes the gate takes; anything but ``champion`` (None: no alias)
    registers it without deploying it, as a retraining that must earn promotion does.
    ``ray_progress``: Ray Data's progress bars and Ray Tune's trial table on stderr.

    On failure the run is recorded (``raymlops runs show RUN``) and the exception raised carries
    ``run_id`` and ``failure`` (:class:`raymlops.pipeline.failures.Failure`): raymlops' own
    errors keep their class (a ConfigError stays one), anything else is a :class:`StepFailed`.
    """
    from raymlops.config import load_config

    cfg = load_config(config) if isinstance(config, str) else config
    pipeline = Pipeline(cfg, Store.open(home), progress=progress, keep_serving=keep_serving, use_cache=use_cache,
                        reason=reason, alias=alias, ray_progress=ray_progress)
    try:
        result = pipeline.run()
    except BaseException:
        if not pipeline.keep_serving:
            _tear_down(pipeline)
        raise
    if not pipeline.keep_serving:
        _tear_down(pipeline)
    return result


def _tear_down(pipeline: Pipeline) -> None:
    """Stop what the run started; a deployment it made goes with an audit record."""
    stop_serving(pipeline.config)
    res = pipeline.result
    if res.endpoint and res.model:
        from raymlops import audit

        why = "the run is over and nothing keeps serving (no RAY_ADDRESS cluster, no --serve)"
        with pipeline.store.metadata.transaction() as conn:
            audit.append(conn, "deployment.deleted", {"model": res.model, "deployment": pipeline.config.route},
                         f"{pipeline.reason}: {why}", {"endpoint": res.endpoint})


def stop_serving(config: PipelineConfig) -> None:
    """Take the pipeline's deployment and monitor down (no-op when Ray or Serve is not running)."""
    import ray

    if not ray.is_initialized():
        return
    from raymlops.monitor.lifecycle import stop_monitor
    from raymlops.ray_session import NAMESPACE
    from raymlops.serve.deploy import undeploy

    serve_logger = logging.getLogger("ray.serve")
    quiet = _BelowWarning()
    serve_logger.addFilter(quiet)  # Serve's "nothing to shut down" is not news
    try:
        with capture_logging(StepLog()):
            undeploy(config.route, shutdown=True)
            stop_monitor(config.route, NAMESPACE)
    finally:
        serve_logger.removeFilter(quiet)


class _BelowWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING
