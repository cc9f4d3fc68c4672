"""The pipeline runner: ingest → schema → snapshot → train → evaluate → gate → register → deploy
→ smoke → monitor, each step timed, reported, recorded, and reused from the step cache when its
inputs did not change.

Every run gets an id and a record (:mod:`raymlops.pipeline.history`): who started it, where,
the config and code version, and per step its status, inputs, outputs, cache key, rows, bytes,
log and, when it failed, the user's exception with its traceback
(:mod:`raymlops.pipeline.failures`). Steps that cannot change when their inputs did not
(ingest → snapshot; train → register) are cached (:mod:`raymlops.pipeline.cache`); deploy,
smoke and monitor always run.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from raymlops import audit
from raymlops.config import PipelineConfig
from raymlops.exceptions import IntegrityError, NotFound, RaymlopsError, ServeError, StepFailed, ValidationError
from raymlops.pipeline.cache import StepCache, fingerprint, module_fingerprint, source_fingerprint
from raymlops.pipeline.failures import Failure, describe, frames, unwrap
from raymlops.pipeline.history import RunRecorder, new_run_id, submission_id, who
from raymlops.pipeline.steplog import LogCapture, StepLog, capture_logging, stamp
from raymlops.store.home import Store

STEPS = ("ingest", "schema", "snapshot", "train", "evaluate", "gate", "register", "deploy", "smoke", "monitor")
LOG_TAIL = 20

__all__ = ["STEPS", "Pipeline", "RunResult", "StepResult", "run_pipeline", "stop_serving", "submission_id",
           "unwrap", "where", "who"]


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
    steps: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0
    status: str = "running"
    error: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run_id, "pipeline": self.pipeline, "status": self.status,
            "snapshot": self.snapshot, "model": self.model, "gate": self.gate, "gate_reasons": self.gate_reasons,
            "endpoint": self.endpoint, "metrics": self.metrics, "drift": self.drift,
            "seconds": round(self.seconds, 3), "steps": [s.to_dict() for s in self.steps], "error": self.error,
        }


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


class Pipeline:
    """Runs one :class:`PipelineConfig` against a :class:`Store` on the connected Ray."""

    def __init__(
        self,
        config: PipelineConfig,
        store: Store,
        progress: Callable[[str], None] | None = None,
        keep_serving: bool | None = None,
        use_cache: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.progress = progress or (lambda line: print(line, file=sys.stderr, flush=True))
        self.keep_serving = keep_serving
        self.use_cache = use_cache
        self.clock = clock
        self.run_id = new_run_id(clock)
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
            with capture_logging(step.log) as self._capture:
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

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> RunResult:
        from raymlops.registry.lineage import code_version

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
        from raymlops.pipeline.ray_env import ensure_ray

        persistent = ensure_ray()
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

    def _run_steps(self) -> None:
        snap, features = self._data_steps()
        version, passed = self._model_steps(snap, features)
        if not passed:
            for name in ("deploy", "smoke", "monitor"):
                self._skip(name, "gate rejected the model")
            return
        if not self.config.serve.enabled:
            for name in ("deploy", "smoke", "monitor"):
                self._skip(name, "serve.enabled is false")
            return
        self._serve_steps(snap, features, version)

    # -- ingest → schema → snapshot ------------------------------------------------------------
    def _data_key(self) -> str | None:
        cfg = self.config
        source = source_fingerprint(cfg.data.source, cfg.data.options)
        if source is None:
            return None
        transforms = []
        for entry in cfg.data.transforms:
            spec = getattr(entry, entry.kind)
            module = spec.split(":", 1)[0] if isinstance(spec, str) and ":" in spec else None
            transforms.append({"kind": entry.kind, "spec": spec,
                               "code": module_fingerprint(module) if module else None})
        # the rest of the data section too (validation rules, schema, …): any change there reads again
        data = cfg.data.model_dump(mode="json", exclude={"target", "features", "holdout_fraction", "options"})
        return fingerprint("ingest", {"source": source, "data": data, "transforms": transforms})

    def _data_steps(self) -> tuple[Any, list[str]]:
        from raymlops.data.schema import check_training_schema, infer_schema
        from raymlops.data.snapshot import create_snapshot, snapshot_info, verify_snapshot
        from raymlops.data.sources import open_source
        from raymlops.data.transforms import apply, resolve

        cfg, store, res = self.config, self.store, self.result
        key = self._data_key()
        schema_key = None if key is None else fingerprint(
            "schema", {"ingest": key, "target": cfg.data.target, "features": cfg.data.features})
        snap_key = None if key is None else fingerprint("snapshot", {"ingest": key})
        hit = self.cache.get(key) if key and self.use_cache else None
        if hit is not None:
            try:
                snap = snapshot_info(store, hit["snapshot"])
                problems = verify_snapshot(store, snap.id)
            except (NotFound, IntegrityError) as exc:
                problems = [str(exc)]
            if problems:
                self.progress(f"cache: snapshot {hit['snapshot'][:12]} of an earlier run is unusable "
                              f"({problems[0]}); ingesting again")
                hit = None
        if hit is not None and key and schema_key and snap_key:
            res.snapshot = snap.id
            self._cached("ingest", key, f"{snap.rows} rows, {cfg.data.source} unchanged since run {hit['_run']}",
                         {"snapshot": snap.id}, rows=snap.rows, nbytes=snap.bytes,
                         inputs={"source": cfg.data.source, "transforms": len(cfg.data.transforms)})
            schema_hit = self.cache.get(schema_key)
            if schema_hit is not None:
                features = list(schema_hit["features"])
                self._cached("schema", schema_key, f"{len(features)} features, target {cfg.data.target!r}",
                             {"features": features})
            else:
                with self._step("schema", schema_key, {"snapshot": snap.id, "target": cfg.data.target}) as step:
                    features = check_training_schema(snap.schema, cfg.data.target, cfg.data.features)
                    step.outputs = {"features": features}
                    step.detail = f"{len(features)} features, target {cfg.data.target!r}"
                self.cache.put(schema_key, "schema", self.run_id, {"features": features})
            self._cached("snapshot", snap_key, f"{snap.short}, {snap.rows} rows", {"snapshot": snap.id},
                         rows=snap.rows, nbytes=snap.bytes)
            return snap, features

        import pyarrow as pa
        import ray

        with self._step("ingest", key, {"source": cfg.data.source, "format": cfg.data.format,
                                        "transforms": [t.model_dump(exclude_none=True)
                                                       for t in cfg.data.transforms]}) as step:
            self._transforms = resolve(cfg.data.transforms)
            self._connect()
            ds = apply(open_source(cfg.data), self._transforms).materialize()
            step.rows = ds.count()
            step.bytes = ds.size_bytes()
            step.outputs = {"rows": step.rows, "columns": ds.columns()}
            done = f", {len(self._transforms)} transform(s)" if self._transforms else ""
            step.detail = f"{step.rows} rows from {cfg.data.source}{done}"

        with self._step("schema", schema_key, {"target": cfg.data.target, "features": cfg.data.features}) as step:
            sample = pa.concat_tables(ray.get(ds.limit(100_000).to_arrow_refs()))
            features = check_training_schema(infer_schema(sample), cfg.data.target, cfg.data.features)
            step.rows = sample.num_rows
            step.outputs = {"features": features}
            step.detail = f"{len(features)} features, target {cfg.data.target!r}"

        with self._step("snapshot", snap_key) as step:
            snap = create_snapshot(store, ds, cfg.data.source, reason=f"pipeline {cfg.name} run {self.run_id}")
            res.snapshot = snap.id
            step.status = "ran" if snap.new else "cached"
            step.rows, step.bytes = snap.rows, snap.bytes
            step.outputs = {"snapshot": snap.id, "new": snap.new}
            step.detail = f"{snap.short}, {snap.rows} rows, {'new' if snap.new else 'unchanged data, stored nothing'}"
        if key and schema_key and snap_key:
            outputs = {"snapshot": snap.id, "rows": snap.rows, "bytes": snap.bytes}
            self.cache.put(key, "ingest", self.run_id, outputs)
            self.cache.put(schema_key, "schema", self.run_id, {"features": features})
            self.cache.put(snap_key, "snapshot", self.run_id, outputs)
        return snap, features

    def _split(self, snap_id: str, features: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(X_train, y_train, X_holdout, y_holdout)`` of the snapshot, read once."""
        if self._arrays is None:
            from raymlops.data.schema import table_columns
            from raymlops.data.snapshot import read_snapshot
            from raymlops.data.split import holdout_mask

            cfg = self.config
            _, table = read_snapshot(self.store, snap_id)
            X = table_columns(table, features)
            y = table.column(cfg.data.target).to_numpy(zero_copy_only=False)
            holdout = holdout_mask(len(y), cfg.data.holdout_fraction, cfg.seed)
            if holdout.all() or not holdout.any():
                raise ValidationError(
                    f"data.holdout_fraction {cfg.data.holdout_fraction} leaves no train or holdout rows")
            self._arrays = (X[~holdout], y[~holdout], X[holdout], y[holdout])
        return self._arrays

    # -- train → evaluate → gate → register ----------------------------------------------------
    def _model_key(self, snap_id: str, features: list[str]) -> str:
        from raymlops.registry.lineage import package_versions

        cfg = self.config
        estimators = sorted({c.estimator for c in cfg.train.candidates})
        return fingerprint("model", {
            "snapshot": snap_id, "features": features, "data": cfg.data.model_dump(mode="json", exclude={"options"}),
            "seed": cfg.seed, "name": cfg.name,
            "train": cfg.train.model_dump(mode="json"), "gate": cfg.gate.model_dump(mode="json"),
            "code": self._code, "packages": package_versions(),
            "estimator_code": {e: module_fingerprint(e.rsplit(".", 1)[0]) for e in estimators},
            # a verdict relative to the champion is only reusable while the champion is the same
            "champion": self._champion_id() if cfg.gate.champion_rules() else None,
        })

    def _champion_id(self) -> str | None:
        from raymlops.registry.registry import CHAMPION, get_model

        try:
            return get_model(self.store, f"{self.config.name}@{CHAMPION}").id
        except NotFound:
            return None

    def _cached_model(self, key: str) -> Any | None:
        """The model version a cache entry points at, when it is still there, intact."""
        from raymlops.registry.registry import get_model

        hit = self.cache.get(key) if self.use_cache else None
        if hit is None:
            return None
        try:
            version = get_model(self.store, hit["model"])
            self.store.artifacts.verify(version.artifact_key, version.artifact_sha256)
        except (NotFound, IntegrityError) as exc:
            self.progress(f"cache: model {hit['model']} of an earlier run is unusable ({exc}); training again")
            return None
        return version, hit

    def _model_steps(self, snap: Any, features: list[str]) -> tuple[Any, bool]:
        res = self.result
        key = self._model_key(snap.id, features)
        found = self._cached_model(key)
        if found is not None:
            version, hit = found
            details = hit.get("details", {})
            res.model, res.metrics = version.id, dict(version.record.get("metrics", {}))
            gate = version.record.get("gate", {})
            res.gate, res.gate_reasons = gate.get("status"), list(gate.get("reasons", []))
            since = f"unchanged since run {hit['_run']}"
            self._cached("train", key, details.get("train", since), {"model": version.id},
                         inputs={"snapshot": snap.id})
            self._cached("evaluate", key, details.get("evaluate", since), {"metrics": res.metrics})
            self._cached("gate", key, details.get("gate", str(res.gate)), {"gate": res.gate,
                                                                          "reasons": res.gate_reasons})
            self._cached("register", key, f"{version.id} ({version.status}), reused", {"model": version.id})
            return version, res.gate == "passed"
        version, details = self._train_and_register(snap, features, key)
        self.cache.put(key, "register", self.run_id, {"model": version.id, "details": details})
        return version, res.gate == "passed"

    def _holdout_columns(self, snap_id: str, columns: list[str]) -> dict[str, np.ndarray]:
        """The holdout rows of each ``gate.slices`` column (a feature or any other column of the snapshot)."""
        if not columns:
            return {}
        from raymlops.data.snapshot import read_snapshot
        from raymlops.data.split import holdout_mask

        cfg = self.config
        _, table = read_snapshot(self.store, snap_id)
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            raise ValidationError(
                f"gate.slices: the data has no column {missing[0]!r} (columns: {', '.join(table.column_names)})")
        holdout = holdout_mask(table.num_rows, cfg.data.holdout_fraction, cfg.seed)
        return {c: table.column(c).to_numpy(zero_copy_only=False)[holdout] for c in columns}

    def _champion_metrics(self, Xho: np.ndarray, yho: np.ndarray, features: list[str]) -> dict[str, float] | None:
        """The champion's metrics on this run's holdout (as TFX's Evaluator compares on the same data),
        or its recorded metrics when its inputs differ; None without a champion."""
        from raymlops.registry.registry import CHAMPION, get_model, load_model
        from raymlops.train import evaluate_model

        try:
            champion = get_model(self.store, f"{self.config.name}@{CHAMPION}")
        except NotFound:
            return None
        if [f["name"] for f in champion.signature.get("inputs", [])] != features:
            return dict(champion.record.get("metrics", {}))
        return evaluate_model(load_model(self.store, champion), Xho, yho, self.config.train.task).metrics

    def _train_and_register(self, snap: Any, features: list[str], key: str) -> tuple[Any, dict[str, str]]:
        from raymlops.registry.lineage import package_versions
        from raymlops.registry.registry import register_model
        from raymlops.train import evaluate_model, fit, gate

        cfg, store, res = self.config, self.store, self.result
        details: dict[str, str] = {}
        with self._step("train", key, {"snapshot": snap.id, "candidates": len(cfg.train.candidates)}) as step:
            Xtr, ytr, Xho, yho = self._split(snap.id, features)
            self._connect()
            model, summary = fit(cfg.train, Xtr, ytr, seed=cfg.seed, storage_path=str(store.home / "tune"),
                                 name=f"{cfg.name}-{self.run_id}")
            best = summary.best.config
            stopped = sum(t.stopped_early for t in summary.trials)
            retried = sum(t.failures for t in summary.trials)
            step.rows, step.bytes = len(ytr), int(Xtr.nbytes + ytr.nbytes)
            step.outputs = {"trials": len(summary.trials), "best": best, "metric": summary.best.metric,
                            "strategy": summary.strategy, "stopped_early": stopped, "retried": retried}
            step.detail = details["train"] = (
                f"{len(summary.trials)} trials" + (f", {stopped} stopped early" if stopped else "")
                + (f", {retried} retried" if retried else "")
                + f", best {best['estimator'].rsplit('.', 1)[-1]} {best['params']}"
                f" {cfg.train.metric}={summary.best.metric:.4f}"
            )

        with self._step("evaluate", key, {"holdout_rows": len(yho), "slices": list(cfg.gate.slices)}) as step:
            evaluation = evaluate_model(
                model, Xho, yho, cfg.train.task, self._holdout_columns(snap.id, cfg.gate.slices),
                max_slices=cfg.gate.max_slices, min_slice_rows=cfg.gate.min_slice_rows,
            )
            metrics = evaluation.metrics
            res.metrics = metrics
            step.rows, step.bytes = len(yho), int(Xho.nbytes)
            step.outputs = {"metrics": metrics, "fairness_gap": evaluation.fairness_gap,
                            "slices": len(evaluation.slices)}
            shown = ("roc_auc", "accuracy", "f1") if cfg.train.task == "classification" else ("r2", "mae", "rmse")
            step.detail = details["evaluate"] = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k in shown)
            if evaluation.fairness_gap is not None:
                step.detail += (f", fairness gap {evaluation.fairness_gap:.4f} ({evaluation.fairness_measure},"
                                f" {len(evaluation.slices)} slices)")
                details["evaluate"] = step.detail

        with self._step("gate", key, {"rules": list(map(str, cfg.gate.rules))}) as step:
            champion = self._champion_metrics(Xho, yho, features) if cfg.gate.champion_rules() else None
            verdict = gate(cfg.gate, evaluation, champion)
            res.gate, res.gate_reasons = verdict.status, list(verdict.reasons)
            step.outputs = {"gate": verdict.status, "reasons": verdict.reasons}
            step.detail = details["gate"] = verdict.status + (
                "" if verdict.passed else ": " + "; ".join(verdict.reasons))

        with self._step("register", key) as step:
            lineage = {
                "code": self._code, "config_hash": cfg.config_hash(), "config": cfg.model_dump(mode="json"),
                "snapshot_id": snap.id, "seed": cfg.seed, "packages": package_versions(), "run_id": self.run_id,
            }
            signature = {
                "inputs": [{"name": n, "type": "double", "min": snap.schema.column(n).min,
                            "max": snap.schema.column(n).max} for n in features],
                "output": cfg.train.task,
                "target": cfg.data.target,
            }
            if cfg.train.task == "classification":
                signature["classes"] = np.unique(ytr).tolist()
            version = register_model(
                store, cfg.name, model, snapshot_id=snap.id, signature=signature, metrics=metrics,
                gate=verdict.to_dict() | {"evaluation": evaluation.to_dict()}, lineage=lineage,
                tune=summary.to_dict(), reason=f"pipeline {cfg.name} run {self.run_id}",
            )
            res.model = version.id
            info = store.artifacts.fs.get_file_info(store.artifacts.path(version.artifact_key))
            step.bytes = int(info.size or 0)
            step.outputs = {"model": version.id, "status": version.status, "artifact_sha256": version.artifact_sha256}
            step.detail = f"{version.id} ({version.status})"
        return version, details

    # -- deploy → smoke → monitor --------------------------------------------------------------
    def _serve_steps(self, snap: Any, features: list[str], version: Any) -> None:
        from raymlops.monitor.actor import monitor_name, start_monitor
        from raymlops.monitor.core import Reference
        from raymlops.pipeline.ray_env import NAMESPACE
        from raymlops.serve.deploy import deploy, http_json

        cfg, store, res = self.config, self.store, self.result
        route = cfg.route
        with self._step("deploy", inputs={"model": version.id, "route": route, "port": cfg.serve.port}) as step:
            Xtr, _, Xho, _ = self._split(snap.id, features)
            self._connect()
            reference = Reference.from_columns(
                {n: Xtr[:, j] for j, n in enumerate(features)}, n_bins=cfg.monitor.n_bins, seed=cfg.seed
            )
            if cfg.monitor.enabled:
                start_monitor(route, reference, cfg.monitor.model_dump() | {"seed": cfg.seed}, NAMESPACE,
                              detached=self._persistent)
            lineage = version.record.get("lineage", {})
            spec = {
                "model_id": version.id,
                "artifact_root": store.artifacts.root_uri,
                "artifact_key": version.artifact_key,
                "artifact_sha256": version.artifact_sha256,
                "signature": version.signature,
                "metrics": version.record.get("metrics", {}),
                "lineage_summary": {k: lineage.get(k) for k in ("code", "config_hash", "snapshot_id", "seed",
                                                                 "run_id")},
                "input_example": {n: float(Xho[0, j]) for j, n in enumerate(features)},
                "max_rows_per_request": cfg.serve.max_rows_per_request,
                "max_batch_size": cfg.serve.max_batch_size,
                "batch_wait_timeout_s": cfg.serve.batch_wait_timeout_s,
                "monitor_actor": monitor_name(route) if cfg.monitor.enabled else None,
                "namespace": NAMESPACE,
            }
            endpoint = deploy(spec, route, cfg.serve.host, cfg.serve.port, cfg.serve.num_replicas)
            res.endpoint = endpoint
            with store.metadata.transaction() as conn:
                audit.append(conn, "deployment.created", {"model": version.id, "deployment": route},
                             f"pipeline {cfg.name} run {self.run_id}",
                             {"config_hash": cfg.config_hash(), "endpoint": endpoint})
            step.outputs = {"deployment": route, "endpoint": endpoint, "model": version.id}
            step.detail = endpoint

        with self._step("smoke", inputs={"endpoint": endpoint}) as step:
            sent = sent_bytes = 0
            body: Any = {}
            for start in range(0, len(Xho), 16):
                rows = [{n: float(v) for n, v in zip(features, r, strict=True)} for r in Xho[start:start + 16]]
                payload = {"instances": rows}
                status, body = http_json("POST", f"{endpoint}/predict", payload)
                if status != 200 or len(body.get("predictions", [])) != len(rows):
                    raise ServeError(f"smoke request to {endpoint}/predict answered {status}: {body}")
                sent += len(rows)
                sent_bytes += len(json.dumps(payload))
            step.rows, step.bytes = sent, sent_bytes
            step.outputs = {"answered_by": body.get("model_version")}
            step.detail = f"{sent} holdout rows answered by {body.get('model_version')}"

        if not cfg.monitor.enabled:
            self._skip("monitor", "monitor.enabled is false")
            return
        with self._step("monitor", inputs={"actor": monitor_name(route)}) as step:
            import ray

            handle = ray.get_actor(monitor_name(route), namespace=NAMESPACE)
            deadline = time.monotonic() + 15
            seen: Any = ray.get(handle.rows.remote())
            while seen < sent and time.monotonic() < deadline:
                time.sleep(0.1)
                seen = ray.get(handle.rows.remote())
            drift: Any = ray.get(handle.summary.remote())
            res.drift = drift
            drifted = drift.get("drifted_features", [])
            step.rows = int(drift.get("rows", 0))
            step.outputs = {"rows": drift.get("rows"), "dataset_drift": bool(drift.get("dataset_drift")),
                            "drifted_features": drifted}
            step.detail = (
                f"{drift['rows']} rows seen, {len(drifted)} of {len(features)} features drifted,"
                f" dataset drift: {'yes' if drift.get('dataset_drift') else 'no'}"
            )


