"""The pipeline runner: ingest → schema → snapshot → tune → evaluate → gate → register → deploy
→ smoke → monitor, each step timed, reported and recorded."""

from __future__ import annotations

import json
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raymlops import audit
from raymlops.config import PipelineConfig
from raymlops.exceptions import RaymlopsError, ServeError, StepFailed, ValidationError
from raymlops.store.home import Store

STEPS = ("ingest", "schema", "snapshot", "train", "evaluate", "gate", "register", "deploy", "smoke", "monitor")


@dataclass
class StepResult:
    name: str
    status: str  # ran | cached | skipped | failed
    seconds: float
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "seconds": round(self.seconds, 3), "detail": self.detail}


@dataclass
class RunResult:
    run_id: str
    pipeline: str
    snapshot: str | None = None
    model: str | None = None
    gate: str | None = None
    endpoint: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    drift: dict[str, Any] | None = None
    steps: list[StepResult] = field(default_factory=list)
    seconds: float = 0.0
    status: str = "running"

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run_id, "pipeline": self.pipeline, "status": self.status,
            "snapshot": self.snapshot, "model": self.model, "gate": self.gate, "endpoint": self.endpoint,
            "metrics": self.metrics, "drift": self.drift, "seconds": round(self.seconds, 3),
            "steps": [s.to_dict() for s in self.steps],
        }


