"""``strategy: distributed``: gradient-boosted trees on Ray Train's XGBoost / LightGBM trainers.

    model, summary = fit_distributed(config.train, source, seed=config.seed,
                                     storage_path=str(store.home / "tune"), name=f"{config.name}-{run_id}")

Every training run is Ray Train's ``XGBoostTrainer`` or ``LightGBMTrainer`` with their per-worker
training function (:func:`raymlops.train.boost_engine.train_loop_per_worker`): ``num_workers``
workers of ``cpus_per_worker`` CPUs each read their own Ray Datasets of the snapshot
(:mod:`raymlops.train.boost_data`: the driver never holds the training rows), build the engine's
matrices and train one model together (XGBoost's collective, LightGBM's data-parallel tree
learner), evaluating ``train.metric`` on the validation rows every round, with
``early_stopping_rounds`` on it. Rank 0 checkpoints the native model every ``checkpoint_every``
rounds; with ``FailureConfig(max_failures=train.max_failures)`` a lost worker or node restarts the
worker group, which resumes from the last checkpoint.

Search: ``train.params`` takes the same search-space syntax as a candidate's params and is
expanded the same way (:func:`raymlops.train.search.expand`, seeded). With more than one
configuration, each is a Ray Tune trial running one Ray Train run (``TuneReportCallback``), and
ASHA (``train.scheduler: asha``, the default here when there is a search) stops weak trials by
boosting round. ASHA's stop is delivered to the workers (a small stop-board actor read by rank 0
and broadcast to the others at a report), so a stopped run ends cleanly, leaving its checkpoint
and releasing its workers: Ray Tune would otherwise kill the trial, and without a dashboard Ray
Train cannot release a killed run's placement group. The best trial's final checkpoint is the
model (no refit: at the scale this strategy is for, a second training would double the cost).

Determinism: the rows of each worker, their order, the engine seed and the threads per worker are
fixed by the snapshot, seed, ``num_workers`` and ``cpus_per_worker``, so the same inputs give the
same trees (checked by tests/integration/test_train_distributed.py). A run resumed from a
checkpoint continues the same trees, but early stopping restarts its patience count at the resume
point, and ASHA's choices depend on the order in which concurrent trials report.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from raymlops.config import TrainConfig
from raymlops.exceptions import ConfigError, StepFailed, ValidationError
from raymlops.ray_session import stopped_by, watch_interrupts
from raymlops.train.boost_data import BoostData, SnapshotSource, boost_datasets
from raymlops.train.boost_engine import (
    TRAINERS,
    EngineSpec,
    check_params,
    engine_metric,
    expand_params,
    train_loop_per_worker,
)
from raymlops.train.boost_model import NATIVE_FILES, BoostedModel, boosted_model
from raymlops.train.evaluate import positive_index
from raymlops.train.tune_runner import TrialRecord, TuneSummary, fit_interruptible, summarize, variant_generator

#: how often Ray Train's controller collects the workers' reports; its default (2 s) lets a worker
#: report once per 2 s, which would make a report per boosting round the slowest part of training
POLL_ENV, POLL_INTERVAL_S = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.1"
#: Ray Train's preemption watcher (an actor per run: a process of about 1.7 CPU-s) reports the nodes
#: a cluster drains (an autoscaler scaling down, a reclaimed spot node). Nothing drains the one node
#: of a Ray on this machine, so there it is off; a cluster (``RAY_ADDRESS``, or more nodes) keeps it.
PREEMPTION_ENV = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"
#: the trials of a search whose params are checked on the driver before any worker starts (one
#: round of the engine each, a few ms): every one up to this many
MAX_CHECKED_TRIALS = 64


def _train_env() -> None:
    """Ray Train's settings for this process's runs (Ray Train passes them on to its controller,
    Ray Tune to its trials)."""
    import ray

    os.environ.setdefault(POLL_ENV, POLL_INTERVAL_S)
    if not os.environ.get("RAY_ADDRESS") and sum(1 for node in ray.nodes() if node["Alive"]) == 1:
        os.environ.setdefault(PREEMPTION_ENV, "0")


def _trainer(spec: EngineSpec, params: dict[str, Any], data: BoostData, *, name: str, storage_path: str,
             max_failures: int, callbacks: list[Any] | None = None, board: Any = None,
             trial_id: str | None = None) -> Any:
    import ray.train
    from ray.data import ExecutionOptions

    Trainer: Any
    if spec.framework == "xgboost":
        from ray.train.xgboost import XGBoostTrainer as Trainer
    else:
        from ray.train.lightgbm import LightGBMTrainer as Trainer
    return Trainer(
        train_loop_per_worker,
        train_loop_config={"spec": spec, "params": params, "board": board, "trial_id": trial_id},
        datasets=data.datasets,
        # every worker reads its own datasets (train_<rank>, valid_<rank>): a fixed partition
        dataset_config=ray.train.DataConfig(datasets_to_split=[],
                                            execution_options=ExecutionOptions(preserve_order=True)),
        scaling_config=ray.train.ScalingConfig(num_workers=spec.num_workers,
                                               resources_per_worker={"CPU": spec.cpus_per_worker}),
        run_config=ray.train.RunConfig(
            name=name, storage_path=storage_path, callbacks=callbacks,
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
        ),
    )


def _tune_trial(config: dict[str, Any], spec: EngineSpec | None = None, data: BoostData | None = None,
                board: Any = None, storage_path: str = "", name: str = "", max_failures: int = 0) -> None:
    """One Tune trial: one Ray Train run, whose reports reach Tune through ``TuneReportCallback``."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    assert spec is not None and data is not None
    os.environ.setdefault(POLL_ENV, POLL_INTERVAL_S)  # propagated by Ray Train to its controller
    trial_id = tune.get_context().get_trial_id()
    trainer = _trainer(spec, config["trial"]["params"], data, name=f"{name}-{trial_id}", storage_path=storage_path,
                       max_failures=max_failures, callbacks=[TuneReportCallback()], board=board, trial_id=trial_id)
    trainer.fit()


