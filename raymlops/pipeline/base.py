"""The pipeline's bookkeeping: step and run results, the step context (timed, reported,
recorded, failures in the user's terms), the cache hooks and the connection to Ray. The steps
themselves live in :mod:`.data_steps`, :mod:`.model_steps` and :mod:`.serve_steps`; the
runner (:mod:`.runner`) puts them in order.

Every run gets an id and a record (:mod:`raymlops.pipeline.history`): who started it, where,
the config and code version, and per step its status, inputs, outputs, cache key, rows, bytes,
log and, when it failed, the user's exception with its traceback
(:mod:`raymlops.pipeline.failures`).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raymlops.config import PipelineConfig
from raymlops.exceptions import RaymlopsError, StepFailed, ValidationError
from raymlops.hooks import sync_pipeline_webhooks
from raymlops.pipeline.cache import StepCache
from raymlops.pipeline.failures import Failure, describe, frames, unwrap
from raymlops.pipeline.history import RunRecorder, new_run_id, submission_id, who
from raymlops.pipeline.steplog import LogCapture, StepLog, capture_logging, stamp
from raymlops.store.home import Store

STEPS = ("ingest", "schema", "validate", "snapshot", "data_drift", "train", "evaluate", "gate", "register", "deploy",
         "smoke", "monitor")
LOG_TAIL = 20

__all__ = ["STEPS", "PipelineBase", "RunResult", "StepResult", "where"]


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


def where(persistent: bool) -> dict[str, Any]:
    """The Ray cluster the run uses, and the job it belongs to (``ray job submit`` included)."""
    import ray

    ctx = ray.get_runtime_context()
    out: dict[str, Any] = {"host": socket.gethostname(), "ray_version": ray.__version__,
                           "cluster": "existing (RAY_ADDRESS)" if persistent else "private local Ray",
                           "ray_address_env": os.environ.get("RAY_ADDRESS"), "namespace": ctx.namespace}
    for key, get in (("ray_address", lambda: ctx.gcs_address), ("job_id", ctx.get_job_id),
                     ("node_id", ctx.get_node_id)):
        try:
            out[key] = get()
        except Exception:  # older Ray, or not available in this process
            out[key] = None
    submission = submission_id(os.environ)
    out["ray_job_id_env"] = os.environ.get("RAY_JOB_ID")
    out["submission_id"] = submission
    out["under_job_submit"] = submission is not None
    return out


class PipelineBase:
    """The state of one run of a :class:`PipelineConfig` against a :class:`Store`, and the step
    machinery; see the module docstring. ``reason``: why the run was started (the audit records'
    *why*; default ``pipeline NAME run ID``). ``alias``: the alias a model that passes the gate
    takes (``champion``; None registers it without one, for a challenger that must earn it).
    ``ray_progress``: show Ray Data's progress bars and Ray Tune's trial table on stderr."""

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
        self.config = config
        self.ray_progress = ray_progress
        self.alias = alias
        self.store = store
        self.progress = progress or (lambda line: print(line, file=sys.stderr, flush=True))
        self.keep_serving = keep_serving
        self.use_cache = use_cache
        self.clock = clock
        self.run_id = new_run_id(clock)
        self.reason = reason or f"pipeline {config.name} run {self.run_id}"
        self.result = RunResult(run_id=self.run_id, pipeline=config.name)
        self.cache = StepCache(store.metadata, clock)
        self.recorder = RunRecorder(store.metadata, self.run_id, clock)
        self.failure: Failure | None = None
        self._who = who()
        self._where: dict[str, Any] = {}
        self._code: dict[str, Any] | None = None
        self._started = clock()
        self._persistent = False
        self._connected = False
        self._capture: LogCapture | None = None
        self._current: StepResult | None = None
        self._transforms: list[Any] = []
        self._arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._table: Any = None  # the training snapshot's Arrow table, once read
        self._reference: Any = None  # the data_drift reference (raymlops.data.drift.Reference)

    # -- records -------------------------------------------------------------------------------
    def _say(self, line: str) -> None:
        self.progress(line)
        if self._current is not None:
            self._current.log.add(stamp(line, self.clock()))

    def _record(self) -> dict[str, Any]:
        return self.result.to_dict() | {
            "who": self._who, "where": self._where, "config": self.config.model_dump(mode="json"),
            "config_hash": self.config.config_hash(), "code": self._code, "use_cache": self.use_cache,
            "error": None if self.failure is None else self.failure.to_dict(),
        }

    def _save_run(self, status: str) -> None:
        ended = None if status == "running" else self.clock()
        self.recorder.save_run(pipeline=self.config.name, status=status, config_hash=self.config.config_hash(),
                               started_at=self._started, ended_at=ended, record=self._record())

    def _save_step(self, step: StepResult) -> None:
        self.recorder.save_step(STEPS.index(step.name) + 1, step.to_dict(), step.log.text())

    # -- step bookkeeping ----------------------------------------------------------------------
    @contextmanager
    def _step(self, name: str, key: str | None = None, inputs: dict[str, Any] | None = None) -> Iterator[StepResult]:
        i = STEPS.index(name) + 1
        step = StepResult(name, "running", 0.0, started_at=self.clock(), cache_key=key, inputs=dict(inputs or {}))
        self._current = step
        self._say(f"[{i}/{len(STEPS)}] {name} ...")
        self._save_step(step)  # a run that dies here still shows which step it was in
        t0 = time.perf_counter()
        failure: Failure | None = None
        try:
            # with ray_progress, Ray's own lines (Ray Data's progress among them) reach the terminal too
            with capture_logging(step.log, mute_ray_terminal=not self.ray_progress) as self._capture:
                try:
                    yield step
                except BaseException as exc:
                    failure = self._describe(exc, name)  # still capturing: what Ray logs meanwhile is kept
                    raise
        except BaseException as exc:
            self._capture = None
            step.seconds = time.perf_counter() - t0
            step.ended_at = self.clock()
            step.status = "failed"
            if failure is None:
                failure = self._describe(exc, name)
            step.detail = failure.summary.splitlines()[0] if failure.summary else ""
            self._say(f"[{i}/{len(STEPS)}] {name} failed after {step.seconds:.1f}s: {step.detail}")
            failure.log_tail = step.log.tail(LOG_TAIL)
            step.error = failure.to_dict()
            self.failure = failure
            self.result.steps.append(step)
            self._save_step(step)
            self._current = None
            raise
        self._capture = None
        step.seconds = time.perf_counter() - t0
        step.ended_at = self.clock()
        if step.status == "running":
            step.status = "ran"
        self.result.steps.append(step)
        suffix = f" ({step.detail})" if step.detail else ""
        self._say(f"[{i}/{len(STEPS)}] {name} {step.status} in {step.seconds:.1f}s{suffix}")
        self._save_step(step)
        self._current = None

    def _cached(self, name: str, key: str, detail: str, outputs: dict[str, Any] | None = None,
                rows: int | None = None, nbytes: int | None = None, inputs: dict[str, Any] | None = None) -> None:
        now = self.clock()
        step = StepResult(name, "cached", 0.0, detail, started_at=now, ended_at=now, cache_key=key,
                          inputs=dict(inputs or {}), outputs=dict(outputs or {}), rows=rows, bytes=nbytes)
        line = f"[{STEPS.index(name) + 1}/{len(STEPS)}] {name} cached ({detail})"
        self.progress(line)
        step.log.add(stamp(line, now))
        self.result.steps.append(step)
        self._save_step(step)

    def _skip(self, name: str, why: str, quiet: bool = False) -> None:
        now = self.clock()
        step = StepResult(name, "skipped", 0.0, why, started_at=now, ended_at=now)
        if not quiet:
            line = f"[{STEPS.index(name) + 1}/{len(STEPS)}] {name} skipped ({why})"
            self.progress(line)
            step.log.add(stamp(line, now))
        self.result.steps.append(step)
        self._save_step(step)

    def _describe(self, exc: BaseException, step: str | None) -> Failure:
        """The failure in the user's terms, with the remote traceback found where Ray left it."""
        failure = describe(exc, step)
        if step == "train" and not failure.remote:
            failure = describe(exc, step, extra_texts=self._tune_error_texts())
        if step == "train" and failure.remote:
            every = "every trial failed" in str(unwrap(exc))
            failure.context = "every Tune trial failed; the first" if every else "a Tune trial failed"
        elif step == "deploy":
            # the replica's traceback: from Serve's status, or (when deploy already removed the
            # failed app) from what deploy collected before removing it
            texts = self._serve_failure_texts() or list(getattr(exc, "replica_texts", []))
            if texts:
                replica = describe(exc, step, extra_texts=texts)
                if replica.remote:
                    replica.context = "the Serve replica failed to start"
                    failure = replica
        elif step == "ingest" and failure.remote:
            seen = {(f.file, f.func) for f in frames(failure.traceback)}
            for t in self._transforms:
                if t.code_location() in seen:
                    failure.context = f"{t.key} ({t.spec}) raised"
                    break
        return failure

    def _tune_error_texts(self) -> list[str]:
        root = self.store.home / "tune" / f"{self.config.name}-{self.run_id}"
        return [p.read_text(errors="replace") for p in sorted(root.glob("*/error.txt"))[:4]]

    def _serve_failure_texts(self) -> list[str]:
        try:
            from ray import serve

            app = serve.status().applications.get(self.config.route)
        except Exception:  # Serve not running: nothing more to learn
            return []
        if app is None:
            return []
        texts = [d.message for d in app.deployments.values() if getattr(d, "message", "")]
        return texts + ([app.message] if app.message else [])

    def _skip_rest(self, why: str) -> None:
        done = {s.name for s in self.result.steps}
        for name in STEPS:
            if name not in done:
                self._skip(name, why, quiet=True)

    # -- the split -----------------------------------------------------------------------------
    def _read_table(self, snap_id: str) -> Any:
        if self._table is None:
            from raymlops.data.snapshot_read import read_snapshot

            _, self._table = read_snapshot(self.store, snap_id)
        return self._table

    def _split(self, snap_id: str, features: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(X_train, y_train, X_holdout, y_holdout)`` of the snapshot, read once."""
        if self._arrays is None:
            from raymlops.train.prepare import split_table

            self._arrays = split_table(self._read_table(snap_id), features, self.config)
        return self._arrays

    def _holdout_columns(self, snap_id: str, columns: list[str]) -> dict[str, np.ndarray]:
        """The holdout rows of each ``gate.slices`` column (a feature or any other column of the snapshot)."""
        if not columns:
            return {}
        from raymlops.train.prepare import holdout_of

        table = self._read_table(snap_id)
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise ValidationError(
                f"gate.slices: the data has no column {missing[0]!r} (columns: {', '.join(table.column_names)})")
        holdout = holdout_of(table, self.config)
        return {c: table.column(c).to_numpy(zero_copy_only=False)[holdout] for c in columns}

    # -- the run -------------------------------------------------------------------------------
    def _run_steps(self) -> None:
        raise NotImplementedError

    def run(self) -> RunResult:
        from raymlops.registry.lineage import code_version

        # webhooks: of this config, stored in the home so the monitor actor and the CLI send to them too
        sync_pipeline_webhooks(self.store.home, self.config.name, self.config.webhooks)
        self._started = self.clock()
        self._code = code_version()
        self._where = {"host": socket.gethostname(), "cluster": "not connected (every step was cached)"}
        self._save_run("running")
        try:
            self._run_steps()
        except BaseException as exc:
            interrupted = isinstance(exc, KeyboardInterrupt)
            if self.failure is None:  # raised between steps
                self.failure = describe(exc, self._current.name if self._current else None)
            failed_at = self.failure.step
            self._skip_rest("interrupted" if interrupted else f"not run: step '{failed_at}' failed"
                            if failed_at else "not run: the run failed")
            self.result.status = "interrupted" if interrupted else "failed"
            self.result.error = self.failure.to_dict()
            self.result.seconds = self.clock() - self._started
            self._save_run(self.result.status)
            if interrupted:
                raise
            raise self._translate(exc) from (exc if not isinstance(unwrap(exc), RaymlopsError) else None)
        self.result.status = "succeeded"
        self.result.seconds = self.clock() - self._started
        self._save_run("succeeded")
        return self.result

    def _connect(self) -> None:
        """Join Ray when a step first needs it (a run whose steps are all cached never starts one)."""
        if self._connected:
            return
        from raymlops.ray_session import ensure_ray

        serve = self.config.serve
        if serve.enabled:
            from raymlops.serve.throughput import fast_ingress_for_private_ray

            # a private Ray started next runs Serve's HAProxy ingress (loopback only, quick to stop),
            # unless serve.high_throughput is false
            fast_ingress_for_private_ray(serve.high_throughput)
        persistent = ensure_ray()
        if self.ray_progress:
            from ray.data import DataContext

            DataContext.get_current().enable_progress_bars = True
            logging.getLogger("ray.data").setLevel(logging.INFO)  # off a terminal, Ray Data logs its progress
        if self.keep_serving is None:
            self.keep_serving = persistent
        self._persistent = persistent
        self._where = where(persistent)
        self._connected = True
        if self._capture is not None:
            self._capture.refresh()  # Ray's loggers exist now: their lines go to the step log too
        self._save_run("running")

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
