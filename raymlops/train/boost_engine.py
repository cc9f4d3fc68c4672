"""What runs inside each Ray Train worker of ``strategy: distributed``, and the engine's settings.

:func:`train_loop_per_worker` is the per-worker training function Ray Train's ``XGBoostTrainer``
/ ``LightGBMTrainer`` run: it reads the worker's Ray Dataset shards into arrays, builds the
engine's matrices and trains (XGBoost's collective or LightGBM's data-parallel tree learner),
reporting ``train.metric`` every round and checkpointing the native model on rank 0; it resumes
from a checkpoint when the worker group restarts. :class:`EngineSpec` is everything a worker
needs to know, built on the driver by :mod:`raymlops.train.distributed`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from raymlops.config import Candidate, TrainConfig
from raymlops.exceptions import ConfigError, RaymlopsError
from raymlops.train.boost_data import LABEL
from raymlops.train.boost_model import NATIVE_FILES, booster_rounds, load_booster
from raymlops.train.search import expand

TRAINERS = {"xgboost": "ray.train.xgboost.XGBoostTrainer", "lightgbm": "ray.train.lightgbm.LightGBMTrainer"}



class EngineParams:
    """``train.params`` in the shape :func:`raymlops.train.search.expand` instantiates (any names:
    the engine checks them when training starts)."""

    def __init__(self, **params: Any) -> None:
        self.params = params

    def fit(self, *args: Any, **kwargs: Any) -> EngineParams:
        raise NotImplementedError("EngineParams only carries train.params")


@dataclass(frozen=True)
class EngineSpec:
    """Everything a worker needs besides the searched parameters (picklable)."""

    framework: str
    task: str
    metric: str  # raymlops' name (roc_auc, log_loss, accuracy, rmse, mae)
    engine_metric: str  # the engine's name for it
    flip: bool  # the engine reports 1 - metric (error for accuracy)
    num_classes: int
    num_boost_round: int
    early_stopping_rounds: int | None
    checkpoint_every: int
    report_every: int
    seed: int
    num_workers: int
    cpus_per_worker: float


def engine_metric(framework: str, metric: str, num_classes: int) -> tuple[str, bool]:
    """``(the engine's eval metric, whether it is 1 - metric)`` for raymlops' ``metric``."""
    multi = num_classes > 2
    if framework == "xgboost":
        names = {"roc_auc": "auc", "log_loss": "mlogloss" if multi else "logloss",
                 "accuracy": "merror" if multi else "error", "rmse": "rmse", "mae": "mae"}
    else:
        if multi and metric == "roc_auc":
            raise ConfigError("train.metric: LightGBM computes no multi-class roc_auc across workers; "
                              "expected log_loss or accuracy for more than two classes")
        names = {"roc_auc": "auc", "log_loss": "multi_logloss" if multi else "binary_logloss",
                 "accuracy": "multi_error" if multi else "binary_error", "rmse": "rmse", "mae": "l1"}
    if metric not in names:
        raise ConfigError(f"train.metric: {metric!r} is not computed by {framework}")
    return names[metric], metric == "accuracy"


def expand_params(config: TrainConfig, seed: int) -> list[dict[str, Any]]:
    """Every configuration of ``train.params`` (same syntax and draws as a candidate's params)."""
    assert config.framework is not None
    candidate = Candidate(estimator=f"{__name__}.EngineParams", params=config.params)
    trials = expand([candidate], num_samples=config.num_samples, seed=seed)
    return [{**t, "estimator": TRAINERS[config.framework]} for t in trials]


def _one_round(framework: str, params: dict[str, Any]) -> list[str]:
    """One round of ``framework`` with ``params`` on 16 random rows here, on the driver: what the
    engine said (its warnings and log lines). Raises what the engine raises on a value it refuses."""
    rng = np.random.default_rng(0)
    X = rng.random((16, 2))
    y = (X[:, 0] > 0.5).astype(np.float64)
    said: list[str] = []
    if framework == "xgboost":
        import warnings

        import xgboost

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # its warnings on (verbosity 0 in params would hide the very line that names them)
            xgboost.train({**params, "nthread": 1, "verbosity": 1}, xgboost.DMatrix(X, label=y), num_boost_round=1)
        return [str(w.message) for w in caught]
    import lightgbm

    class _Heard:
        def info(self, message: str) -> None:
            said.append(message)

        def warning(self, message: str) -> None:
            said.append(message)

    before = getattr(lightgbm.basic, "_LOGGER", None)
    lightgbm.register_logger(_Heard())
    try:
        quiet = {"verbose": 0, "num_threads": 1}  # warnings on: verbose -1 (or an alias) would hide them
        mine = {k: v for k, v in params.items() if k not in ("verbose", "verbosity")}
        lightgbm.train({**mine, **quiet}, lightgbm.Dataset(X, label=y, params=quiet), num_boost_round=1)
    finally:
        if before is not None:
            lightgbm.basic._LOGGER = before
    return said


def _round_said(framework: str, params: dict[str, Any]) -> tuple[list[str], str | None]:
    """:func:`_one_round`'s lines, and the first line of the error the engine raised (None: none)."""
    try:
        return _one_round(framework, params), None
    except Exception as exc:  # noqa: BLE001 - the engine's own words: XGBoostError, LightGBMError, ValueError
        return [], (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _unknown(framework: str, said: list[str]) -> list[str]:
    if framework == "xgboost":
        found = re.search(r"Parameters: \{(.*?)\} are not used", " ".join(said).replace("\n", " "))
        return [n.strip().strip('"') for n in found.group(1).split(",")] if found else []
    return sorted({m.rsplit("Unknown parameter: ", 1)[1].strip() for m in said if "Unknown parameter: " in m})


def check_params(framework: str, params: dict[str, Any], where: str = "train.params") -> None:
    """A ConfigError naming ``where.<name>`` for a name in ``params`` that ``framework`` does not know,
    or a value it refuses. Neither engine refuses an unknown name: it says so in a log line
    (swallowed in a Ray Train worker) and trains with its default, so a typo (``max_dept``)
    trained another model than the lineage records. A value it refuses (``eta: -1``) failed every
    worker, each retried up to ``max_failures``: minutes, then exit 1 naming the engine's alias
    (``learning_rate``). One round here, on the driver, lets the engine say which."""
    said, reason = _round_said(framework, params)
    if reason is not None:  # the name it refuses: each alone (the engine's message may use an alias)
        name = next((k for k in params if _round_said(framework, {k: params[k]})[1] is not None), None)
        shown = f"{where}.{name}: {framework} refuses {params[name]!r}" if name else \
            f"{where}: {framework} refuses them together"
        raise ConfigError(f"{shown}: {reason}")
    unknown = _unknown(framework, said)
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: not a parameter of {framework} (it would train on with its "
                          f"default, silently){f'; also {unknown[1:]}' if len(unknown) > 1 else ''}")


def unknown_params(framework: str, params: dict[str, Any]) -> list[str]:
    """The names in ``params`` that ``framework`` does not know (its one round's log lines say
    which); [] when it refuses a value (:func:`check_params` says that)."""
    return _unknown(framework, _round_said(framework, params)[0])


# --------------------------------------------------------------------------- on each worker


def _shard(name: str) -> tuple[np.ndarray, np.ndarray]:
    """This worker's rows of dataset ``name``, streamed from Ray Data, as (X, y)."""
    import ray.train

    xs, ys = [], []
    for batch in ray.train.get_dataset_shard(name).iter_batches(batch_format="pyarrow", batch_size=65536):
        if batch.num_rows == 0:
            continue
        features = [c for c in batch.column_names if c != LABEL]
        xs.append(np.column_stack([batch.column(c).to_numpy(zero_copy_only=False) for c in features]))
        ys.append(batch.column(LABEL).to_numpy(zero_copy_only=False))
    if not xs:
        raise RaymlopsError(f"worker {ray.train.get_context().get_world_rank()}: no rows in {name}")
    return np.concatenate(xs).astype(np.float64), np.concatenate(ys).astype(np.float64)


class _Progress:
    """Reports, checkpoints and stop requests, the same at every rank (reports are collective)."""

    def __init__(self, spec: EngineSpec, board: Any, trial_id: str | None, resumed_from: int, rows: int) -> None:
        self.spec, self.board, self.trial_id = spec, board, trial_id
        self.resumed_from, self.rows = resumed_from, rows
        self.history: dict[int, float] = {}
        self.stopped = False  # by ASHA (through the stop board)

    def value(self, engine_value: float) -> float:
        return 1.0 - engine_value if self.spec.flip else engine_value

    def metrics(self, round_: int) -> dict[str, Any]:
        return {self.spec.metric: self.history[round_], "round": round_, "resumed_from": self.resumed_from}

    def after_round(self, round_: int, engine_value: float, checkpoint: Any) -> bool:
        """Report round ``round_`` (with a checkpoint every ``checkpoint_every`` rounds); True: stop."""
        import ray.train

        self.history[round_] = self.value(engine_value)
        if round_ % self.spec.checkpoint_every == 0 and round_ < self.spec.num_boost_round:
            with checkpoint() as ck:
                ray.train.report(self.metrics(round_), checkpoint=ck)
        elif round_ % self.spec.report_every == 0:
            ray.train.report(self.metrics(round_))
        else:
            return False
        return self._stop_requested()

    def _stop_requested(self) -> bool:
        if self.board is None:
            return False
        import ray
        import ray.train
        from ray.train.collective import broadcast_from_rank_zero

        flag = None
        if ray.train.get_context().get_world_rank() == 0:
            flag = bool(ray.get(self.board.should_stop.remote(self.trial_id)))
        self.stopped = bool(broadcast_from_rank_zero(flag))
        return self.stopped

    def final(self, rounds: int, rounds_used: int, checkpoint: Any) -> None:
        import ray
        import ray.train

        value = self.history.get(rounds_used, self.history.get(rounds, float("nan")))
        metrics = {self.spec.metric: value, "round": rounds, "rounds_used": rounds_used, "final": 1,
                   "resumed_from": self.resumed_from, "rows": self.rows, "stopped": int(self.stopped),
                   "node_id": ray.get_runtime_context().get_node_id()}
        with checkpoint() as ck:
            ray.train.report(metrics, checkpoint=ck)


def _engine_params(spec: EngineSpec, params: dict[str, Any]) -> dict[str, Any]:
    threads = max(1, int(spec.cpus_per_worker))
    multi = spec.task == "classification" and spec.num_classes > 2
    if spec.framework == "xgboost":
        objective = ("multi:softprob" if multi else "binary:logistic") if spec.task == "classification" \
            else "reg:squarederror"
        out = {"tree_method": "hist", **params, "objective": objective, "eval_metric": [spec.engine_metric],
               "seed": spec.seed, "nthread": threads}
    else:
        objective = ("multiclass" if multi else "binary") if spec.task == "classification" else "regression"
        out = {"deterministic": True, "force_row_wise": True, "verbose": -1, **params, "objective": objective,
               "metric": [spec.engine_metric], "seed": spec.seed, "num_threads": threads}
    if multi:
        out["num_class"] = spec.num_classes
    return out


def _fit_xgboost(spec: EngineSpec, params: dict[str, Any], data: tuple[np.ndarray, ...], start: bytes | None,
                 progress: _Progress) -> tuple[Any, int]:
    import xgboost
    from ray.train.xgboost import RayTrainReportCallback

    class RoundReport(RayTrainReportCallback):
        """Ray Train's XGBoost callback (its rank-0 checkpoint writer), reporting raymlops' way."""

        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            value = float(evals_log["valid"][spec.engine_metric][-1])
            return progress.after_round(model.num_boosted_rounds(), value, lambda: self._get_checkpoint(model=model))

        def after_training(self, model: Any) -> Any:
            return model

    Xtr, ytr, Xva, yva = data
    threads = max(1, int(spec.cpus_per_worker))
    dtrain = xgboost.QuantileDMatrix(Xtr, label=ytr, nthread=threads)
    dvalid = xgboost.QuantileDMatrix(Xva, label=yva, ref=dtrain, nthread=threads)
    init = None
    if start is not None:
        init = xgboost.Booster()
        init.load_model(bytearray(start))
    done = init.num_boosted_rounds() if init is not None else 0
    callback = RoundReport(filename=NATIVE_FILES["xgboost"])
    booster = xgboost.train(
        _engine_params(spec, params), dtrain, num_boost_round=max(spec.num_boost_round - done, 0),
        evals=[(dvalid, "valid")], xgb_model=init, early_stopping_rounds=spec.early_stopping_rounds,
        callbacks=[callback], verbose_eval=False,
    )
    rounds = booster.num_boosted_rounds()
    best = booster.attr("best_iteration")
    used = int(best) + 1 if spec.early_stopping_rounds and best is not None else rounds
    progress.final(rounds, used, lambda: callback._get_checkpoint(model=booster))
    return booster, used


def _fit_lightgbm(spec: EngineSpec, params: dict[str, Any], data: tuple[np.ndarray, ...], start: bytes | None,
                  progress: _Progress) -> tuple[Any, int]:
    import lightgbm
    from ray.train.lightgbm import RayTrainReportCallback, get_network_params

    class RoundReport(RayTrainReportCallback):
        """Ray Train's LightGBM callback (its rank-0 checkpoint writer), reporting raymlops' way."""

        def __call__(self, env: Any) -> None:
            value = next(float(r[2]) for r in env.evaluation_result_list if r[1] == spec.engine_metric)
            trained[0] = env.model.current_iteration()
            if progress.after_round(env.model.current_iteration(), value,
                                    lambda: self._get_checkpoint(model=env.model)):
                raise lightgbm.callback.EarlyStopException(env.iteration, env.evaluation_result_list)

    Xtr, ytr, Xva, yva = data
    init = lightgbm.Booster(model_str=start.decode("utf-8")) if start is not None else None
    done = init.current_iteration() if init is not None else 0
    trained = [done]  # the rounds trained (early stopping leaves the booster at its best one)
    engine = {**_engine_params(spec, params), "tree_learner": "data_parallel", "pre_partition": True,
              **get_network_params()}
    dtrain = lightgbm.Dataset(Xtr, label=ytr, params=engine)
    dvalid = lightgbm.Dataset(Xva, label=yva, reference=dtrain)
    callbacks: list[Any] = [RoundReport(filename=NATIVE_FILES["lightgbm"])]
    if spec.early_stopping_rounds:
        callbacks.append(lightgbm.early_stopping(spec.early_stopping_rounds, first_metric_only=True, verbose=False))
    booster = lightgbm.train(engine, dtrain, num_boost_round=max(spec.num_boost_round - done, 0),
                             valid_sets=[dvalid], valid_names=["valid"], init_model=init, callbacks=callbacks)
    rounds = max(trained[0], booster.current_iteration())
    used = booster.best_iteration if spec.early_stopping_rounds and booster.best_iteration > 0 else rounds
    progress.final(rounds, used, lambda: callbacks[0]._get_checkpoint(model=booster))
    return booster, used


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Ray Train's per-worker training function: this worker's shard, the engine, the reports."""
    import ray.train

    spec: EngineSpec = config["spec"]
    rank = ray.train.get_context().get_world_rank()
    Xtr, ytr = _shard(f"train_{rank}")
    Xva, yva = _shard(f"valid_{rank}")
    start: bytes | None = None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            start = Path(d, NATIVE_FILES[spec.framework]).read_bytes()
    fit = _fit_xgboost if spec.framework == "xgboost" else _fit_lightgbm
    resumed_from = 0
    if start is not None:
        resumed_from = booster_rounds(spec.framework, load_booster(spec.framework, start))
    progress = _Progress(spec, config.get("board"), config.get("trial_id"), resumed_from, len(ytr))
    fit(spec, dict(config["params"]), (Xtr, ytr, Xva, yva), start, progress)


# --------------------------------------------------------------------------- on the driver