def unwrap(exc: BaseException) -> BaseException:
    """The user's exception inside Ray's wrappers (RayTaskError → its cause)."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            exc = cause
            continue
        break
    return exc


class Pipeline:
    """Runs one :class:`PipelineConfig` against a :class:`Store` on the connected Ray."""

    def __init__(
        self,
        config: PipelineConfig,
        store: Store,
        progress: Callable[[str], None] | None = None,
        keep_serving: bool | None = None,
    ) -> None:
        self.config = config
        self.store = store
        self.progress = progress or (lambda line: print(line, file=sys.stderr, flush=True))
        self.keep_serving = keep_serving
        self.run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.result = RunResult(run_id=self.run_id, pipeline=config.name)
        self._i = 0

    # -- step bookkeeping ------------------------------------------------------------------
    @contextmanager
    def _step(self, name: str) -> Iterator[StepResult]:
        self._i += 1
        step = StepResult(name, "ran", 0.0)
        self.progress(f"[{self._i}/{len(STEPS)}] {name} ...")
        t0 = time.perf_counter()
        try:
            yield step
        except BaseException as exc:
            step.seconds = time.perf_counter() - t0
            step.status = "failed"
            user = unwrap(exc)
            step.detail = f"{type(user).__name__}: {user}"
            self.result.steps.append(step)
            self.progress(f"[{self._i}/{len(STEPS)}] {name} failed after {step.seconds:.1f}s: {step.detail}")
            if isinstance(exc, KeyboardInterrupt):
                raise
            if isinstance(user, RaymlopsError) and not isinstance(user, StepFailed):
                raise user from None
            if isinstance(user, StepFailed):
                raise user from None
            raise StepFailed(name, f"{type(user).__name__}: {user}") from user
        step.seconds = time.perf_counter() - t0
        self.result.steps.append(step)
        suffix = f" ({step.detail})" if step.detail else ""
        self.progress(f"[{self._i}/{len(STEPS)}] {name} {step.status} in {step.seconds:.1f}s{suffix}")

    def _skip(self, name: str, why: str) -> None:
        self._i += 1
        self.result.steps.append(StepResult(name, "skipped", 0.0, why))
        self.progress(f"[{self._i}/{len(STEPS)}] {name} skipped ({why})")

    def _record_run(self, status: str, error: str | None = None) -> None:
        record = self.result.to_dict() | {"config": self.config.model_dump(mode="json"), "error": error}
        with self.store.metadata.transaction() as conn:
            conn.execute(
                "INSERT INTO runs(id, pipeline, started_at, ended_at, status, config_hash, record_json)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET ended_at = excluded.ended_at,"
                " status = excluded.status, record_json = excluded.record_json",
                (self.run_id, self.config.name, self._t0, None if status == "running" else time.time(), status,
                 self.config.config_hash(), json.dumps(record, default=str)),
            )

    # -- the pipeline ------------------------------------------------------------------------
    def run(self) -> RunResult:
        from raymlops.pipeline.ray_env import ensure_ray

        self._t0 = time.time()
        self._record_run("running")
        try:
            persistent = ensure_ray()
            if self.keep_serving is None:
                self.keep_serving = persistent
            self._persistent = persistent
            self._run_steps()
        except BaseException as exc:
            self.result.status = "failed"
            self.result.seconds = time.time() - self._t0
            tb = "".join(traceback.format_exception(unwrap(exc)))
            self._record_run("failed", tb)
            raise
        self.result.status = "succeeded"
        self.result.seconds = time.time() - self._t0
        self._record_run("succeeded")
        return self.result

    def _run_steps(self) -> None:
        from raymlops.data.schema import check_training_schema, infer_schema, table_columns
        from raymlops.data.snapshot import create_snapshot, read_snapshot
        from raymlops.data.sources import read_source
        from raymlops.data.split import holdout_mask
        from raymlops.registry.lineage import code_version, package_versions
        from raymlops.registry.registry import register_model
        from raymlops.train.evaluate import classification_metrics
        from raymlops.train.gate import evaluate_gate
        from raymlops.train.search import build_estimator, expand
        from raymlops.train.tune_runner import run_search

        cfg, store, res = self.config, self.store, self.result

        with self._step("ingest") as step:
            ds = read_source(cfg.data.source, cfg.data.format).materialize()
            step.detail = f"{ds.count()} rows from {cfg.data.source}"

        with self._step("schema") as step:
            import pyarrow as pa
            import ray

            sample = pa.concat_tables(ray.get(ds.limit(100_000).to_arrow_refs()))
            schema = infer_schema(sample)
            features = check_training_schema(schema, cfg.data.target, cfg.data.features)
            step.detail = f"{len(features)} features, target {cfg.data.target!r}"

        with self._step("snapshot") as step:
            snap = create_snapshot(store, ds, cfg.data.source, reason=f"pipeline {cfg.name} run {self.run_id}")
            res.snapshot = snap.id
            step.status = "ran" if snap.new else "cached"
            step.detail = f"{snap.short}, {snap.rows} rows, {'new' if snap.new else 'unchanged data, stored nothing'}"

        _, table = read_snapshot(store, snap.id)
        X = table_columns(table, features)
        y = table.column(cfg.data.target).to_numpy(zero_copy_only=False)
        holdout = holdout_mask(len(y), cfg.data.holdout_fraction, cfg.seed)
        if holdout.all() or not holdout.any():
            raise ValidationError(f"data.holdout_fraction {cfg.data.holdout_fraction} leaves no train or holdout rows")
        Xtr, ytr, Xho, yho = X[~holdout], y[~holdout], X[holdout], y[holdout]

        with self._step("train") as step:
            trials = expand(cfg.train.candidates)
            summary = run_search(
                trials, Xtr, ytr, metric=cfg.train.metric, mode=cfg.train.mode, seed=cfg.seed,
                validation_fraction=cfg.train.validation_fraction,
                max_concurrent=cfg.train.max_concurrent_trials, cpus_per_trial=cfg.train.cpus_per_trial,
                storage_path=str(store.home / "tune"), name=f"{cfg.name}-{self.run_id}",
            )
            best = summary.best.config
            model = build_estimator(best, cfg.seed).fit(Xtr, ytr)
            step.detail = (
                f"{len(summary.trials)} trials, best {best['estimator'].rsplit('.', 1)[-1]} {best['params']}"
                f" {cfg.train.metric}={summary.best.metric:.4f}"
            )

        with self._step("evaluate") as step:
            metrics = classification_metrics(model, Xho, yho)
            res.metrics = metrics
            step.detail = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k in ("roc_auc", "accuracy", "f1"))

        with self._step("gate") as step:
            verdict = evaluate_gate(cfg.gate.parsed(), metrics)
            res.gate = verdict.status
            step.detail = verdict.status + ("" if verdict.passed else ": " + "; ".join(verdict.reasons))

        with self._step("register") as step:
            lineage = {
                "code": code_version(),
                "config_hash": cfg.config_hash(),
                "snapshot_id": snap.id,
                "seed": cfg.seed,
                "packages": package_versions(),
                "run_id": self.run_id,
            }
            signature = {
                "inputs": [{"name": n, "type": "double", "min": schema.column(n).min, "max": schema.column(n).max}
                           for n in features],
                "output": "classification",
                "target": cfg.data.target,
                "classes": np.unique(ytr).tolist(),
            }
            version = register_model(
                store, cfg.name, model, snapshot_id=snap.id, signature=signature, metrics=metrics,
                gate=verdict.to_dict(), lineage=lineage, tune=summary.to_dict(),
                reason=f"pipeline {cfg.name} run {self.run_id}",
            )
            res.model = version.id
            step.detail = f"{version.id} ({version.status})"

        if not verdict.passed:
            for name in ("deploy", "smoke", "monitor"):
                self._skip(name, "gate rejected the model")
            return
        if not cfg.serve.enabled:
            for name in ("deploy", "smoke", "monitor"):
                self._skip(name, "serve.enabled is false")
            return

        from raymlops.monitor.actor import monitor_name, start_monitor
        from raymlops.monitor.core import Reference
        from raymlops.pipeline.ray_env import NAMESPACE
        from raymlops.serve.deploy import deploy, http_json

        with self._step("deploy") as step:
            route = cfg.route
            reference = Reference.from_columns(
                {n: Xtr[:, j] for j, n in enumerate(features)}, n_bins=cfg.monitor.n_bins, seed=cfg.seed
            )
            if cfg.monitor.enabled:
                start_monitor(route, reference, cfg.monitor.model_dump() | {"seed": cfg.seed}, NAMESPACE,
                              detached=self._persistent)
            spec = {
                "model_id": version.id,
                "artifact_root": store.artifacts.root_uri,
                "artifact_key": version.artifact_key,
                "artifact_sha256": version.artifact_sha256,
                "signature": signature,
                "metrics": metrics,
                "lineage_summary": {k: lineage[k] for k in ("code", "config_hash", "snapshot_id", "seed", "run_id")},
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
            step.detail = endpoint

        with self._step("smoke") as step:
            sent = 0
            for start in range(0, len(Xho), 16):
                rows = [{n: float(v) for n, v in zip(features, r, strict=True)} for r in Xho[start:start + 16]]
                status, body = http_json("POST", f"{endpoint}/predict", {"instances": rows})
                if status != 200 or len(body.get("predictions", [])) != len(rows):
                    raise ServeError(f"smoke request to {endpoint}/predict answered {status}: {body}")
                sent += len(rows)
            step.detail = f"{sent} holdout rows answered by {body['model_version']}"

        if not cfg.monitor.enabled:
            self._skip("monitor", "monitor.enabled is false")
            return
        with self._step("monitor") as step:
            import ray

            handle = ray.get_actor(monitor_name(route), namespace=NAMESPACE)
            deadline = time.monotonic() + 15
            seen: Any = ray.get(handle.rows.remote())
            while seen < sent and time.monotonic() < deadline:
                time.sleep(0.1)
                seen = ray.get(handle.rows.remote())
            drift: Any = ray.get(handle.summary.remote())
            res.drift = drift
            drifted = res.drift.get("drifted_features", [])
            step.detail = (
                f"{res.drift['rows']} rows seen, {len(drifted)} of {len(features)} features drifted,"
                f" dataset drift: {'yes' if res.drift.get('dataset_drift') else 'no'}"
            )


def run_pipeline(
    config: PipelineConfig | str,
    home: str | None = None,
    progress: Callable[[str], None] | None = None,
    keep_serving: bool | None = None,
) -> RunResult:
    """Run a pipeline from a config object or YAML path: the one call behind ``raymlops run``.

    ``keep_serving``: leave the deployment up after returning (default: only when connected to
    an existing cluster through ``RAY_ADDRESS``). Call :func:`stop_serving` to take it down.
    """
    from raymlops.config import load_config

    cfg = load_config(config) if isinstance(config, str) else config
    pipeline = Pipeline(cfg, Store.open(home), progress=progress, keep_serving=keep_serving)
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

    undeploy(config.route, shutdown=True)
    stop_monitor(config.route, NAMESPACE)
