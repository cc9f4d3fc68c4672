"""Re-train a registered model from its recorded snapshot, config and seeds, and compare.

A version is reproduced when the new model's holdout predictions equal the registered one's.
The artifact hash is compared too (equal when the estimator and its serialisation are
deterministic). When they differ, the report says what changed: code, packages, data, the
chosen trial, predictions.
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raymlops import audit
from raymlops.config import PipelineConfig, parse_config
from raymlops.data.snapshot import verify_snapshot
from raymlops.data.transforms import module_fingerprint
from raymlops.exceptions import ValidationError
from raymlops.ray_session import ensure_ray
from raymlops.registry.digest import model_digest
from raymlops.registry.lineage import PACKAGES, code_version, package_versions
from raymlops.registry.registry import artifact_problems, get_model, load_model
from raymlops.store.home import Store
from raymlops.train.boost_data import SnapshotSource, holdout_rows
from raymlops.train.distributed import fit_distributed
from raymlops.train.prepare import split_snapshot
from raymlops.train.trainer import fit


@dataclass
class ReproduceReport:
    model: str
    identical: bool = False
    predictions_equal: bool | None = None  # None: not re-trained (the recorded data changed)
    max_probability_diff: float | None = None
    artifact_hash_equal: bool | None = None  # the pickle's bytes: they also depend on the process (digest.py)
    model_equal: bool | None = None  # every fitted parameter and array, bit for bit (registry.digest)
    differences: list[str] = field(default_factory=list)
    recorded: dict[str, Any] = field(default_factory=dict)
    reproduced: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _env_differences(lineage: dict[str, Any]) -> list[str]:
    out = []
    recorded_code = lineage.get("code", {})
    now_code = code_version()
    if recorded_code != now_code:
        out.append(f"code: {code_change(recorded_code, now_code)}")
    for estimator, recorded in sorted((lineage.get("estimator_code") or {}).items()):
        now = module_fingerprint(estimator.rsplit(".", 1)[0])
        if now != recorded:
            module = estimator.rsplit(".", 1)[0]
            out.append(f"code: {module} (the module of estimator {estimator.rsplit('.', 1)[-1]}) changed: recorded "
                       f"{str(recorded)[:12] if recorded else 'unknown'}, now {now[:12] if now else 'not found'}")
    recorded_pkgs = lineage.get("packages", {})
    now_pkgs = package_versions((*PACKAGES, *(k for k in recorded_pkgs if k not in PACKAGES and k != "python")))
    for name in sorted(set(recorded_pkgs) | set(now_pkgs)):
        if recorded_pkgs.get(name) != now_pkgs.get(name):
            out.append(f"package {name}: recorded {recorded_pkgs.get(name)}, now {now_pkgs.get(name)}")
    return out


def code_change(recorded: dict[str, Any], now: dict[str, Any]) -> str:
    """What differs between two code versions, in words: the git state or package version, and the
    hash of raymlops' own source (it alone changed: the same version read "recorded package 0.1.0,
    now package 0.1.0")."""
    parts = []
    if _code_text(recorded) != _code_text(now):
        parts.append(f"recorded {_code_text(recorded)}, now {_code_text(now)}")
    if recorded.get("raymlops_source") != now.get("raymlops_source"):
        parts.append(f"raymlops' own source recorded {recorded.get('raymlops_source') or 'unknown'}, "
                     f"now {now.get('raymlops_source') or 'unknown'}")
    return "; ".join(parts) or f"recorded {recorded}, now {now}"


def _code_text(code: dict[str, Any]) -> str:
    if "git_commit" in code:
        return f"git {str(code['git_commit'])[:12]}" + (f"+dirty {code.get('dirty_hash')}" if code.get("dirty") else "")
    return f"package {code.get('package_version')}"


def recorded_config(lineage: dict[str, Any], model_id: str) -> PipelineConfig:
    data = lineage.get("config")
    if not isinstance(data, dict):
        raise ValidationError(f"{model_id} was registered without its config; it cannot be reproduced")
    return parse_config(data, f"{model_id} (recorded config)")


def reproduce(
    store: Store,
    ref: str,
    *,
    seed: int | None = None,
    progress: Callable[[str], None] = lambda _line: None,
) -> ReproduceReport:
    """Re-train ``ref`` as recorded (``seed`` overrides the recorded seed, to see what it changes)."""
    t0 = time.perf_counter()
    version = get_model(store, ref)
    lineage = version.lineage
    config = recorded_config(lineage, version.id)
    if seed is not None:
        config = config.model_copy(update={"seed": seed})
    report = ReproduceReport(model=version.id)
    report.differences = _env_differences(lineage)
    if seed is not None and seed != lineage.get("seed"):
        report.differences.append(f"seed: recorded {lineage.get('seed')}, now {seed}")
    report.recorded = {"snapshot": version.snapshot_id, "seed": lineage.get("seed"),
                       "best": version.tune.get("best", {}).get("config"),
                       "artifact_sha256": version.artifact_sha256}
    problems = verify_snapshot(store, version.snapshot_id)
    if problems:
        report.differences.append(f"data: snapshot {version.snapshot_id[:12]} changed: " + "; ".join(problems))
    broken = artifact_problems(store, version)  # before minutes of training, which could only end there
    if broken:
        report.differences.append(f"artifact: the registered model file failed its check: {'; '.join(broken)}")
    if problems or broken:
        report.seconds = time.perf_counter() - t0
        _record(store, report)
        return report
    features = version.features
    run_name = f"reproduce-{version.name}-v{version.version}-{int(time.time())}"
    if config.train.strategy == "distributed":  # Ray Train reads the snapshot; only the holdout comes here

        ensure_ray()
        progress(f"re-training {version.id} on Ray Train with seed {config.seed}")
        source = SnapshotSource(store, version.snapshot_id, tuple(features), config.data.target,
                                config.data.holdout_fraction, config.seed, config.data.split_key)
        model, summary = fit_distributed(config.train, source, seed=config.seed,
                                         storage_path=str(store.home / "tune"), name=run_name)
        X_hold = holdout_rows(source)[0]
    else:
        progress(f"reading snapshot {version.snapshot_id[:12]} ({len(features)} features)")
        X_train, y_train, X_hold, _ = split_snapshot(store, version.snapshot_id, features, config)
        ensure_ray()
        progress(f"re-training {version.id} with seed {config.seed}")
        categorical = [j for j, i in enumerate(version.signature["inputs"]) if i.get("type") == "string"]
        model, summary = fit(config.train, X_train, y_train, seed=config.seed, storage_path=str(store.home / "tune"),
                             name=run_name, categorical=categorical)
    registered = load_model(store, version)
    new_pred, old_pred = np.asarray(model.predict(X_hold)), np.asarray(registered.predict(X_hold))
    report.predictions_equal = bool(np.array_equal(new_pred, old_pred))
    if hasattr(model, "predict_proba") and hasattr(registered, "predict_proba"):
        diff = np.abs(np.asarray(model.predict_proba(X_hold)) - np.asarray(registered.predict_proba(X_hold)))
        report.max_probability_diff = float(diff.max()) if diff.size else 0.0
    import joblib

    buf = io.BytesIO()
    joblib.dump(model, buf)
    new_sha = hashlib.sha256(buf.getvalue()).hexdigest()
    report.artifact_hash_equal = new_sha == version.artifact_sha256
    report.model_equal = model_digest(model) == model_digest(registered)
    report.reproduced = {"seed": config.seed, "best": summary.best.config, "artifact_sha256": new_sha}
    if summary.best.config != report.recorded["best"]:
        report.differences.append(f"chosen trial: recorded {report.recorded['best']}, now {summary.best.config}")
    if not report.predictions_equal:
        n = int(np.sum(new_pred != old_pred))
        report.differences.append(f"predictions: {n} of {len(old_pred)} holdout rows differ")
    elif report.max_probability_diff:
        report.differences.append(f"probabilities differ by up to {report.max_probability_diff:.3g}")
    report.identical = report.predictions_equal and not report.max_probability_diff
    report.seconds = time.perf_counter() - t0
    _record(store, report)
    return report


def _record(store: Store, report: ReproduceReport) -> None:
    """The result in the audit log (``model.reproduced`` or ``model.reproduce_differs``), so the
    record of a model shows every check of it (``raymlops audit log``, the web UI's model page)."""
    action = "model.reproduced" if report.identical else "model.reproduce_differs"
    how = {"predictions_equal": report.predictions_equal, "artifact_hash_equal": report.artifact_hash_equal,
           "model_equal": report.model_equal,
           "max_probability_diff": report.max_probability_diff, "seconds": round(report.seconds, 3),
           "artifact_sha256": report.reproduced.get("artifact_sha256")}
    with store.metadata.transaction() as conn:
        audit.append(conn, action, {"model": report.model}, "; ".join(report.differences) or "identical", how)
