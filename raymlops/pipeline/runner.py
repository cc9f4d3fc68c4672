"""The pipeline runner: ingest → schema → validate → snapshot → data_drift → train → evaluate →
gate → register → deploy → smoke → monitor (:data:`STEPS`), with the config's own steps
(``steps:``, :mod:`.user_steps`) after the built-in step each names.

:class:`Runner` runs a list of :class:`~raymlops.pipeline.step.Step` objects over a
:class:`~raymlops.pipeline.context.RunContext`: each step is timed, reported (``[i/N] name ...``),
recorded in the run history with its log (:mod:`.history`, :mod:`.steplog`), reused from the
step cache when its inputs did not change (:mod:`.cache`; ingest → snapshot and train → register
are one entry each, :class:`~raymlops.pipeline.step.CacheGroup`), skipped when it does not
apply (``skipped (gate rejected the model)``), and a failure is explained in the user's terms
(:mod:`.failures`). :class:`Pipeline` is the runner of one config's built-in and user steps.
"""

from __future__ import annotations

import logging
import signal
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from raymlops import audit
from raymlops.config import BUILTIN_STEPS, PipelineConfig, load_config
from raymlops.exceptions import ConfigError, RaymlopsError, StepFailed, Terminated
from raymlops.hooks import sync_pipeline_webhooks
from raymlops.pipeline.context import RunContext
from raymlops.pipeline.data_steps import DataCache, DataDriftStep, IngestStep, SchemaStep, SnapshotStep, ValidateStep
from raymlops.pipeline.failures import Failure, describe
from raymlops.pipeline.model_steps import EvaluateStep, GateStep, ModelCache, RegisterStep, TrainStep
from raymlops.pipeline.results import RunResult, StepResult
from raymlops.pipeline.serve_steps import DeployStep, MonitorStep, SmokeStep
from raymlops.pipeline.step import CacheGroup, Outputs, Restored, Step
from raymlops.pipeline.steplog import LogCapture, StepLog, capture_logging, stamp
from raymlops.pipeline.user_steps import check_arguments, import_call, user_steps
from raymlops.ray_session import NAMESPACE, exception_chain, private_ray_lost, unwrap
from raymlops.registry.lineage import code_version
from raymlops.serve.deploy import undeploy
from raymlops.store.home import Store

__all__ = ["STEPS", "Pipeline", "RunResult", "Runner", "StepResult", "builtin_steps", "end_serving", "plan",
           "run_pipeline", "stop_serving"]

STEPS = BUILTIN_STEPS
LOG_TAIL = 20


def _interrupted(exc: BaseException) -> bool:
    """Whether ``exc`` is Ctrl-C (or SIGTERM: :func:`_terminated`) as it reaches the run: a
    KeyboardInterrupt, or an error Ray raised because of one (the terminal's SIGINT reaches Ray's
    workers too, and a task that got it comes back wrapped; cleanup that failed while the interrupt
    unwound has it as its context)."""
    return any(isinstance(e, KeyboardInterrupt) or isinstance(unwrap(e), KeyboardInterrupt)
               or (isinstance(e, SystemExit) and e.code == signal.SIGTERM) for e in exception_chain(exc))


def _terminated(exc: BaseException) -> bool:
    """Whether ``exc`` is SIGTERM as it reaches the run: raymlops' :class:`Terminated`, or the
    ``SystemExit(15)`` of the handler Ray's driver installs (it recorded a failed run, "Fix the cause")."""
    return any(isinstance(e, Terminated) or (isinstance(e, SystemExit) and e.code == signal.SIGTERM)
               for e in exception_chain(exc))


def builtin_steps() -> list[Step[Any, Any]]:
    """One object per built-in step, in run order."""
    return [IngestStep(), SchemaStep(), ValidateStep(), SnapshotStep(), DataDriftStep(), TrainStep(), EvaluateStep(),
            GateStep(), RegisterStep(), DeployStep(), SmokeStep(), MonitorStep()]


