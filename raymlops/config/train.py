"""``train:``: the Tune search over candidates, or Ray Train's boosting engines (``strategy: distributed``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from raymlops.config.base import Strict, is_number

# -- training ----------------------------------------------------------------------------------
CLASSIFICATION_METRICS = ("accuracy", "f1", "log_loss", "precision", "recall", "roc_auc")
REGRESSION_METRICS = ("mae", "r2", "rmse")
TASK_METRICS = {"classification": CLASSIFICATION_METRICS, "regression": REGRESSION_METRICS}
LOWER_IS_BETTER = frozenset({"log_loss", "mae", "rmse"})
SEARCH_KINDS = ("grid", "choice", "uniform", "loguniform", "randint", "fixed")
#: metrics the boosting engines compute over every worker's validation rows (strategy: distributed)
DISTRIBUTED_METRICS = ("accuracy", "log_loss", "roc_auc", "mae", "rmse")
#: engine parameters raymlops sets itself (strategy: distributed)
_ENGINE_OWNED = frozenset({
    "objective", "num_class", "eval_metric", "metric", "num_boost_round", "num_iterations", "n_estimators",
    "early_stopping_rounds", "early_stopping_round", "seed", "random_state", "num_machines", "machines",
    "local_listen_port", "tree_learner", "pre_partition", "nthread", "num_threads", "n_jobs",
    # LightGBM's aliases of those (one given in params would win over what raymlops sets)
    "num_iteration", "n_iter", "num_tree", "num_trees", "num_round", "num_rounds", "nrounds", "max_iter",
    "early_stopping", "n_iter_no_change", "objective_type", "app", "application", "loss", "num_classes",
    "metrics", "metric_types", "random_seed", "num_thread", "nthreads", "tree", "tree_type", "tree_learner_type",
    "workers", "nodes", "local_port", "port", "num_machine", "is_pre_partition",
})


def _param_spec(value: Any) -> Any:
    """Check one entry of a candidate's search space; it is kept as written.

    A list is a grid; ``{grid: [...]}`` and ``{choice: [...]}`` list values; ``{uniform: [low,
    high]}``, ``{loguniform: [low, high]}`` (0 < low) and ``{randint: [low, high]}`` (integers
    low <= k < high, as ``tune.randint``) are sampled; ``{fixed: value}`` fixes a value that would
    otherwise read as one of these; anything else (a scalar, a mapping of other keys) is fixed.
    """
    if isinstance(value, list):
        if not value:
            raise ValueError("expected at least one value in the grid")
        return value
    if not (isinstance(value, dict) and value and all(isinstance(k, str) for k in value)):
        return value
    kinds = [k for k in value if k in SEARCH_KINDS]
    if not kinds and len(value) > 1:
        return value  # a fixed mapping, e.g. class_weight: {"a": 1, "b": 2}
    if len(value) != 1 or not kinds:
        raise ValueError(f"expected exactly one key of {', '.join(SEARCH_KINDS)} (a search space)")
    kind, arg = next(iter(value.items()))
    if kind in ("grid", "choice") and not (isinstance(arg, list) and arg):
        raise ValueError(f"expected {kind}: a non-empty list of values")
    if kind in ("uniform", "loguniform", "randint"):
        pair = isinstance(arg, list) and len(arg) == 2 and all(is_number(a) for a in arg) and arg[0] < arg[1]
        if kind == "uniform" and not pair:
            raise ValueError("expected uniform: [low, high] with low < high")
        if kind == "loguniform" and not (pair and arg[0] > 0):
            raise ValueError("expected loguniform: [low, high] with 0 < low < high")
        if kind == "randint" and not (pair and all(isinstance(a, int) for a in arg)):
            raise ValueError("expected randint: [low, high], integers with low < high (high excluded)")
    return value


class Candidate(Strict):
    """One estimator and its search space: a list or ``{grid|choice: [...]}`` is searched,
    ``{uniform|loguniform|randint: [low, high]}`` is sampled ``train.num_samples`` times, a scalar
    is fixed. ``incremental``: train epoch by epoch (``partial_fit`` or ``warm_start``), reporting
    each epoch so ASHA can stop it early; ``None`` detects it from the estimator."""

    estimator: str = Field(description="import path, e.g. sklearn.linear_model.LogisticRegression")
    params: dict[str, Annotated[Any, AfterValidator(_param_spec)]] = Field(default_factory=dict)
    scale: bool = False
    incremental: bool | None = None

    @field_validator("estimator")
    @classmethod
    def _dotted(cls, v: str) -> str:
        if "." not in v or any(not p.isidentifier() for p in v.split(".")):
            raise ValueError("expected an import path such as 'sklearn.linear_model.LogisticRegression'")
        return v


class SchedulerConfig(Strict):
    """``fifo`` runs every trial to its end; ``asha`` stops weak incremental trials early."""

    type: Literal["fifo", "asha"] = "fifo"
    max_t: int | None = Field(None, ge=1, description="most epochs a trial runs; default train.epochs")
    grace_period: int = Field(1, ge=1)
    reduction_factor: float = Field(2.0, gt=1.0)

    @field_validator("grace_period")
    @classmethod
    def _grace_within_max_t(cls, v: int, info: ValidationInfo) -> int:
        max_t = info.data.get("max_t")
        if max_t is not None and v > max_t:
            raise ValueError(f"expected grace_period <= max_t ({max_t})")
        return v


class TrainConfig(Strict):
    """How models are trained: a Ray Tune search over the candidates (``strategy: tune``), or
    gradient-boosted trees on Ray Train's XGBoost / LightGBM trainers over Ray Data shards of the
    snapshot (``strategy: distributed``: ``framework``, ``params``, ``num_boost_round``, …; no
    candidates), tuned by Ray Tune when ``params`` holds a search space.

    ``task`` defaults to classification, or regression when ``metric`` is a regression metric (r2,
    mae, rmse). ``metric`` defaults to roc_auc (classification) or r2 (regression). ``mode`` (max or min) is
    derived from the metric's direction (a property); a config may still write it, and then it must
    agree. Validation is k-fold when ``cv_folds`` is set, else a seeded holdout of
    ``validation_fraction`` of the training rows."""

    task: Literal["classification", "regression"] = "classification"
    strategy: Literal["tune", "distributed"] = "tune"
    metric: Literal["accuracy", "f1", "log_loss", "precision", "recall", "roc_auc", "mae", "r2", "rmse"] = "roc_auc"
    mode_written: Literal["max", "min"] | None = Field(
        None, alias="mode", exclude=True, description="optional; must be the metric's direction (see .mode)")
    validation_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    positive_label: bool | int | float | str | None = Field(
        None, description="a binary classifier's positive class, for precision, recall and f1 (trials, holdout, "
                          "gate); left out: the later class in sorted order (1, True, 'yes'; but 'ok' of 'fraud')")
    cv_folds: int | None = Field(None, ge=2, le=100)
    num_samples: int = Field(1, ge=1, le=100_000, description="draws per sampled candidate (uniform, …)")
    max_concurrent_trials: int = Field(2, ge=1)
    cpus_per_trial: float = Field(1.0, gt=0.0)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    epochs: int = Field(10, ge=1, le=100_000, description="epochs of incremental learners")
    max_failures: int = Field(1, ge=0, description="retries of a trial that dies")
    num_workers: int = Field(2, ge=1, description="distributed: Ray Train workers, one shard each")
    # -- strategy: distributed (Ray Train XGBoostTrainer / LightGBMTrainer) --
    framework: Literal["xgboost", "lightgbm"] | None = Field(
        None, validate_default=True, description="distributed: the boosting engine")
    cpus_per_worker: float = Field(1.0, gt=0.0, description="distributed: CPUs of each Ray Train worker")
    num_boost_round: int = Field(100, ge=1, le=1_000_000, description="distributed: most boosting rounds")
    early_stopping_rounds: int | None = Field(
        None, ge=1, description="distributed: stop after this many rounds without gain on the validation split")
    checkpoint_every: int = Field(10, ge=1, description="distributed: rounds between checkpoints (resume point)")
    params: dict[str, Annotated[Any, AfterValidator(_param_spec)]] = Field(
        default_factory=dict, description="distributed: the engine's parameters, fixed or searched")
    candidates: list[Candidate]

    @model_validator(mode="before")
    @classmethod
    def _defaults_from_task(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            distributed = data.get("strategy") == "distributed"
            if "task" not in data and data.get("metric") in REGRESSION_METRICS:
                data["task"] = "regression"  # r2, mae and rmse say it: a config need not say it twice
            if "metric" not in data:
                regression = "rmse" if distributed else "r2"  # the engines have no r2 of their own
                data["metric"] = regression if data.get("task") == "regression" else "roc_auc"
            if distributed:
                data.setdefault("candidates", [])
        return data

    @field_validator("metric")
    @classmethod
    def _metric_of_task(cls, v: str, info: ValidationInfo) -> str:
        task = info.data.get("task")
        if task in TASK_METRICS and v not in TASK_METRICS[task]:
            other = "regression" if task == "classification" else "classification"
            raise ValueError(f"expected a {task} metric, one of {', '.join(TASK_METRICS[task])} "
                             f"(for a {other}, set train.task: {other})")
        return v

    @field_validator("mode_written")
    @classmethod
    def _mode_of_metric(cls, v: str | None, info: ValidationInfo) -> str | None:
        metric = info.data.get("metric")
        if v is not None and metric is not None:
            want = "min" if metric in LOWER_IS_BETTER else "max"
            if v != want:
                raise ValueError(f"expected {want!r} for metric {metric!r} ({'lower' if want == 'min' else 'higher'}"
                                 " is better; leave mode out to get it)")
        return v

    @field_validator("metric")
    @classmethod
    def _metric_of_engine(cls, v: str, info: ValidationInfo) -> str:
        if info.data.get("strategy") == "distributed" and v not in DISTRIBUTED_METRICS:
            raise ValueError(f"expected one of {', '.join(DISTRIBUTED_METRICS)} with strategy 'distributed' (the "
                             "metrics XGBoost and LightGBM compute across workers)")
        return v

    @field_validator("positive_label")
    @classmethod
    def _positive_of_a_classifier(cls, v: Any, info: ValidationInfo) -> Any:
        if v is not None and info.data.get("task") == "regression":
            raise ValueError("expected no positive_label for a regression (it names a binary classifier's class)")
        return v

    @field_validator("cv_folds")
    @classmethod
    def _folds_for_tune(cls, v: int | None, info: ValidationInfo) -> int | None:
        strategy = info.data.get("strategy")
        if v is not None and strategy == "distributed":
            raise ValueError(f"expected no cv_folds with strategy {strategy!r} (it validates on a holdout)")
        return v

    @field_validator("scheduler", mode="before")
    @classmethod
    def _scheduler_shorthand(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = {"type": v}
        return v

    @field_validator("framework")
    @classmethod
    def _framework_for_distributed(cls, v: str | None, info: ValidationInfo) -> str | None:
        strategy = info.data.get("strategy")
        if strategy == "distributed" and v is None:
            raise ValueError("expected xgboost or lightgbm with strategy 'distributed'")
        if strategy != "distributed" and v is not None:
            raise ValueError(f"expected no framework with strategy {strategy!r} (it is for strategy 'distributed')")
        return v

    @field_validator("params")
    @classmethod
    def _params_for_distributed(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        strategy = info.data.get("strategy")
        if v and strategy != "distributed":
            raise ValueError(f"expected no params with strategy {strategy!r}: put them in train.candidates[i].params")
        reserved = sorted(set(v) & _ENGINE_OWNED)
        if reserved:
            raise ValueError(f"expected no {reserved[0]!r} in params: raymlops sets it (from train.task, train.metric, "
                             "train.num_boost_round, train.early_stopping_rounds, seed or num_workers)")
        return v

    @field_validator("candidates")
    @classmethod
    def _candidates_of_strategy(cls, v: list[Candidate], info: ValidationInfo) -> list[Candidate]:
        strategy = info.data.get("strategy")
        if strategy == "distributed":
            if v:
                raise ValueError("expected no candidates with strategy 'distributed': the model is train.framework, "
                                 "its parameters and their search space go in train.params")
            return v
        if not v:
            raise ValueError("expected at least one candidate")
        return v

    @property
    def mode(self) -> Literal["max", "min"]:
        """``min`` for a metric where lower is better (log_loss, mae, rmse), else ``max``."""
        return "min" if self.metric in LOWER_IS_BETTER else "max"

    @property
    def max_epochs(self) -> int:
        """Epochs an incremental trial may run: ``scheduler.max_t`` when set, else ``epochs``."""
        return self.scheduler.max_t or self.epochs
