"""train → evaluate → gate → register: the model half of a run.

``train`` runs the Ray Tune search (:func:`raymlops.train.fit`) on the snapshot's training
rows; ``evaluate`` scores the best model on the holdout (overall and per ``gate.slices``);
``gate`` applies ``gate.rules`` (absolute, relative to the champion on the same holdout,
per slice, fairness); ``register`` records the version with its lineage. The four are one cache
entry (:class:`ModelCache`): the same snapshot, config, code and packages give the same model.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from raymlops import audit
from raymlops.data.schema import feature_categories
from raymlops.data.snapshot import snapshot_info
from raymlops.data.transforms import module_fingerprint
from raymlops.exceptions import ConfigError, IntegrityError, NotFound, ValidationError
from raymlops.pipeline.cache import fingerprint
from raymlops.pipeline.context import RunContext
from raymlops.pipeline.failures import Failure, describe, unwrap
from raymlops.pipeline.step import CacheGroup, Restored, Step
from raymlops.pipeline.why import input_parts, what_changed
from raymlops.registry.lineage import PACKAGES, package_versions
from raymlops.registry.registry import CHAMPION, get_model, load_model, register_model
from raymlops.tracking.mlflow_tracking import MlflowTracker  # only with tracking: (an optional extra)

__all__ = ["EvaluateIn", "EvaluateOut", "EvaluateStep", "GateIn", "GateOut", "GateStep", "ModelCache", "ModelOut",
           "RegisterIn", "RegisterStep", "TrainIn", "TrainOut", "TrainStep", "model_key"]


@dataclass(frozen=True)
class TrainIn:
    snapshot_id: str
    features: list[str]


@dataclass(frozen=True)
class TrainOut:
    snapshot_id: str
    features: list[str]
    model: Any  # the fitted best estimator (None when the model steps came from the cache)
    summary: Any = None  # raymlops.train.TuneSummary
    classes: Any = None
    holdout: tuple[np.ndarray, np.ndarray] | None = None  # (X_holdout, y_holdout)
    holdout_columns: dict[str, np.ndarray] | None = None  # the gate.slices columns, when Ray Train read the data
    tracker: Any = None  # tracking: the MLflow parent run


@dataclass(frozen=True)
class EvaluateIn:
    train: TrainOut


@dataclass(frozen=True)
class EvaluateOut:
    evaluation: Any  # raymlops.train.Evaluation (None from the cache)
    metrics: dict[str, float]
    calibration: Any = None


@dataclass(frozen=True)
class GateIn:
    train: TrainOut
    evaluate: EvaluateOut


@dataclass(frozen=True)
class GateOut:
    verdict: Any  # raymlops.train.GateVerdict (None from the cache)
    passed: bool


@dataclass(frozen=True)
class RegisterIn:
    train: TrainOut
    evaluate: EvaluateOut
    gate: GateOut


@dataclass(frozen=True)
class ModelOut:
    version: Any  # raymlops.registry.ModelVersion
    passed: bool
    metrics: dict[str, float]


def model_key(ctx: RunContext, snapshot_id: str, features: list[str]) -> str:
    """The model cache's key: what the model is made of, and, under a gate rule relative to the
    champion, which champion it was judged against. When the champion is made of these same inputs
    (the last unchanged run's model), the key is the one it was made under: an unchanged re-run
    reuses it (each re-run registered a new identical version, judged against its own copy)."""
    parts = _inputs(ctx, snapshot_id, features)
    champion = _champion(ctx) if ctx.config.gate.champion_rules() else None
    if champion is not None and champion.lineage.get("model_key") and \
            champion.lineage.get("inputs_key") == fingerprint("model-inputs", parts):
        return str(champion.lineage["model_key"])
    # a verdict relative to the champion is only reusable while the champion is the same
    return fingerprint("model", parts | {"champion": None if champion is None else champion.id})


def _inputs(ctx: RunContext, snapshot_id: str, features: list[str]) -> dict[str, Any]:
    cfg = ctx.config
    estimators = sorted({c.estimator for c in cfg.train.candidates})
    return {
        # where the rows came from (source, format, options) is not an input: the snapshot id is the
        # rows; the same rows moved, or exported as Parquet instead of CSV, reuse the model
        "snapshot": snapshot_id, "features": features, "data": cfg.data.model_dump(
            mode="json", exclude={"source", "format", "options", "features", "reference", "drift_gate", "drift"}),
        "seed": cfg.seed, "name": cfg.name,
        "train": cfg.train.model_dump(mode="json"), "gate": cfg.gate.model_dump(mode="json"),
        "code": ctx.code,
        "packages": package_versions((*PACKAGES, *([cfg.train.framework] if cfg.train.framework else []))),
        "estimator_code": {e: module_fingerprint(e.rsplit(".", 1)[0]) for e in estimators},
    }


def _champion(ctx: RunContext) -> Any:

    try:
        return get_model(ctx.store, f"{ctx.config.name}@{CHAMPION}")
    except NotFound:
        return None


def _estimator_name(trial: Any) -> str:
    return str(trial.config.get("estimator", "?")).rsplit(".", 1)[-1]


def _last_line(error: str | None) -> str:
    """A trial's error as one line: the exception's own line (a traceback ends with it)."""
    lines = [line.strip() for line in (error or "").splitlines() if line.strip()]
    exc = [line for line in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception)\b", line)]
    return (exc[-1] if exc else lines[-1] if lines else "no metric reported")[:300]


def _holdout(ctx: RunContext, train: TrainOut) -> tuple[np.ndarray, np.ndarray]:
    return train.holdout if train.holdout is not None else ctx.rows(train.snapshot_id).split(train.features)[2:]


class TrainStep(Step[TrainIn, TrainOut]):
    """The Ray Tune search (or Ray Train, ``strategy: distributed``) on the snapshot's training rows."""

    name = "train"
    needs_ray = True
    requires = ("snapshot", "schema")

    def take(self, ctx: RunContext, outputs: Mapping[str, Any]) -> TrainIn:
        return TrainIn(outputs["snapshot"].snapshot.id, list(outputs["schema"].features))

    def cache_key(self, ctx: RunContext, inputs: TrainIn) -> str | None:
        return model_key(ctx, inputs.snapshot_id, inputs.features)

    def describe_inputs(self, ctx: RunContext, inputs: TrainIn) -> dict[str, Any]:
        return {"snapshot": inputs.snapshot_id, "candidates": len(ctx.config.train.candidates)}

    def run(self, ctx: RunContext, inputs: TrainIn) -> TrainOut:
        # scikit-learn + scipy.stats (~1 s): only when the step runs (`raymlops runs` imports this package)
        from raymlops.train import fit

        cfg, step, snap_id, features = ctx.config, ctx.step, inputs.snapshot_id, inputs.features
        if (why := what_changed(ctx.store, cfg.name, _inputs(ctx, snap_id, features))) is not None:
            ctx.say(f"train: a new model, {why}")
        holdout_columns: dict[str, np.ndarray] | None = None
        # string features are categories (one-hot encoded by every trial's pipeline); at most
        # STRING_DOMAIN_MAX values each, checked here before any trial starts
        categories = feature_categories(snapshot_info(ctx.store, snap_id).schema, features)
        if cfg.train.strategy == "distributed":  # Ray Train reads the snapshot: no training rows here
            # scikit-learn + scipy.stats (~1 s): only when the step runs (`raymlops runs` imports this package)
            from raymlops.train.boost_data import SnapshotSource, holdout_rows

            # scikit-learn + scipy.stats (~1 s): only when the step runs (`raymlops runs` imports this package)
            from raymlops.train.boost_model import short_training
            from raymlops.train.distributed import fit_distributed

            tracker = _tracker(ctx)
            ctx.connect()
            _check_cpus(ctx, cfg.train)
            source = SnapshotSource(ctx.store, snap_id, tuple(features), cfg.data.target, cfg.data.holdout_fraction,
                                    cfg.seed, cfg.data.split_key)
            model, summary = fit_distributed(cfg.train, source, seed=cfg.seed,
                                             storage_path=str(ctx.store.home / "tune"),
                                             name=f"{cfg.name}-{ctx.run_id}", progress=ctx.ray_progress)
            Xho, yho, holdout_columns = holdout_rows(source, tuple(cfg.gate.slices))
            classes = getattr(model, "classes_", None)
            rows, nbytes = int(model.info_["train_rows"]), 0
            if (short := short_training(model.info_, rows)) is not None:
                ctx.say(f"warning: train: {short}")
        else:
            Xtr, ytr, Xho, yho = ctx.rows(snap_id).split(features)
            ctx.connect()
            _check_cpus(ctx, cfg.train)
            tracker = _tracker(ctx)
            model, summary = fit(cfg.train, Xtr, ytr, seed=cfg.seed, storage_path=str(ctx.store.home / "tune"),
                                 name=f"{cfg.name}-{ctx.run_id}", progress=ctx.ray_progress,
                                 callbacks=tracker.tune_callbacks() if tracker else None,
                                 categorical=[j for j, n in enumerate(features) if n in categories])
            classes, rows, nbytes = np.unique(ytr), len(ytr), int(Xtr.nbytes + ytr.nbytes)
        best = summary.best.config
        stopped = sum(t.stopped_early for t in summary.trials)
        # trials that failed for good (the best of the others won): each candidate's first error, said
        # aloud, so a candidate that cannot train on this data is not dropped silently
        failed = [t for t in summary.trials if t.metric is None or t.metric != t.metric]
        retried = sum(max(0, t.failures - (t in failed)) for t in summary.trials)  # a last failure is no retry
        errors: dict[str, str] = {}
        said: dict[str, str] = {}  # the warning: how many of that candidate's trials, and the first's params
        trials_of, failed_of = Counter(map(_estimator_name, summary.trials)), Counter(map(_estimator_name, failed))
        for t in failed:
            name = _estimator_name(t)
            if name not in errors:
                errors[name] = _last_line(t.error)
                of, count = trials_of[name], failed_of[name]
                which = "" if count == of else f" (the first with params {t.config.get('params', {})})"
                said[name] = f"{'the' if count == of else f'{count} of the {of}'} {name} trials failed{which}"
        step.rows, step.bytes = rows, nbytes
        step.outputs = {"trials": len(summary.trials), "best": best, "metric": summary.best.metric,
                        "strategy": summary.strategy, "stopped_early": stopped, "retried": retried,
                        "failed": len(failed), "errors": errors} | ({"why": why} if why else {})
        for name, error in errors.items():
            ctx.say(f"warning: train: {said[name]}: {error}")
        step.detail = (
            f"{len(summary.trials)} trials" + (f", {stopped} stopped early" if stopped else "")
            + (f", {len(failed)} failed" if failed else "") + (f", {retried} retried" if retried else "")
            + f", best {best['estimator'].rsplit('.', 1)[-1]} {best['params']}"
            f" {cfg.train.metric}={summary.best.metric:.4f}"
        )
        with ctx.store.metadata.transaction() as conn:  # the training run, for the audit trail
            audit.append(conn, "model.trained", {"snapshot": snap_id, "run": ctx.run_id}, ctx.reason,
                         {"config_hash": cfg.config_hash(), "code": ctx.code, "strategy": summary.strategy,
                          "trials": len(summary.trials), "retried": retried, "best": best,
                          cfg.train.metric: summary.best.metric})
        return TrainOut(snap_id, features, model, summary, classes, (Xho, yho), holdout_columns, tracker)

    def explain(self, ctx: RunContext, exc: BaseException, failure: Failure) -> Failure:
        """A trial's traceback from Tune's ``error.txt`` when the exception lost it."""
        if not failure.remote:
            root = ctx.store.home / "tune" / f"{ctx.config.name}-{ctx.run_id}"
            texts = [p.read_text(errors="replace") for p in sorted(root.glob("*/error.txt"))[:4]]
            failure = describe(exc, self.name, extra_texts=texts)
        if failure.remote:
            every = "every trial failed" in str(unwrap(exc))
            failure.context = "every Tune trial failed; the first" if every else "a Tune trial failed"
        return failure


def _tracker(ctx: RunContext) -> Any:
    """``tracking:``: the MLflow parent run of this pipeline run (None when tracking is off). An
    unreachable server is a warning in the step's log and in the run record, never a failure."""
    if ctx.config.tracking is None:
        return None

    tracker = MlflowTracker(ctx.config.tracking, ctx.config.name, ctx.run_id, warn=ctx.say)
    tracker.start()
    ctx.result.tracking = tracker.record
    return tracker


def _check_cpus(ctx: RunContext, train: Any) -> None:
    """A trial (or Ray Train worker) that asks for more CPUs than any node of the Ray has would wait
    forever, silently: on a private local Ray that is a ConfigError naming the key; on a cluster
    (``RAY_ADDRESS``), whose autoscaler may add such a node, a warning. (Ray Train workers wanting
    more CPUs than the whole Ray has: ``raymlops.train.distributed``'s own check refuses them.)"""
    import ray

    largest = max((float(n["Resources"].get("CPU", 0.0)) for n in ray.nodes() if n.get("Alive")), default=0.0)
    distributed = train.strategy == "distributed"
    need = train.cpus_per_worker if distributed else train.cpus_per_trial
    if need > largest:
        key = "train.cpus_per_worker" if distributed else "train.cpus_per_trial"
        problem = f"{key}: {need:g} CPUs each, but the largest node of this Ray has {largest:g}"
        if not ctx.persistent:
            raise ConfigError(f"{problem}: nothing could ever run them on this private local Ray")
        ctx.say(f"warning: {problem}; the run waits until the cluster's autoscaler adds such a node")


class EvaluateStep(Step[EvaluateIn, EvaluateOut]):
    """Score the model on the holdout, overall and per ``gate.slices``."""

    name = "evaluate"
    requires = ("train",)

    def take(self, ctx: RunContext, outputs: Mapping[str, Any]) -> EvaluateIn:
        return EvaluateIn(outputs["train"])

    def describe_inputs(self, ctx: RunContext, inputs: EvaluateIn) -> dict[str, Any]:
        return {"holdout_rows": len(_holdout(ctx, inputs.train)[1]), "slices": list(ctx.config.gate.slices)}

    def run(self, ctx: RunContext, inputs: EvaluateIn) -> EvaluateOut:
        # scikit-learn + scipy.stats (~1 s): only when the step runs (`raymlops runs` imports this package)
        from raymlops.train import evaluate_model

        # scikit-learn + scipy.stats (~1 s): only when the step runs (`raymlops runs` imports this package)
        from raymlops.train.evaluate import calibration_of, positive_index

        cfg, step, train = ctx.config, ctx.step, inputs.train
        Xho, yho = _holdout(ctx, train)
        columns = (ctx.rows(train.snapshot_id).holdout_columns(cfg.gate.slices) if train.holdout_columns is None
                   else _slice_columns(train.holdout_columns, cfg.gate.slices))
        evaluation = evaluate_model(train.model, Xho, yho, cfg.train.task, columns, max_slices=cfg.gate.max_slices,
                                    min_slice_rows=cfg.gate.min_slice_rows, positive=cfg.train.positive_label)
        metrics = evaluation.metrics
        ctx.result.metrics = metrics
        # the probabilities' holdout calibration: the monitor estimates accuracy before labels (CBPE)
        calibration = calibration_of(train.model, Xho, yho) if cfg.train.task == "classification" else None
        step.rows, step.bytes = len(yho), int(Xho.nbytes)
        step.outputs = {"metrics": metrics, "fairness_gap": evaluation.fairness_gap, "slices": len(evaluation.slices)}
        shown = ("roc_auc", "accuracy", "f1") if cfg.train.task == "classification" else ("r2", "mae", "rmse")
        step.detail = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if k in shown)
        classes = getattr(train.model, "classes_", None)
        if cfg.train.task == "classification" and classes is not None and len(classes) == 2:
            positive = classes[positive_index(np.asarray(classes), cfg.train.positive_label)]
            if not isinstance(positive, (bool, np.bool_)) and positive not in (1, 1.0):  # say which it is when not 1
                step.detail += f"; positive class {positive.item() if hasattr(positive, 'item') else positive!r}"
        if evaluation.fairness_gap is not None:
            step.detail += (f", fairness gap {evaluation.fairness_gap:.4f} ({evaluation.fairness_measure},"
                            f" {len(evaluation.slices)} slices)")
        return EvaluateOut(evaluation, metrics, calibration)