def plan(config: PipelineConfig) -> list[Step[Any, Any]]:
    """The steps of a run of ``config``: the built-in ones, each followed by the user steps after it."""
    users = user_steps(config)
    out: list[Step[Any, Any]] = []
    for step in builtin_steps():
        out += [step, *(u for u in users if u.spec.after == step.name)]
    return out


class Runner:
    """Runs ``steps`` over ``ctx`` (see the module docstring); ``groups``: the cache entries
    several consecutive steps share (default: the data and the model steps')."""

    def __init__(self, ctx: RunContext, steps: Sequence[Step[Any, Any]],
                 groups: Sequence[CacheGroup] | None = None) -> None:
        self.ctx = ctx
        self.steps = list(steps)
        self.groups = list(groups) if groups is not None else [DataCache(), ModelCache()]
        self.failure: Failure | None = None
        self._at: str | None = None  # the step being prepared or run
        self._capture: LogCapture | None = None
        self._started = ctx.clock()
        ctx.on_connect = self._connected

    # -- convenience ---------------------------------------------------------------------------
    @property
    def config(self) -> PipelineConfig:
        return self.ctx.config

    @property
    def store(self) -> Store:
        return self.ctx.store

    @property
    def result(self) -> RunResult:
        return self.ctx.result

    @property
    def run_id(self) -> str:
        return self.ctx.run_id

    @property
    def reason(self) -> str:
        return self.ctx.reason

    @property
    def keep_serving(self) -> bool | None:
        return self.ctx.keep_serving

    # -- records -------------------------------------------------------------------------------
    def _record(self) -> dict[str, Any]:
        ctx = self.ctx
        return self.result.to_dict() | {
            "who": ctx.who, "where": ctx.where, "config": self.config.model_dump(mode="json"),
            "config_hash": self.config.config_hash(), "code": ctx.code, "use_cache": ctx.use_cache,
            "error": None if self.failure is None else self.failure.to_dict(),
        }

    def _save_run(self, status: str) -> None:
        ended = None if status == "running" else self.ctx.clock()
        self.ctx.recorder.save_run(pipeline=self.config.name, status=status, config_hash=self.config.config_hash(),
                                   started_at=self._started, ended_at=ended, record=self._record())

    def _save_step(self, i: int, step: StepResult) -> None:
        self.ctx.recorder.save_step(i, step.to_dict(), step.log.text())

    def _connected(self) -> None:
        if self._capture is not None:
            self._capture.refresh()  # Ray's loggers exist now: their lines go to the step log too
        self._save_run("running")

    def _line(self, i: int, text: str) -> str:
        return f"[{i}/{len(self.steps)}] {text}"

    # -- one step ------------------------------------------------------------------------------
    @contextmanager
    def _running(self, i: int, step: Step[Any, Any], key: str | None, inputs: dict[str, Any]) -> Iterator[StepResult]:
        ctx, name = self.ctx, step.name
        record = StepResult(name, "running", 0.0, started_at=ctx.clock(), cache_key=key, inputs=inputs)
        ctx.step = record
        ctx.say(self._line(i, f"{name} ..."))
        self._save_step(i, record)  # a run that dies here still shows which step it was in
        t0 = time.perf_counter()
        failure: Failure | None = None
        try:
            # with ray_progress, Ray's own lines (Ray Data's progress among them) reach the terminal too
            with capture_logging(record.log, mute_ray_terminal=not ctx.ray_progress) as self._capture:
                try:
                    yield record
                except BaseException as exc:
                    failure = self._describe(exc, step)  # still capturing: what Ray logs meanwhile is kept
                    raise
        except BaseException as exc:
            self._capture = None
            record.seconds = time.perf_counter() - t0
            record.ended_at = ctx.clock()
            record.status = "interrupted" if _interrupted(exc) else "failed"
            if failure is None:
                failure = self._describe(exc, step)
            record.detail = failure.summary.splitlines()[0] if failure.summary else ""
            ctx.say(self._line(i, f"{name} {record.status} after {record.seconds:.1f}s: {record.detail}"))
            failure.log_tail = record.log.tail(LOG_TAIL)
            record.error = failure.to_dict()
            self.failure = failure
            self.result.steps.append(record)
            self._save_step(i, record)
            raise
        self._capture = None
        record.seconds = time.perf_counter() - t0
        record.ended_at = ctx.clock()
        if record.status == "running":
            record.status = "ran"
        self.result.steps.append(record)
        suffix = f" ({record.detail})" if record.detail else ""
        ctx.say(self._line(i, f"{name} {record.status} in {record.seconds:.1f}s{suffix}"))
        self._save_step(i, record)

    def _cached(self, i: int, name: str, found: Restored) -> StepResult:
        now = self.ctx.clock()
        record = StepResult(name, "cached", 0.0, found.detail, started_at=now, ended_at=now, cache_key=found.key,
                            inputs=dict(found.inputs), outputs=dict(found.outputs), rows=found.rows,
                            bytes=found.nbytes)
        line = self._line(i, f"{name} cached ({found.detail})")
        self.ctx.progress(line)
        record.log.add(stamp(line, now))
        self.result.steps.append(record)
        self._save_step(i, record)
        return record

    def _skip(self, i: int, name: str, why: str, quiet: bool = False) -> StepResult:
        now = self.ctx.clock()
        record = StepResult(name, "skipped", 0.0, why, started_at=now, ended_at=now)
        if not quiet:
            line = self._line(i, f"{name} skipped ({why})")
            self.ctx.progress(line)
            record.log.add(stamp(line, now))
        self.result.steps.append(record)
        self._save_step(i, record)
        return record

    def _describe(self, exc: BaseException, step: Step[Any, Any] | None) -> Failure:
        """The failure in the user's terms, with the remote traceback found where Ray left it."""
        if step is None:
            return describe(exc, self._at)
        return step.explain(self.ctx, exc, describe(exc, step.name))

    # -- the run -------------------------------------------------------------------------------
    def _preflight(self) -> None:
        """Mistakes that only show when a step runs, found before any step does (an estimator
        that cannot be imported would otherwise fail after ingest and snapshot): ConfigError,
        exit 2, naming the key path."""
        # scikit-learn + scipy.stats (~1 s): only when the step runs (`raymlops runs` imports this package)
        from raymlops.data.sources import check_local_source
        from raymlops.train.search import expand, import_estimator

        if not self.config.data.options:
            check_local_source(self.config.data.source)  # a missing file, an unknown sklearn:// dataset
        for i, candidate in enumerate(self.config.train.candidates):
            try:
                import_estimator(candidate.estimator)
            except ConfigError as exc:
                where = f"train.candidates[{i}].estimator:"
                raise ConfigError(str(exc).replace("train.candidates:", where, 1)) from None
        # every trial's estimator made once, as the train step makes them: a misspelled or refused parameter
        expand(self.config.train.candidates, self.config.train.num_samples, self.config.seed)
        for i, spec in enumerate(self.config.steps):
            check_arguments(f"steps[{i}]", spec.call, import_call(f"steps[{i}].call", spec.call), spec.with_)

    def _run_steps(self) -> None:
        ctx = self.ctx
        outputs = Outputs()
        group_of = {name: g for g in self.groups for name in g.names}
        restored: dict[str, Restored] = {}
        from_cache: set[str] = set()
        skipped: dict[str, str] = {}
        for i, step in enumerate(self.steps, 1):
            name, group = step.name, group_of.get(step.name)
            self._at = name
            if group is not None and name == group.names[0]:
                restored = group.restore(ctx, outputs) or {}
                from_cache = set(restored)
            if name in restored:
                found = restored.pop(name)
                found.key = group.key_of(ctx, name, outputs) if group is not None else found.key
                outputs[name] = found.out
                record = self._cached(i, name, found)
            else:
                record = self._run_one(i, step, group, outputs, skipped)
            outputs.records[name] = ctx.previous = record
            if group is not None and name == group.names[-1] and record.status != "skipped":
                for key, what, value in group.entries(ctx, outputs, outputs.records, from_cache):
                    ctx.cache.put(key, what, ctx.run_id, value)
        self._at = None

    def _run_one(self, i: int, step: Step[Any, Any], group: CacheGroup | None, outputs: Outputs,
                 skipped: dict[str, str]) -> StepResult:
        ctx, name = self.ctx, step.name
        why = next((skipped[r] for r in step.requires if r in skipped), None)
        inputs: Any = None
        if why is None:
            inputs = step.take(ctx, outputs)
            why = step.skip(ctx, inputs)
        if why is not None:
            skipped[name] = why
            return self._skip(i, name, why)
        key = group.key_of(ctx, name, outputs) if group is not None else step.cache_key(ctx, inputs)
        if group is None and key is not None and ctx.use_cache:
            hit = ctx.cache.get(key)
            if hit is not None:
                value = {k: v for k, v in hit.items() if k != "_run"}
                outputs[name] = value
                return self._cached(i, name, Restored(value, f"unchanged since run {hit['_run']}", value, key=key,
                                                      inputs=step.describe_inputs(ctx, inputs)))
        with self._running(i, step, key, step.describe_inputs(ctx, inputs)) as record:
            outputs[name] = step.run(ctx, inputs)
        if group is None and key is not None:
            ctx.cache.put(key, name, ctx.run_id, dict(record.outputs))
        return record

    def _skip_rest(self, why: str) -> None:
        done = {s.name for s in self.result.steps}
        for i, step in enumerate(self.steps, 1):
            if step.name not in done:
                self._skip(i, step.name, why, quiet=True)

    def run(self) -> RunResult:
        """Run every step; the result, or the failure raised as :meth:`_translate` says."""

        ctx = self.ctx
        # webhooks: of this config, stored in the home so the monitor actor and the CLI send to them too
        sync_pipeline_webhooks(ctx.store.home, self.config.name, self.config.webhooks)
        self._started = ctx.clock()
        # the project's code: the git state of the config file's folder (not the shell's), else of the cwd
        ctx.code = ctx.code or code_version(Path(self.config._file).parent if self.config._file else ".")
        ctx.where = ctx.where or {"host": socket.gethostname(),
                                  "cluster": "not connected (no step had needed Ray when this was recorded)"}
        self._save_run("running")
        try:
            self._preflight()
            self._run_steps()
        except BaseException as exc:
            interrupted, terminated = _interrupted(exc), _terminated(exc)
            if self.failure is None:  # raised between steps
                self.failure = describe(exc, self._at)
            failed_at = self.failure.step
            self._skip_rest("interrupted" if interrupted else f"not run: step '{failed_at}' failed"
                            if failed_at else "not run: the run failed")
            self.result.status = "interrupted" if interrupted else "failed"
            self.result.error = self.failure.to_dict()
            self.result.seconds = ctx.clock() - self._started
            self._save_run(self.result.status)
            if isinstance(exc, KeyboardInterrupt):
                raise
            if terminated:
                raise Terminated(f"terminated (SIGTERM) during step '{self.failure.step}'") from exc
            if interrupted:  # the caller sees Ctrl-C as Ctrl-C (exit 130), whatever Ray wrapped it in
                raise KeyboardInterrupt(f"interrupted during step '{self.failure.step}'") from exc
            raise self._translate(exc) from (exc if not isinstance(unwrap(exc), RaymlopsError) else None)
        self.result.status = "succeeded"
        self.result.seconds = ctx.clock() - self._started
        self._save_run("succeeded")
        return self.result

    def _translate(self, exc: BaseException) -> BaseException:
        """What the caller sees: raymlops' own errors as they are (a ConfigError stays one, exit 2);
        anything else as :class:`StepFailed` in the user's terms. Both carry ``run_id`` and
        ``failure``."""
        assert self.failure is not None
        inner = unwrap(exc)
        out: BaseException
        if isinstance(inner, RaymlopsError) and not isinstance(inner, StepFailed):
            out = inner
        else:
            what = self.failure.summary.splitlines()[0] if self.failure.summary else type(inner).__name__
            if self.failure.context:
                what = f"{self.failure.context}: {what}"
            out = StepFailed(self.failure.step or "start", what)
        out.run_id = self.run_id  # type: ignore[attr-defined]
        out.failure = self.failure  # type: ignore[attr-defined]
        return out