def run_pipeline(
    config: PipelineConfig | str,
    home: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
    keep_serving: bool | None = None,
    use_cache: bool = True,
) -> RunResult:
    """Run a pipeline from a config object or YAML path: the one call behind ``raymlops run``.

    ``keep_serving``: leave the deployment up after returning (default: only when connected to
    an existing cluster through ``RAY_ADDRESS``). Call :func:`stop_serving` to take it down.
    ``use_cache``: reuse steps whose inputs did not change since a successful run (ingest →
    snapshot, train → register); False runs every step (and refreshes the cache).

    On failure the run is recorded (``raymlops runs show RUN``) and the exception raised carries
    ``run_id`` and ``failure`` (:class:`raymlops.pipeline.failures.Failure`): raymlops' own
    errors keep their class (a ConfigError stays one), anything else is a :class:`StepFailed`.
    """
    from raymlops.config import load_config

    cfg = load_config(config) if isinstance(config, str) else config
    pipeline = Pipeline(cfg, Store.open(home), progress=progress, keep_serving=keep_serving, use_cache=use_cache)
    try:
        result = pipeline.run()
    except BaseException:
        if not pipeline.keep_serving:
            stop_serving(cfg)
        raise
    if not pipeline.keep_serving:
        stop_serving(cfg)
    return result


def stop_serving(config: PipelineConfig) -> None:
    """Take the pipeline's deployment and monitor down (no-op when Ray or Serve is not running)."""
    import ray

    if not ray.is_initialized():
        return
    from raymlops.monitor.actor import stop_monitor
    from raymlops.pipeline.ray_env import NAMESPACE
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