def _slice_columns(columns: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    missing = [c for c in names if c not in columns]
    if missing:
        raise ValidationError(f"gate.slices: the data has no column {missing[0]!r}")
    return {c: columns[c] for c in names}


class GateStep(Step[GateIn, GateOut]):
    """``gate.rules``: thresholds, the champion on the same holdout, slices, fairness."""

    name = "gate"
    requires = ("train", "evaluate")

    def take(self, ctx: RunContext, outputs: Mapping[str, Any]) -> GateIn:
        return GateIn(outputs["train"], outputs["evaluate"])

    def describe_inputs(self, ctx: RunContext, inputs: GateIn) -> dict[str, Any]:
        return {"rules": list(map(str, ctx.config.gate.rules))}

    def run(self, ctx: RunContext, inputs: GateIn) -> GateOut:
        # scikit-learn + scipy.stats (~1 s): only when the step runs (`raymlops runs` imports this package)
        from raymlops.train import gate

        cfg, step = ctx.config, ctx.step
        champion = self._champion_metrics(ctx, inputs.train) if cfg.gate.champion_rules() else None
        verdict = gate(cfg.gate, inputs.evaluate.evaluation, champion)
        ctx.result.gate, ctx.result.gate_reasons = verdict.status, list(verdict.reasons)
        step.outputs = {"gate": verdict.status, "reasons": verdict.reasons}
        step.detail = verdict.status + ("" if verdict.passed else ": " + "; ".join(verdict.reasons))
        return GateOut(verdict, verdict.passed)

    @staticmethod
    def _champion_metrics(ctx: RunContext, train: TrainOut) -> dict[str, float] | None:
        """The champion's metrics on this run's holdout (as TFX's Evaluator compares on the same data),
        or its recorded metrics when its inputs differ; None without a champion."""
        # scikit-learn + scipy.stats (~1 s): only when the step runs (`raymlops runs` imports this package)
        from raymlops.train import evaluate_model

        champion = _champion(ctx)
        if champion is None:
            return None
        if champion.features != train.features:
            return champion.metrics
        Xho, yho = _holdout(ctx, train)
        return evaluate_model(load_model(ctx.store, champion), Xho, yho, ctx.config.train.task,
                              positive=ctx.config.train.positive_label).metrics


class RegisterStep(Step[RegisterIn, ModelOut]):
    """Record the model version with its lineage, signature, metrics and gate verdict."""

    name = "register"
    requires = ("train", "evaluate", "gate")

    def take(self, ctx: RunContext, outputs: Mapping[str, Any]) -> RegisterIn:
        return RegisterIn(outputs["train"], outputs["evaluate"], outputs["gate"])

    def run(self, ctx: RunContext, inputs: RegisterIn) -> ModelOut:
        cfg, step, store, train = ctx.config, ctx.step, ctx.store, inputs.train
        snap = snapshot_info(store, train.snapshot_id)
        model, features, metrics, verdict = train.model, train.features, inputs.evaluate.metrics, inputs.gate.verdict
        parts = _inputs(ctx, snap.id, list(features))  # once: it hashes the estimators' source files
        lineage: dict[str, Any] = {
            "code": ctx.code, "config_hash": cfg.config_hash(), "config": cfg.model_dump(mode="json"),
            "snapshot_id": snap.id, "seed": cfg.seed, "packages": package_versions(), "run_id": ctx.run_id,
            "inputs_key": fingerprint("model-inputs", parts),
            # the estimators' code (the user's module: every file of its package or folder), for `reproduce`;
            # a hash per input part, so that a later run that trains again can say what changed
            "estimator_code": parts["estimator_code"], "inputs_parts": input_parts(parts),
            # the key the run cached it under (the champion is still the one it was judged against)
            "model_key": step.cache_key or model_key(ctx, snap.id, list(features)),
        }
        if cfg.train.framework is not None:  # the engine's version, workers and rounds
            lineage["packages"] = package_versions((*PACKAGES, cfg.train.framework))
            lineage["training"] = dict(getattr(model, "info_", {}))
        if inputs.evaluate.calibration is not None:
            lineage["calibration"] = inputs.evaluate.calibration
        categories = feature_categories(snap.schema, features)
        signature: dict[str, Any] = {
            "inputs": [{"name": n, "type": "string", "categories": categories[n],
                        "nullable": snap.schema.column(n).nullable} if n in categories else
                       {"name": n, "type": "boolean" if snap.schema.column(n).type == "bool" else "double",
                        "min": snap.schema.column(n).min,
                        "max": snap.schema.column(n).max, "nullable": snap.schema.column(n).nullable}
                       for n in features],
            "output": cfg.train.task,
            "target": cfg.data.target,
        }
        if cfg.train.task == "classification":
            signature["classes"] = np.asarray(train.classes).tolist()
        version = register_model(
            store, cfg.name, model, snapshot_id=snap.id, signature=signature, metrics=metrics,
            gate=verdict.to_dict() | {"evaluation": inputs.evaluate.evaluation.to_dict()}, lineage=lineage,
            tune=train.summary.to_dict(), reason=ctx.reason, alias=ctx.alias,
        )
        ctx.result.model = version.id
        info = store.artifacts.fs.get_file_info(store.artifacts.path(version.artifact_key))
        step.bytes = int(info.size or 0)
        step.outputs = {"model": version.id, "status": version.status, "artifact_sha256": version.artifact_sha256}
        step.detail = f"{version.id} ({version.status})"
        tracker = train.tracker
        if tracker is not None:  # tracking: the parent run, and the champion in MLflow's registry
            is_champion = version.status == "registered" and ctx.alias == "champion"
            tracker.finish(snapshot_id=snap.id, model_version=version.id, model_status=version.status,
                           champion=is_champion, metrics=metrics, best=train.summary.best.config,
                           config_hash=cfg.config_hash(),
                           artifact=("model.joblib", store.artifacts.read_bytes(version.artifact_key))
                           if is_champion and tracker.cfg.register_model else None)
            step.outputs["tracking"] = ctx.result.tracking = tracker.record
        return ModelOut(version, inputs.gate.passed, metrics)


class ModelCache(CacheGroup):
    """train, evaluate, gate and register as one entry (keyed by :func:`model_key`) pointing at
    the model version, reused while it is still registered and its artifact intact."""

    names = ("train", "evaluate", "gate", "register")

    def __init__(self) -> None:
        self._keys: dict[tuple[str, tuple[str, ...]], str] = {}

    def key(self, ctx: RunContext, outputs: Mapping[str, Any]) -> str:
        snap_id, features = outputs["snapshot"].snapshot.id, list(outputs["schema"].features)
        found = (snap_id, tuple(features))
        if found not in self._keys:
            self._keys[found] = model_key(ctx, snap_id, features)
        return self._keys[found]

    def key_of(self, ctx: RunContext, name: str, outputs: Mapping[str, Any]) -> str | None:
        return self.key(ctx, outputs)

    def restore(self, ctx: RunContext, outputs: Mapping[str, Any]) -> dict[str, Restored] | None:
        res = ctx.result
        hit = ctx.cache.get(self.key(ctx, outputs)) if ctx.use_cache else None
        if hit is None:
            return None
        try:
            version = get_model(ctx.store, hit["model"])
            ctx.store.artifacts.verify(version.artifact_key, version.artifact_sha256)
        except (NotFound, IntegrityError) as exc:
            ctx.progress(f"cache: model {hit['model']} of an earlier run is unusable ({exc}); training again")
            return None
        details = hit.get("details", {})
        res.model, res.metrics = version.id, version.metrics
        gate = version.gate
        res.gate, res.gate_reasons = gate.get("status"), list(gate.get("reasons", []))
        since = f"unchanged since run {hit['_run']}"
        snap_id, features = outputs["snapshot"].snapshot.id, list(outputs["schema"].features)
        passed = res.gate == "passed"
        return {
            "train": Restored(TrainOut(snap_id, features, None), details.get("train", since),
                              {"model": version.id}, inputs={"snapshot": snap_id}),
            "evaluate": Restored(EvaluateOut(None, res.metrics), details.get("evaluate", since),
                                 {"metrics": res.metrics}),
            "gate": Restored(GateOut(None, passed), details.get("gate", str(res.gate)),
                             {"gate": res.gate, "reasons": res.gate_reasons}),
            "register": Restored(ModelOut(version, passed, res.metrics), f"{version.id} ({version.status}), reused",
                                 {"model": version.id}),
        }

    def entries(self, ctx: RunContext, outputs: Mapping[str, Any], records: Mapping[str, Any],
                restored: set[str]) -> list[tuple[str, str, dict[str, Any]]]:
        if restored:
            return []
        details = {name: records[name].detail for name in ("train", "evaluate", "gate")}
        return [(self.key(ctx, outputs), "register", {"model": outputs["register"].version.id, "details": details})]