class Pipeline(Runner):
    """Runs one :class:`PipelineConfig` against a :class:`Store`: its built-in steps and its own
    (``steps:``). Options as in :class:`~raymlops.pipeline.context.RunContext`."""

    def __init__(
        self,
        config: PipelineConfig,
        store: Store,
        progress: Callable[[str], None] | None = None,
        keep_serving: bool | None = None,
        use_cache: bool = True,
        clock: Callable[[], float] = time.time,
        reason: str | None = None,
        alias: str | None = "champion",
        ray_progress: bool = False,
    ) -> None:
        ctx = RunContext(config, store, clock=clock, use_cache=use_cache, reason=reason or "", alias=alias,
                         keep_serving=keep_serving, ray_progress=ray_progress)
        if progress is not None:
            ctx.progress = progress
        super().__init__(ctx, plan(config))


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
    snapshot, train → register, user steps with ``cache: true``); False runs every step (and
    refreshes the cache). ``reason``: why (the audit records' reason; default ``pipeline NAME
    run ID``). ``alias``: the alias a model that passes the gate takes; anything but
    ``champion`` (None: no alias) registers it without deploying it, as a retraining that must
    earn promotion does. ``ray_progress``: Ray Data's progress bars and Ray Tune's trial table on
    stderr.

    On failure the run is recorded (``raymlops runs show RUN``) and the exception raised carries
    ``run_id`` and ``failure`` (:class:`raymlops.pipeline.failures.Failure`): raymlops' own
    errors keep their class (a ConfigError stays one), anything else is a :class:`StepFailed`.
    """

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


def _tear_down(pipeline: Runner) -> None:
    """Stop what the run started; a deployment it made goes with an audit record. Serve itself
    stays up when it was running before the run (another program's, or a notebook's, Serve)."""
    end_serving(pipeline.store, pipeline.config, pipeline.result, pipeline.reason,
                "the run is over and nothing keeps serving (no RAY_ADDRESS cluster, no --serve)",
                shutdown=pipeline.ctx.serve_started)


def end_serving(store: Store, config: PipelineConfig, result: RunResult, reason: str, why: str,
                shutdown: bool = True) -> None:
    """Stop the deployment a run made (:func:`stop_serving`) and audit it: ``deployment.deleted``,
    ``reason: why`` (the end of a run, or Ctrl-C of ``raymlops run --serve``)."""
    stop_serving(config, shutdown=shutdown)
    if result.endpoint and result.model:
        with store.metadata.transaction() as conn:
            audit.append(conn, "deployment.deleted", {"model": result.model, "deployment": config.route},
                         f"{reason}: {why}", {"endpoint": result.endpoint})


def stop_serving(config: PipelineConfig, shutdown: bool = True) -> None:
    """Take the pipeline's deployment and monitor down (no-op when Ray or Serve is not running);
    ``shutdown``: Serve too, unless other apps run on it."""
    import ray

    if not ray.is_initialized() or private_ray_lost():  # (a SIGTERM to the process group took Ray with it)
        return
    # imports Ray and the monitor actor: only when the step runs
    from raymlops.monitor.lifecycle import stop_monitor

    serve_logger = logging.getLogger("ray.serve")
    quiet = _BelowWarning()
    serve_logger.addFilter(quiet)  # Serve's "nothing to shut down" is not news
    try:
        with capture_logging(StepLog()):
            undeploy(config.route, shutdown=shutdown)
            stop_monitor(config.route, NAMESPACE)
    finally:
        serve_logger.removeFilter(quiet)


class _BelowWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING
