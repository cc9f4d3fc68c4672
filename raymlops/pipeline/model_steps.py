"""train → evaluate → gate → register: the model half of a run.

``train`` runs the Ray Tune search (:func:`raymlops.train.fit`) on the snapshot's training
rows; ``evaluate`` scores the best model on the holdout (overall and per ``gate.slices``);
``gate`` applies ``gate.rules`` (absolute, relative to the champion on the same holdout,
per slice, fairness); ``register`` records the version with its lineage. The four are one cache
entry: the same snapshot, config, code and packages give the same model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from raymlops import audit
from raymlops.exceptions import IntegrityError, NotFound, ValidationError
from raymlops.pipeline.base import PipelineBase
from raymlops.pipeline.cache import fingerprint, module_fingerprint

__all__ = ["ModelSteps"]


class ModelSteps(PipelineBase):
    """The model steps of :class:`raymlops.pipeline.runner.Pipeline`."""

    def _model_key(self, snap_id: str, features: list[str]) -> str:
        from raymlops.registry.lineage import PACKAGES, package_versions

        cfg = self.config
        estimators = sorted({c.estimator for c in cfg.train.candidates})
        return fingerprint("model", {
            "snapshot": snap_id, "features": features, "data": cfg.data.model_dump(
                mode="json", exclude={"options", "reference", "drift_gate", "drift"}),
            "seed": cfg.seed, "name": cfg.name,
            "train": cfg.train.model_dump(mode="json"), "gate": cfg.gate.model_dump(mode="json"),
            "code": self._code,
            "packages": package_versions((*PACKAGES, *([cfg.train.framework] if cfg.train.framework else []))),
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

    def _fit_distributed(self, snap: Any, features: list[str]) -> tuple[Any, Any, tuple[Any, Any, Any]]:
        """``strategy: distributed``: Ray Train over the snapshot's Ray Datasets; then the holdout rows
        (only those reach the driver), with the gate's slice columns."""
        from raymlops.train.boost_data import SnapshotSource, holdout_rows
        from raymlops.train.distributed import fit_distributed

        cfg = self.config
        self._connect()
        source = SnapshotSource(self.store, snap.id, tuple(features), cfg.data.target, cfg.data.holdout_fraction,
                                cfg.seed, cfg.data.split_key)
        model, summary = fit_distributed(cfg.train, source, seed=cfg.seed, storage_path=str(self.store.home / "tune"),
                                         name=f"{cfg.name}-{self.run_id}", progress=self.ray_progress)
        return model, summary, holdout_rows(source, tuple(cfg.gate.slices))

    def _train_and_register(self, snap: Any, features: list[str], key: str) -> tuple[Any, dict[str, str]]:
        from raymlops.registry.lineage import PACKAGES, package_versions
        from raymlops.registry.registry import register_model
        from raymlops.train import evaluate_model, fit, gate
        from raymlops.train.evaluate import calibration_of

        cfg, store, res = self.config, self.store, self.result
        details: dict[str, str] = {}
        tracker: Any = None
        with self._step("train", key, {"snapshot": snap.id, "candidates": len(cfg.train.candidates)}) as step:
            holdout_columns: dict[str, np.ndarray] | None = None
            if cfg.train.strategy == "distributed":  # Ray Train reads the snapshot: no training rows here
                tracker = self._tracker()
                model, summary, (Xho, yho, holdout_columns) = self._fit_distributed(snap, features)
                classes = getattr(model, "classes_", None)
                rows, nbytes = int(model.info_["train_rows"]), 0
            else:
                Xtr, ytr, Xho, yho = self._split(snap.id, features)
                self._connect()
                tracker = self._tracker()
                model, summary = fit(cfg.train, Xtr, ytr, seed=cfg.seed, storage_path=str(store.home / "tune"),
                                     name=f"{cfg.name}-{self.run_id}", progress=self.ray_progress,
                                     callbacks=tracker.tune_callbacks() if tracker else None)
                classes, rows, nbytes = np.unique(ytr), len(ytr), int(Xtr.nbytes + ytr.nbytes)
            best = summary.best.config
            stopped = sum(t.stopped_early for t in summary.trials)
            retried = sum(t.failures for t in summary.trials)
            step.rows, step.bytes = rows, nbytes
            step.outputs = {"trials": len(summary.trials), "best": best, "metric": summary.best.metric,
                            "strategy": summary.strategy, "stopped_early": stopped, "retried": retried}
            step.detail = details["train"] = (
                f"{len(summary.trials)} trials" + (f", {stopped} stopped early" if stopped else "")
                + (f", {retried} retried" if retried else "")
                + f", best {best['estimator'].rsplit('.', 1)[-1]} {best['params']}"
                f" {cfg.train.metric}={summary.best.metric:.4f}"
            )
            with store.metadata.transaction() as conn:  # the training run, for the audit trail
                audit.append(conn, "model.trained", {"snapshot": snap.id, "run": self.run_id}, self.reason,
                             {"config_hash": cfg.config_hash(), "code": self._code, "strategy": summary.strategy,
                              "trials": len(summary.trials), "retried": retried, "best": best,
                              cfg.train.metric: summary.best.metric})

        with self._step("evaluate", key, {"holdout_rows": len(yho), "slices": list(cfg.gate.slices)}) as step:
            evaluation = evaluate_model(
                model, Xho, yho, cfg.train.task,
                self._holdout_columns(snap.id, cfg.gate.slices) if holdout_columns is None
                else _slice_columns(holdout_columns, cfg.gate.slices),
                max_slices=cfg.gate.max_slices, min_slice_rows=cfg.gate.min_slice_rows,
            )
            metrics = evaluation.metrics
            res.metrics = metrics
            # the probabilities' holdout calibration: the monitor estimates accuracy before labels (CBPE)
            calibration = calibration_of(model, Xho, yho) if cfg.train.task == "classification" else None
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
            if cfg.train.framework is not None:  # the engine's version, workers and rounds
                lineage["packages"] = package_versions((*PACKAGES, cfg.train.framework))
                lineage["training"] = dict(getattr(model, "info_", {}))
            if calibration is not None:
                lineage["calibration"] = calibration
            signature = {
                "inputs": [{"name": n, "type": "double", "min": snap.schema.column(n).min,
                            "max": snap.schema.column(n).max} for n in features],
                "output": cfg.train.task,
                "target": cfg.data.target,
            }
            if cfg.train.task == "classification":
                signature["classes"] = np.asarray(classes).tolist()
            version = register_model(
                store, cfg.name, model, snapshot_id=snap.id, signature=signature, metrics=metrics,
                gate=verdict.to_dict() | {"evaluation": evaluation.to_dict()}, lineage=lineage,
                tune=summary.to_dict(), reason=self.reason, alias=self.alias,
            )
            res.model = version.id
            info = store.artifacts.fs.get_file_info(store.artifacts.path(version.artifact_key))
            step.bytes = int(info.size or 0)
            step.outputs = {"model": version.id, "status": version.status, "artifact_sha256": version.artifact_sha256}
            step.detail = f"{version.id} ({version.status})"
            if tracker is not None:  # tracking: the parent run, and the champion in MLflow's registry
                is_champion = version.status == "registered" and self.alias == "champion"
                tracker.finish(snapshot_id=snap.id, model_version=version.id, model_status=version.status,
                               champion=is_champion, metrics=metrics, best=summary.best.config,
                               config_hash=cfg.config_hash(),
                               artifact=("model.joblib", store.artifacts.read_bytes(version.artifact_key))
                               if is_champion and tracker.cfg.register_model else None)
                step.outputs["tracking"] = res.tracking = tracker.record
        return version, details

    def _tracker(self) -> Any:
        """``tracking:``: the MLflow parent run of this pipeline run (None when tracking is off). An
        unreachable server is a warning in the step's log and in the run record, never a failure."""
        if self.config.tracking is None:
            return None
        from raymlops.tracking.mlflow_tracking import MlflowTracker  # only with tracking: (an optional extra)

        tracker = MlflowTracker(self.config.tracking, self.config.name, self.run_id, warn=self._say)
        tracker.start()
        self.result.tracking = tracker.record
        return tracker


def _slice_columns(columns: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    missing = [c for c in names if c not in columns]
    if missing:
        raise ValidationError(f"gate.slices: the data has no column {missing[0]!r}")
    return {c: columns[c] for c in names}