class _StopBoard:
    """Trials ASHA has stopped; rank 0 of each run asks at its reports."""

    def __init__(self) -> None:
        self.stopped: set[str] = set()

    def stop(self, trial_id: str) -> None:
        self.stopped.add(trial_id)

    def should_stop(self, trial_id: str) -> bool:
        return trial_id in self.stopped


def _graceful_asha(board: Any, **kwargs: Any) -> Any:
    """ASHA whose STOP reaches the run through ``board`` (the trial then ends by itself)."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    class GracefulASHA(ASHAScheduler):
        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
            decision = super().on_trial_result(tune_controller, trial, result)
            if decision == TrialScheduler.STOP:
                # never Tune's STOP, not even at the final report: Tune would kill the trial while its
                # Ray Train run is still shutting down, and the run's worker group would keep its CPUs
                if not result.get("final"):
                    board.stop.remote(trial.trial_id)
                return str(TrialScheduler.CONTINUE)
            return str(decision)

    return GracefulASHA(**kwargs)


def _load_checkpoint(path: str, framework: str) -> bytes:
    import ray.train

    with ray.train.Checkpoint(path).as_directory() as d:
        return Path(d, NATIVE_FILES[framework]).read_bytes()


def _engine_version(framework: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(framework)
    except metadata.PackageNotFoundError:
        return "not installed"


def _check_engine(framework: str) -> None:
    import importlib

    try:
        importlib.import_module(framework)
    except ImportError:
        raise ConfigError(f"train.framework: {framework} is not installed; pip install 'raymlops[boost]'") from None


def _check_capacity(spec: EngineSpec) -> int:
    """How many runs fit at once on the cluster's CPUs (at least one must)."""
    import ray

    cpus = float(ray.cluster_resources().get("CPU", 0.0))
    need = spec.num_workers * spec.cpus_per_worker
    if need > cpus:  # the worker group starts whole or not at all
        private = "" if os.environ.get("RAY_ADDRESS") else " (a private local Ray)"  # as ensure_ray() decides
        raise ConfigError(f"train.num_workers x train.cpus_per_worker: {spec.num_workers} x {spec.cpus_per_worker:g} "
                          f"CPUs, but this Ray has {cpus:g}{private}: the workers could never all start")
    return max(1, int(cpus // need))


@contextlib.contextmanager
def _quiet(progress: bool) -> Iterator[None]:
    for name in ("ray.tune", "ray.train", "ray.data"):
        logging.getLogger(name).setLevel(logging.CRITICAL if not progress else logging.INFO)
    with contextlib.redirect_stdout(sys.stderr if progress else io.StringIO()):
        yield


def fit_distributed(
    config: TrainConfig, source: SnapshotSource, *, seed: int, storage_path: str, name: str, progress: bool = False,
) -> tuple[BoostedModel, TuneSummary]:
    """Train ``config.framework`` on Ray Train over the snapshot of ``source``, searching
    ``config.params`` with Ray Tune when it holds a search space. Needs a connected Ray."""
    assert config.framework is not None
    framework = config.framework
    _check_engine(framework)
    trials = expand_params(config, seed)
    for trial in trials[:MAX_CHECKED_TRIALS]:  # a search's trials: each one's values (a sampled eta too)
        check_params(framework, dict(trial.get("params", {})))
    data = boost_datasets(source, task=config.task, num_workers=config.num_workers,
                          validation_fraction=config.validation_fraction,
                          # XGBoost reduces a metric over its workers' shards: sums (logloss, error, rmse)
                          # exactly, but roc_auc as the mean of each shard's AUC, so for roc_auc (and for
                          # LightGBM, which evaluates each worker alone) every worker gets all the rows
                          shared_validation=framework == "lightgbm" or config.metric == "roc_auc")
    num_classes = len(data.classes) if data.classes is not None else 0
    if config.positive_label is not None and data.classes is not None:  # before training, not at evaluate
        if num_classes != 2:
            raise ValidationError(f"train.positive_label: {config.positive_label!r} names the positive class of a "
                                  f"binary target; this one has {num_classes} classes")
        positive_index(np.asarray(data.classes), config.positive_label)
    lacking = sorted(set(data.classes or ()) - set(data.valid_classes or ()), key=str)
    if config.metric == "roc_auc" and lacking:  # undefined there: XGBoost failed at the end, LightGBM said 1.0
        raise ValidationError(
            f"the validation rows ({data.valid_rows} of the {data.train_rows + data.valid_rows} training rows) lack "
            f"class {lacking[0]!r}, so train.metric 'roc_auc' is undefined on them: use more rows, another "
            "train.validation_fraction, or another train.metric (e.g. log_loss)")
    name_, flip = engine_metric(framework, config.metric, num_classes)
    tuned = len(trials) > 1
    asha = tuned and (config.scheduler.type == "asha" or "scheduler" not in config.model_fields_set)
    spec = EngineSpec(
        framework=framework, task=config.task, metric=config.metric, engine_metric=name_, flip=flip,
        num_classes=num_classes, num_boost_round=config.num_boost_round,
        early_stopping_rounds=config.early_stopping_rounds, checkpoint_every=config.checkpoint_every,
        report_every=1 if asha else config.checkpoint_every, seed=seed, num_workers=config.num_workers,
        cpus_per_worker=config.cpus_per_worker,
    )
    fits = _check_capacity(spec)
    _train_env()
    t0 = time.perf_counter()
    with _quiet(progress):
        if tuned:
            records, best_path = _search(config, spec, data, trials, storage_path=storage_path, name=name,
                                         concurrent=min(config.max_concurrent_trials, fits), asha=asha)
        else:
            records, best_path = _single(config, spec, data, trials[0], storage_path=storage_path, name=name)
    summary = summarize(records, trials, metric=config.metric, mode=config.mode, seconds=time.perf_counter() - t0,
                        scheduler="asha" if asha else "fifo", strategy="distributed")
    best_path_of = dict(best_path)
    path = best_path_of.get(summary.best.trial_id)
    if path is None:
        raise StepFailed("train", f"the best run ({summary.best.trial_id}) left no checkpoint")
    best = summary.best
    info = {
        "framework": framework, "framework_version": _engine_version(framework), "trainer": TRAINERS[framework],
        "num_workers": config.num_workers, "cpus_per_worker": config.cpus_per_worker,
        "num_boost_round": config.num_boost_round, "early_stopping_rounds": config.early_stopping_rounds,
        "rounds": best.epochs, "rounds_used": int(best.metrics.get("rounds_used", best.epochs)),
        "resumed_from": int(best.metrics.get("resumed_from", 0)), "params": best.config["params"],
        "train_rows": data.train_rows, "valid_rows": data.valid_rows, "seed": seed,
    }
    model = boosted_model(config.task, framework, _load_checkpoint(path, framework),
                          classes=list(data.classes) if data.classes is not None else None,
                          rounds_used=info["rounds_used"], info=info)
    return model, summary


def _record(trial_id: str, trial: dict[str, Any], m: dict[str, Any], spec: EngineSpec, metric: str,
            seconds: float, error: str | None) -> TrialRecord:
    rounds = int(m.get("round", 0))
    return TrialRecord(
        trial_id=trial_id, config=trial,
        metric=float(m[metric]) if metric in m and error is None else None,
        seconds=seconds, error=error, node_id=str(m["node_id"]) if m.get("node_id") else None,
        epochs=rounds, epochs_planned=spec.num_boost_round,
        stopped_early=error is None and bool(m.get("stopped")),
        failures=int(int(m.get("resumed_from", 0)) > 0),
        metrics={k: float(m[k]) for k in (metric, "rounds_used", "resumed_from", "rows") if k in m},
    )


def _single(config: TrainConfig, spec: EngineSpec, data: BoostData, trial: dict[str, Any], *, storage_path: str,
            name: str) -> tuple[list[TrialRecord], list[tuple[str, str]]]:
    t0 = time.perf_counter()
    trainer = _trainer(spec, trial["params"], data, name=name, storage_path=storage_path,
                       max_failures=config.max_failures)
    # Ctrl-C: Ray Train's handler aborts the run and raises SystemExit (or its controller dies under
    # ray.get); either is an interruption (watch_interrupts), not a failed training. SIGTERM takes the
    # same way, so the workers stop before the process exits
    with watch_interrupts(sigterm_as_ctrl_c=True) as interrupted:
        try:
            result = trainer.fit()
        except BaseException as exc:
            if signum := interrupted():
                raise stopped_by(signum, "Ray Train") from None
            if not isinstance(exc, Exception):
                raise
            # Ray Train's TrainingFailedError: the run failed past its retries
            record = _record("distributed", trial, {}, spec, config.metric, time.perf_counter() - t0,
                             f"{type(exc).__name__}: {exc}")
            return [record], []
    if signum := interrupted():
        raise stopped_by(signum, "Ray Train")
    record = _record("distributed", trial, dict(result.metrics or {}), spec, config.metric,
                     time.perf_counter() - t0, None)
    return [record], ([("distributed", result.checkpoint.path)] if result.checkpoint is not None else [])


def _search(config: TrainConfig, spec: EngineSpec, data: BoostData, trials: list[dict[str, Any]], *,
            storage_path: str, name: str, concurrent: int, asha: bool,
            ) -> tuple[list[TrialRecord], list[tuple[str, str]]]:
    import ray
    from ray import tune
    from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY
    from ray.tune.schedulers import FIFOScheduler

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    board: Any = ray.remote(num_cpus=0)(_StopBoard).remote()
    sched: Any = FIFOScheduler()
    if asha:
        explicit = "scheduler" in config.model_fields_set
        max_t = min(config.scheduler.max_t or spec.num_boost_round, spec.num_boost_round)
        grace = config.scheduler.grace_period if explicit else max(1, spec.num_boost_round // 10)
        sched = _graceful_asha(board, time_attr="round", max_t=max_t, grace_period=min(grace, max_t),
                               reduction_factor=config.scheduler.reduction_factor)
    trainable = tune.with_parameters(_tune_trial, spec=spec, data=data, board=board, storage_path=storage_path,
                                     name=name, max_failures=config.max_failures)
    tuner = tune.Tuner(
        # the trial only drives its Ray Train run: the workers hold the CPUs (a bundle needs some resource)
        tune.with_resources(trainable, {"cpu": 0, "memory": 1}),
        param_space={"trial": tune.grid_search(trials)},
        tune_config=tune.TuneConfig(metric=config.metric, mode=config.mode, max_concurrent_trials=concurrent,
                                    scheduler=sched, search_alg=variant_generator(spec.seed, concurrent)),
        run_config=tune.RunConfig(name=name, storage_path=storage_path, verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )
    try:
        grid = fit_interruptible(tuner)
    finally:
        ray.kill(board)
    records, paths = [], []
    for i in range(len(grid)):
        result = grid[i]
        m = dict(result.metrics or {})
        trial_id = str(m.get("trial_id", result.path.rsplit("/", 1)[-1]))
        error = None if result.error is None else f"{type(result.error).__name__}: {result.error}"
        if error is None and not m.get("final"):
            error = "the run ended without its final report"
        records.append(_record(trial_id, result.config["trial"] if result.config else {}, m, spec, config.metric,
                               float(m.get("time_total_s", 0.0)), error))
        if m.get(CHECKPOINT_PATH_KEY) and error is None:
            paths.append((trial_id, str(m[CHECKPOINT_PATH_KEY])))
    return records, paths
