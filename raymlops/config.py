"""Typed, validated pipeline configs loaded from YAML.

A config is validated once, at load. Any problem raises :class:`ConfigError` whose message is
one line naming the file, the key path, what was expected and what was found::

    configs/bad.yaml: train.candidates[0].params: expected a mapping, found 'C=1' (str)
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic import ValidationError as PydanticValidationError

from raymlops.exceptions import ConfigError

_RULE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|>|<)\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*$")
GATE_METRICS = {"roc_auc", "accuracy", "f1", "log_loss", "precision", "recall"}
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class _Strict(BaseModel):
    # strict: `port: yes` or `port: "80"` is an error, not port 1 / 80 (YAML gives native types)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


_FUNC_REF = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")


def _expression(v: str) -> str:
    from raymlops.data.expr import parse

    try:
        parse(v)
    except ValueError as exc:  # ValidationError: names what is not allowed
        raise ValueError("expected an allowed expression: " + str(exc).removeprefix(f"expression {v!r}: ")) from None
    return v


ExpressionText = Annotated[str, AfterValidator(_expression)]


class TransformConfig(_Strict):
    """One entry of ``data.transforms``; exactly one kind of transform is set per entry.

    Kinds (one optional field each; :mod:`raymlops.data.transforms` applies them in order):
    ``map_batches: "module:function"`` — a function that takes and returns a pandas DataFrame batch;
    ``select: [a, b]`` — keep these columns, in this order; ``rename: {old: new}``;
    ``cast: {column: int64}`` — to an Arrow type; ``filter: "age >= 18"`` — keep the rows where the
    expression is true; ``derive: {ratio: "a / b"}`` — add (or replace) columns, in order.
    Expressions are parsed safely (:mod:`raymlops.data.expr`), never evaluated as Python.
    """

    map_batches: str | None = Field(
        None, description="'module:function' taking and returning a pandas DataFrame batch"
    )
    select: list[str] | None = Field(None, min_length=1, description="keep only these columns, in this order")
    rename: dict[str, str] | None = Field(None, min_length=1, description="old column name -> new name")
    cast: dict[str, str] | None = Field(None, min_length=1, description="column -> Arrow type: int64, double, ...")
    filter: ExpressionText | None = Field(None, description="keep the rows where this expression is true")
    derive: dict[str, ExpressionText] | None = Field(None, min_length=1, description="new column -> expression")

    @field_validator("cast")
    @classmethod
    def _arrow_types(cls, v: dict[str, str] | None) -> dict[str, str] | None:
        import pyarrow as pa

        for column, name in (v or {}).items():
            try:
                pa.type_for_alias(name)
            except (ValueError, KeyError):
                raise ValueError(f"expected an Arrow type name for {column!r} (int64, int32, double, float, "
                                 f"string, bool, date32, timestamp[ms], ...), found {name!r}") from None
        return v

    @field_validator("map_batches")
    @classmethod
    def _function_ref(cls, v: str | None) -> str | None:
        if v is not None and not _FUNC_REF.match(v):
            raise ValueError("expected 'module:function', e.g. 'mypkg.cleaning:drop_outliers'")
        return v

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> TransformConfig:
        kinds = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(kinds) != 1:
            allowed = ", ".join(type(self).model_fields)
            found = ", ".join(kinds) if kinds else "none"
            raise ValueError(f"expected exactly one transform kind ({allowed}) per entry, found {found}")
        return self

    @property
    def kind(self) -> str:
        """The name of the one field that is set (``map_batches`` …)."""
        return next(name for name in type(self).model_fields if getattr(self, name) is not None)


class ColumnSpec(_Strict):
    """``data.schema.<column>``: what the column must hold; overrides what was inferred. Each set
    field is checked on every row (``type`` on the dataset) in the validate step."""

    type: str | None = Field(None, description="Arrow type name: int64, double, string, bool, ...")
    nullable: bool | None = None
    min: float | None = None
    max: float | None = None
    domain: list[str | int | bool] | None = Field(None, min_length=1, description="the allowed values")

    @model_validator(mode="after")
    def _range_order(self) -> ColumnSpec:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"expected min <= max, found min {self.min} > max {self.max}")
        return self


class RuleConfig(_Strict):
    """A named business rule: rows where ``expr`` is not true violate it. In YAML a plain string
    is a rule named by its own text."""

    name: str = Field(min_length=1)
    expr: ExpressionText


class DriftConfig(_Strict):
    """``data.drift``: the statistical check of each new snapshot against the reference. Defaults
    follow Evidently's presets (see :mod:`raymlops.stats.check`)."""

    numeric_test: Literal["auto", "ks", "wasserstein", "psi"] = "auto"
    categorical_test: Literal["auto", "chi2", "jensenshannon", "psi"] = "auto"
    small_sample: int = Field(1000, ge=0, description="auto: p-value tests up to this many rows, distances above")
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    correction: Literal["bonferroni", "holm", "bh", "none"] = "bonferroni"
    wasserstein: float = Field(0.1, gt=0.0)
    jensenshannon: float = Field(0.1, gt=0.0)
    psi: float = Field(0.1, gt=0.0)
    dataset_rule: Literal["any", "share"] = Field(
        "any", description="dataset drift: 'any' column drifted after the correction (family-wise), or 'share': "
        "at least drift_share of the columns drifted at the uncorrected level (see raymlops.stats.verdict)")
    drift_share: float = Field(0.5, gt=0.0, le=1.0, description="dataset_rule 'share': at least this share of columns")
    columns: list[str] | None = None


class DataConfig(_Strict):
    """Where the rows come from, how they are checked, split and compared with the reference."""

    # `schema` is the YAML key (a field of that name would shadow BaseModel.schema); dumps use it too
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, serialize_by_alias=True,
                              validate_by_name=True, validate_by_alias=True)

    source: str = Field(description="URI: a path, s3://…, hdfs://…, or sklearn://<dataset>")
    format: Literal["auto", "csv", "parquet", "json"] = "auto"
    target: str
    features: list[str] | None = None
    holdout_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    transforms: list[TransformConfig] = Field(
        default_factory=list, description="applied in order with Ray Data in the ingest step, before the schema check"
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="pyarrow.fs options (endpoint_override, region, ...); '${NAME}' reads the "
        "environment; credential-like values are kept secret (never dumped, logged or stored)")
    split_key: str | None = Field(None, description="hash this column for the holdout split, not the row index")
    expected_schema: dict[str, ColumnSpec] = Field(default_factory=dict, alias="schema")
    rules: list[RuleConfig] = Field(default_factory=list, description="'age >= 18' or {name: adult, expr: ...}")
    on_invalid: Literal["fail", "quarantine"] = "fail"
    reference: str | None = Field(None, description="snapshot to compare with (default: the champion's training data)")
    drift_gate: Literal["fail", "warn", "off"] = "warn"
    drift: DriftConfig = Field(default_factory=DriftConfig)

    @field_validator("options")
    @classmethod
    def _options(cls, v: dict[str, Any]) -> dict[str, Any]:
        from pydantic import SecretStr

        from raymlops.data.sources import is_secret_option

        out: dict[str, Any] = {}
        for key, value in v.items():
            if isinstance(value, SecretStr):
                out[key] = value
                continue
            if not isinstance(value, str | int | float | bool):
                raise ValueError(f"expected a string, number or true/false for option {key!r}, found "
                                 f"{type(value).__name__}")
            secret = is_secret_option(key)
            out[key] = SecretStr(value) if secret and isinstance(value, str) else value
        return out

    @field_validator("rules", mode="before")
    @classmethod
    def _rule_strings(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"name": r, "expr": r} if isinstance(r, str) else r for r in v]
        return v

    @field_validator("rules")
    @classmethod
    def _unique_rule_names(cls, v: list[RuleConfig]) -> list[RuleConfig]:
        names = [r.name for r in v]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ValueError(f"expected unique rule names, found {dup!r} twice")
        return v

    @field_validator("source")
    @classmethod
    def _source_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("expected a non-empty URI")
        if v.startswith("callable:") and not _FUNC_REF.match(v.removeprefix("callable:").strip()):
            raise ValueError("expected 'callable:module:function', e.g. 'callable:mypkg.data:load'")
        return v


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
})


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


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
        pair = isinstance(arg, list) and len(arg) == 2 and all(_is_number(a) for a in arg) and arg[0] < arg[1]
        if kind == "uniform" and not pair:
            raise ValueError("expected uniform: [low, high] with low < high")
        if kind == "loguniform" and not (pair and arg[0] > 0):
            raise ValueError("expected loguniform: [low, high] with 0 < low < high")
        if kind == "randint" and not (pair and all(isinstance(a, int) for a in arg)):
            raise ValueError("expected randint: [low, high], integers with low < high (high excluded)")
    return value


def is_search_space(value: Any) -> bool:
    """True for a parameter value that is searched over rather than fixed."""
    if isinstance(value, list):
        return True
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in SEARCH_KINDS[:-1]


class Candidate(_Strict):
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


class SchedulerConfig(_Strict):
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


class TrainConfig(_Strict):
    """How models are trained: a Ray Tune search over the candidates (``strategy: tune``), one
    incremental learner trained data-parallel over Ray Data shards (``strategy: data_parallel``), or
    gradient-boosted trees on Ray Train's XGBoost / LightGBM trainers over Ray Data shards of the
    snapshot (``strategy: distributed``: ``framework``, ``params``, ``num_boost_round``, …; no
    candidates), tuned by Ray Tune when ``params`` holds a search space.

    ``metric`` defaults to roc_auc (classification) or r2 (regression), ``mode`` to the metric's
    direction. Validation is k-fold when ``cv_folds`` is set, else a seeded holdout of
    ``validation_fraction`` of the training rows."""

    task: Literal["classification", "regression"] = "classification"
    strategy: Literal["tune", "data_parallel", "distributed"] = "tune"
    metric: Literal["accuracy", "f1", "log_loss", "precision", "recall", "roc_auc", "mae", "r2", "rmse"] = "roc_auc"
    mode: Literal["max", "min"] = "max"
    validation_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    cv_folds: int | None = Field(None, ge=2, le=100)
    num_samples: int = Field(1, ge=1, le=100_000, description="draws per sampled candidate (uniform, …)")
    max_concurrent_trials: int = Field(2, ge=1)
    cpus_per_trial: float = Field(1.0, gt=0.0)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    epochs: int = Field(10, ge=1, le=100_000, description="epochs of incremental learners")
    max_failures: int = Field(1, ge=0, description="retries of a trial that dies")
    num_workers: int = Field(2, ge=1, description="data_parallel, distributed: workers, one shard each")
    batch_size: int = Field(4096, ge=1, description="data_parallel: rows per partial_fit call")
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
            if "metric" not in data:
                regression = "rmse" if distributed else "r2"  # the engines have no r2 of their own
                data["metric"] = regression if data.get("task") == "regression" else "roc_auc"
            if distributed:
                data.setdefault("candidates", [])
            if "mode" not in data and isinstance(data["metric"], str):
                data["mode"] = "min" if data["metric"] in LOWER_IS_BETTER else "max"
        return data

    @field_validator("metric")
    @classmethod
    def _metric_of_task(cls, v: str, info: ValidationInfo) -> str:
        task = info.data.get("task")
        if task in TASK_METRICS and v not in TASK_METRICS[task]:
            raise ValueError(f"expected a {task} metric, one of {', '.join(TASK_METRICS[task])}")
        return v

    @field_validator("mode")
    @classmethod
    def _mode_of_metric(cls, v: str, info: ValidationInfo) -> str:
        metric = info.data.get("metric")
        if metric is not None:
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

    @field_validator("cv_folds")
    @classmethod
    def _folds_for_tune(cls, v: int | None, info: ValidationInfo) -> int | None:
        strategy = info.data.get("strategy")
        if v is not None and strategy in ("data_parallel", "distributed"):
            raise ValueError(f"expected no cv_folds with strategy {strategy!r} (it validates on a holdout)")
        return v

    @field_validator("scheduler", mode="before")
    @classmethod
    def _scheduler_shorthand(cls, v: Any, info: ValidationInfo) -> Any:
        if isinstance(v, str):
            v = {"type": v}
        kind = v.get("type") if isinstance(v, dict) else getattr(v, "type", None)
        if kind == "asha" and info.data.get("strategy") == "data_parallel":
            raise ValueError("expected fifo with strategy 'data_parallel' (one run, nothing to stop early)")
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
    def _one_fixed_candidate_for_data_parallel(cls, v: list[Candidate], info: ValidationInfo) -> list[Candidate]:
        strategy = info.data.get("strategy")
        if strategy == "distributed":
            if v:
                raise ValueError("expected no candidates with strategy 'distributed': the model is train.framework, "
                                 "its parameters and their search space go in train.params")
            return v
        if not v:
            raise ValueError("expected at least one candidate")
        if strategy != "data_parallel":
            return v
        if len(v) != 1:
            raise ValueError(f"expected exactly one candidate for strategy 'data_parallel', found {len(v)}")
        searched = [k for k, value in v[0].params.items() if is_search_space(value)]
        if searched:
            raise ValueError(f"expected fixed parameters for strategy 'data_parallel', found a search space in "
                             f"candidates[0].params.{searched[0]}")
        return v

    @property
    def max_epochs(self) -> int:
        """Epochs an incremental trial may run: ``scheduler.max_t`` when set, else ``epochs``."""
        return self.scheduler.max_t or self.epochs


@dataclass(frozen=True)
class ChampionRule:
    """The candidate must beat the champion's ``metric`` by at least both changes (in the metric's
    better direction), as MLflow's MetricThreshold and TFX's GenericChangeThreshold."""

    metric: str
    min_absolute_change: float = 0.0
    min_relative_change: float = 0.0


@dataclass(frozen=True)
class SliceRule:
    """Every slice's ``metric`` must be at least (``bound`` "min") or at most ("max") ``threshold``."""

    metric: str
    bound: Literal["min", "max"]
    threshold: float


_CHAMPION_KEYS = ("min_absolute_change", "min_relative_change")
_SLICE_KEYS = ("slice_min", "slice_max")


def _rule_metric(rule: Any, slices: Any) -> str:
    """The metric a gate rule names, after checking the rule's form."""
    if isinstance(rule, str):
        m = _RULE.match(rule)
        if not m:
            raise ValueError(f"expected rules like 'roc_auc >= 0.9', found {rule!r}")
        return m.group(1)
    if not isinstance(rule, dict):
        raise ValueError(f"expected a rule like 'roc_auc >= 0.9' or a mapping with 'metric', found {rule!r}")
    unknown = sorted(set(map(str, rule)) - {"metric", *_CHAMPION_KEYS, *_SLICE_KEYS})
    if unknown:
        raise ValueError(f"expected rule keys among metric, {', '.join(_CHAMPION_KEYS + _SLICE_KEYS)}, "
                         f"found {unknown[0]!r} in {rule!r}")
    metric = rule.get("metric")
    if not isinstance(metric, str):
        raise ValueError(f"expected a metric name under 'metric', found {rule!r}")
    for key in _CHAMPION_KEYS + _SLICE_KEYS:
        if key in rule and not _is_number(rule[key]):
            raise ValueError(f"expected a number for {key}, found {rule!r}")
    for key in _CHAMPION_KEYS:
        if key in rule and rule[key] < 0:
            raise ValueError(f"expected {key} >= 0 (how much better than the champion), found {rule!r}")
    bounds = [k for k in _SLICE_KEYS if k in rule]
    if bounds:
        if len(bounds) > 1 or any(k in rule for k in _CHAMPION_KEYS):
            raise ValueError(f"expected one of slice_min, slice_max, or champion changes, not several, in {rule!r}")
        want = "slice_max" if metric in LOWER_IS_BETTER else "slice_min"
        if bounds[0] != want:
            bound = "a ceiling: lower is better" if want == "slice_max" else "a floor: higher is better"
            raise ValueError(f"expected {want} for {metric!r} ({bound}), found {rule!r}")
        if not slices:
            raise ValueError(f"expected gate.slices to be set for the slice rule {rule!r}")
    return metric


class GateConfig(_Strict):
    """The model-validation gate, applied to the holdout evaluation::

        slices: [sex]                  # columns whose values slice the holdout
        fairness_gap_max: 0.1          # largest gap between slices: positive rate / mean abs. error
        rules:
          - roc_auc >= 0.9                                                    # absolute
          - {metric: roc_auc, min_absolute_change: 0.0, min_relative_change: 0.0}  # vs the champion
          - {metric: accuracy, slice_min: 0.85}                               # every slice (slice_max for errors)

    A column with more than ``max_slices`` distinct values is cut into quantile bins (numbers) or
    keeps its most frequent values and an ``other`` slice. Slices with fewer than
    ``min_slice_rows`` rows are reported but not held to slice rules or the fairness gap."""

    slices: list[str] = Field(default_factory=list)
    max_slices: int = Field(10, ge=2, le=1000)
    min_slice_rows: int = Field(10, ge=1)
    fairness_gap_max: float | None = Field(None, ge=0.0)
    rules: list[Any] = Field(default_factory=list)

    @field_validator("fairness_gap_max")
    @classmethod
    def _fairness_needs_slices(cls, v: float | None, info: ValidationInfo) -> float | None:
        if v is not None and not info.data.get("slices"):
            raise ValueError("expected gate.slices to be set (the gap is between slices)")
        return v

    @field_validator("rules")
    @classmethod
    def _parse_rules(cls, v: list[Any], info: ValidationInfo) -> list[Any]:
        task = (info.context or {}).get("task")
        known = TASK_METRICS[task] if task in TASK_METRICS else CLASSIFICATION_METRICS + REGRESSION_METRICS
        for rule in v:
            metric = _rule_metric(rule, info.data.get("slices"))
            if metric not in known:
                raise ValueError(f"expected a metric in {sorted(known)}, found {metric!r} in {rule!r}")
        return v

    def parsed(self) -> list[tuple[str, str, float]]:
        """Absolute rules as ``(metric, operator, threshold)``."""
        out = []
        for rule in self.rules:
            if isinstance(rule, str):
                m = _RULE.match(rule)
                assert m is not None  # validated at load
                out.append((m.group(1), m.group(2), float(m.group(3))))
        return out

    def champion_rules(self) -> list[ChampionRule]:
        return [
            ChampionRule(
                r["metric"], float(r.get("min_absolute_change", 0.0)), float(r.get("min_relative_change", 0.0))
            )
            for r in self.rules
            if isinstance(r, dict) and not any(k in r for k in _SLICE_KEYS)
        ]

    def slice_rules(self) -> list[SliceRule]:
        out = []
        for r in self.rules:
            if isinstance(r, dict):
                for key in _SLICE_KEYS:
                    if key in r:
                        out.append(SliceRule(r["metric"], "min" if key == "slice_min" else "max", float(r[key])))
        return out


class AutoscalingConfig(_Strict):
    """``serve.autoscaling``: Ray Serve autoscaling of the model replicas (``min_replicas: 0``
    scales to zero when idle; the first request then waits for a cold start)."""

    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(2, ge=1)
    initial_replicas: int | None = Field(None, ge=0)
    target_ongoing_requests: float = Field(2.0, gt=0.0)
    upscale_delay_s: float = Field(0.0, ge=0.0)
    downscale_delay_s: float = Field(30.0, ge=0.0)
    downscale_to_zero_delay_s: float | None = Field(None, ge=0.0)
    metrics_interval_s: float = Field(1.0, gt=0.0)
    look_back_period_s: float = Field(2.0, gt=0.0)

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError(f"expected min_replicas <= max_replicas, found {self.min_replicas} > {self.max_replicas}")
        if self.initial_replicas is not None and not self.min_replicas <= self.initial_replicas <= self.max_replicas:
            raise ValueError("expected min_replicas <= initial_replicas <= max_replicas, "
                             f"found {self.initial_replicas}")
        return self


class ServeConfig(_Strict):
    enabled: bool = True
    name: str | None = Field(None, description="route prefix /<name>; defaults to the pipeline name")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    num_replicas: int = Field(1, ge=1)
    max_batch_size: int = Field(32, ge=1)
    batch_wait_timeout_s: float = Field(0.01, ge=0.0)
    max_rows_per_request: int = Field(1000, ge=1)
    # -- serving (raymlops.serve) --
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=64, description="larger request bodies get 413")
    max_ongoing_requests: int = Field(64, ge=1, description="per replica; at least max_batch_size")
    domain: Literal["any", "training_range"] = Field(
        "any", description="training_range: 422 for a value outside the training min/max (widened by domain_margin)")
    domain_margin: float = Field(0.0, ge=0.0, description="fraction of each feature's training range")
    autoscaling: AutoscalingConfig | None = Field(None, description="replaces num_replicas when set")
    high_throughput: bool | None = Field(
        None, description="Serve's HAProxy ingress. Unset (default): used wherever raymlops starts Ray itself, and "
        "wherever the cluster was started with it; true: required (a cluster without it is refused); false: Serve's "
        "Python proxy (see raymlops.serve.throughput)")
    monitor_queue_rows: int = Field(50_000, ge=1, description="per replica; rows beyond it are dropped and counted")
    monitor_flush_interval_s: float = Field(0.25, gt=0.0)
    monitor_budget: float = Field(
        0.5, gt=0.0, le=1.0, description="most of its time the monitor spends on one replica's rows; beyond it rows "
        "are dropped and counted (1: as fast as the monitor takes them). A safety valve: a replica's saturated "
        "throughput needs well under it")
    shadow_max_pending: int = Field(64, ge=1, description="per replica; shadow requests beyond it are dropped")
    metrics_port: int | None = Field(None, ge=1, le=65535, description="also expose /metrics on this loopback port")
    access_log: bool = Field(True, description="Serve's per-request log line (requests are counted in metrics anyway)")
    require_token: bool = Field(
        False, description="/feedback needs 'Authorization: Bearer <token>' on loopback too (always when host is not "
        "loopback)")
    token_env: str = Field("RAYMLOPS_FEEDBACK_TOKEN", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                           description="environment variable (where Ray runs) holding the /feedback bearer token")

    @field_validator("max_ongoing_requests")
    @classmethod
    def _room_for_a_batch(cls, v: int, info: ValidationInfo) -> int:
        batch = info.data.get("max_batch_size")
        if batch is not None and v < batch:
            raise ValueError(f"expected max_ongoing_requests >= max_batch_size ({batch}), or batches never fill")
        return v

    @field_validator("name")
    @classmethod
    def _route_name(cls, v: str | None) -> str | None:
        if v is not None and not _NAME.match(v):
            raise ValueError("expected lowercase letters, digits and '-' (a URL path segment)")
        return v


class BurnWindowConfig(_Strict):
    """One multi-window burn-rate alert (Google SRE workbook): both windows must burn faster."""

    long_s: float = Field(gt=0.0)
    short_s: float = Field(gt=0.0)
    burn_rate: float = Field(gt=0.0, description="error-budget consumption rate, 1 = exactly on budget")

    @model_validator(mode="after")
    def _short_within_long(self) -> BurnWindowConfig:
        if self.short_s > self.long_s:
            raise ValueError(f"expected short_s <= long_s, found {self.short_s} > {self.long_s}")
        return self


def _default_burn_windows() -> list[BurnWindowConfig]:
    return [BurnWindowConfig(long_s=3600.0, short_s=300.0, burn_rate=14.4),
            BurnWindowConfig(long_s=21600.0, short_s=1800.0, burn_rate=6.0)]


class MonitorSLOConfig(_Strict):
    """Service-level objectives of the served model, checked by the monitor."""

    availability_target: float = Field(0.999, gt=0.0, lt=1.0, description="share of requests without a 5xx")
    latency_ms: float | None = Field(None, gt=0.0, description="latency objective: requests faster than this")
    latency_target: float = Field(0.99, gt=0.0, lt=1.0, description="share of requests under latency_ms")
    burn_windows: list[BurnWindowConfig] = Field(default_factory=_default_burn_windows)
    bucket_s: float = Field(60.0, gt=0.0, description="time resolution of the SLO counters")
    min_requests: int = Field(10, ge=1, description="fewer requests in a window: no burn alert")


class CalibrationConfig(_Strict):
    """Isotonic calibration of the positive-class score (:class:`raymlops.stats.cbpe.Calibration`),
    with the holdout's realised metrics it was fitted beside."""

    format: str = "raymlops.calibration/1"
    method: Literal["isotonic", "identity"] = "isotonic"
    x: list[float] = Field(min_length=1)
    y: list[float] = Field(min_length=1)
    rows: int = Field(0, ge=0)
    positive_label: float | str | None = None
    reference: dict[str, float] = Field(default_factory=dict, description="holdout accuracy / roc_auc")

    @model_validator(mode="after")
    def _knots(self) -> CalibrationConfig:
        if len(self.x) != len(self.y):
            raise ValueError(f"expected as many x as y knots, found {len(self.x)} and {len(self.y)}")
        return self


class MonitorPerformanceConfig(_Strict):
    """Model quality from ground-truth labels posted later by request id."""

    task: Literal["classification", "regression"] = "classification"
    positive_label: float | str = 1.0
    label_store_size: int = Field(100_000, ge=1, description="predictions kept waiting for their label")
    window_labels: int = Field(1000, ge=1, description="labelled rows per performance window")
    baseline_labels: int = Field(500, ge=1, description="the first labelled rows set the baseline")
    min_labels: int = Field(50, ge=1, description="fewer labelled rows in a window or slice: no verdict")
    max_accuracy_drop: float = Field(0.05, gt=0.0, le=1.0)
    max_auc_drop: float = Field(0.05, gt=0.0, le=1.0)
    max_mae_increase: float = Field(0.2, gt=0.0, description="relative to the baseline MAE")
    early_label_ttl_s: float = Field(
        300.0, gt=0.0, description="a label whose prediction has not reached the monitor yet waits this long for it, "
        "then counts as expired")
    early_label_store_size: int = Field(
        100_000, ge=1, description="labels waiting for their prediction; beyond it the oldest is expired")
    # -- concept drift: change detectors on the per-row error of labelled rows (raymlops.stats.change) --
    change_detectors: list[Literal["adwin", "page_hinkley"]] = Field(
        default_factory=lambda: ["adwin", "page_hinkley"],  # type: ignore[arg-type]
        description="detectors on the error stream of labelled rows (1 - correct; regression: e / (e + "
        "baseline MAE) of the absolute error e), overall and per slice; [] is off")
    adwin_delta: float = Field(0.002, gt=0.0, lt=1.0, description="ADWIN confidence: smaller, fewer false alarms")
    page_hinkley_threshold: float = Field(50.0, gt=0.0, description="Page-Hinkley alarm threshold (lambda)")
    page_hinkley_delta: float = Field(0.005, ge=0.0, description="Page-Hinkley: change of the error tolerated")
    change_min_labels: int = Field(30, ge=1, description="labels a detector sees before it may alarm")
    # -- performance estimated before labels (CBPE, raymlops.stats.cbpe) --
    estimate: bool = Field(True, description="estimate accuracy and ROC AUC of served rows from their calibrated "
                           "probabilities (binary classifiers whose scores reach the monitor)")
    estimated_window_rows: int = Field(1000, ge=1, description="served rows per estimation window")
    max_estimated_accuracy_drop: float | None = Field(
        None, gt=0.0, le=1.0, description="estimated_performance alert below the holdout accuracy minus this "
        "(default: max_accuracy_drop)")
    calibration: CalibrationConfig | None = Field(
        None, description="the served model's probability calibration, fitted on its holdout (set from the "
        "registered model's lineage when the pipeline deploys it)")


class MonitorDifferentialConfig(_Strict):
    """Champion vs challenger on the same requests (shadow or canary)."""

    champion: str | None = Field(None, description="champion version; default: the first version seen")
    min_agreement: float = Field(0.9, ge=0.0, le=1.0)
    max_prediction_distance: float = Field(0.1, gt=0.0, le=1.0, description="Jensen-Shannon distance")
    max_slice_agreement_gap: float = Field(0.1, gt=0.0, le=1.0)
    min_pairs: int = Field(100, ge=1)
    pending_size: int = Field(10_000, ge=1, description="requests kept waiting for the other version")


class MonitorAlertsConfig(_Strict):
    log: bool = True
    audit: bool = True
    webhook_url: str | None = Field(None, description="POSTed a JSON alert; http(s)")
    cooldown_s: float = Field(300.0, ge=0.0, description="the same alert is not re-sent within this time")
    timeout_s: float = Field(2.0, gt=0.0)

    @field_validator("webhook_url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^\s/]+", v):
            raise ValueError("expected an http:// or https:// URL")
        return v


class MonitorConfig(_Strict):
    enabled: bool = True
    n_bins: int = Field(10, ge=2, le=100)
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    correction: Literal["bonferroni", "holm", "bh"] = "bonferroni"
    dataset_rule: Literal["any", "share"] = Field(
        "any", description="dataset drift: 'any' feature drifted after the correction (family-wise), or 'share': "
        "at least dataset_drift_share of the features drifted at the uncorrected level (see raymlops.stats.verdict)")
    dataset_drift_share: float = Field(0.5, gt=0.0, le=1.0, description="dataset_rule 'share': at least this share")
    discrete_max_values: int = Field(
        50, ge=0, description="offline checks: a numeric column of integers with at most this many distinct values is "
        "tested on its exact support (chi-square), not with KS; 0: never")
    sample_rate: float = Field(1.0, ge=0.0, le=1.0, description="share of served requests handed to the monitor")
    # -- streaming drift (raymlops.monitor) --
    fine_bins: int = Field(100, ge=2, le=1000, description="quantile bins for KS/Wasserstein; >= n_bins")
    categorical: list[str] = Field(default_factory=list, description="features compared as categories")
    max_categories: int = Field(50, ge=1)
    slice_columns: list[str] = Field(default_factory=list)
    max_slices: int = Field(20, ge=1, description="most frequent reference slices; the rest is 'other'")
    small_window_rows: int = Field(1000, ge=1, description="up to this many rows: KS / chi-square p-values")
    numeric_test: Literal["auto", "ks", "wasserstein", "psi", "js", "chi2"] = "auto"
    categorical_test: Literal["auto", "chi2", "js", "psi"] = "auto"
    wasserstein_threshold: float = Field(0.1, gt=0.0)
    js_threshold: float = Field(0.1, gt=0.0, le=1.0)
    psi_threshold: float = Field(0.1, gt=0.0)
    psi_bands: list[float] = Field(default_factory=lambda: [0.1, 0.2], min_length=2, max_length=2)
    min_rows: int = Field(30, ge=0, description="fewer rows in a window or slice: scores only, no verdict")
    window_rows: int | None = Field(1000, ge=1, description="tumbling window length in rows")
    window_s: float | None = Field(None, gt=0.0, description="tumbling window length in seconds")
    long_term_windows: int = Field(24, ge=1, description="the rolling long-term window spans this many windows")
    history: int = Field(50, ge=1, description="closed windows kept for status and metrics")
    max_missing_rate_increase: float = Field(0.05, gt=0.0, le=1.0)
    max_out_of_range_rate: float = Field(0.05, gt=0.0, le=1.0)
    max_unseen_rate: float = Field(0.01, gt=0.0, le=1.0)
    max_positive_rate_gap: float | None = Field(None, gt=0.0, le=1.0, description="bias: across slices")
    metrics_port: int | None = Field(None, ge=1, le=65535, description="Prometheus /metrics on 127.0.0.1")
    checkpoint_s: float = Field(30.0, gt=0.0, description="state checkpointed to the store this often")
    max_restarts: int = Field(3, ge=0)
    shards: int = Field(
        1, ge=1, le=64, description="monitor actors per route; requests (and their labels) split by request id, "
        "each shard closes its own windows of window_rows rows, status and summary merge them")
    performance: MonitorPerformanceConfig = Field(default_factory=MonitorPerformanceConfig)
    differential: MonitorDifferentialConfig = Field(default_factory=MonitorDifferentialConfig)
    slo: MonitorSLOConfig = Field(default_factory=MonitorSLOConfig)
    alerts: MonitorAlertsConfig = Field(default_factory=MonitorAlertsConfig)

    @model_validator(mode="after")
    def _monitor_consistent(self) -> MonitorConfig:
        if self.window_rows is None and self.window_s is None:
            raise ValueError("expected window_rows or window_s (or both), found neither")
        if self.fine_bins < self.n_bins:
            raise ValueError(f"expected fine_bins >= n_bins ({self.n_bins}), found {self.fine_bins}")
        if not 0 < self.psi_bands[0] < self.psi_bands[1]:
            raise ValueError(f"expected psi_bands [low, high] with 0 < low < high, found {self.psi_bands}")
        return self


RETRAIN_TRIGGER_GROUPS = {
    "drift": ("dataset_drift", "feature_drift", "slice_drift", "prediction_drift"),
    "performance": ("performance",),
}


class RetrainPromoteConfig(_Strict):
    """``retrain.promote``: what the shadow challenger must show before it becomes champion. The
    challenger's own gate has passed already (a rejected model is never deployed)."""

    min_agreement: float = Field(0.5, ge=0.0, le=1.0, description="share of shadow rows where it agrees with the "
                                 "champion (a challenger that disagrees on more is too different to swap in blind)")
    max_prediction_distance: float | None = Field(
        None, gt=0.0, le=1.0, description="Jensen-Shannon distance of the two prediction distributions (monitor)")
    max_errors: int = Field(0, ge=0, description="shadow requests the challenger failed on")
    beat_champion: bool = Field(True, description="on the fresh snapshot's holdout the challenger scores at least as "
                                "well as the champion on train.metric")
    min_improvement: float = Field(0.0, ge=0.0, description="with beat_champion: by at least this much")
    allow_differential_alerts: bool = Field(True, description="false: a differential alert on the challenger "
                                            "refuses promotion")


class RetrainConfig(_Strict):
    """``retrain``: the closed loop. An alert of a ``triggers`` kind on the route's monitor starts
    one cycle: a fresh snapshot of ``source`` (default ``data.source``), training, the gate, the
    new version as shadow challenger, ``shadow_rows`` compared rows, then promotion when the
    ``promote`` rules pass, else the challenger is retired. Every step is an audit record whose
    reason is the alert (see :mod:`raymlops.loop`)."""

    enabled: bool = Field(False, description="let alerts start retraining (raymlops retrain watch)")
    triggers: list[str] = Field(default_factory=lambda: ["dataset_drift", "performance"], min_length=1,
                                description="alert kinds that start a cycle; 'drift' = every drift kind")
    cooldown_s: float = Field(600.0, ge=0.0, description="no new cycle within this time of the last one")
    source: str | None = Field(None, description="URI of the fresh data (default: data.source)")
    shadow_rows: int = Field(200, ge=1, description="challenger rows compared in shadow before deciding")
    shadow_timeout_s: float = Field(300.0, gt=0.0, description="fewer rows by then: the challenger is retired")
    rebaseline: bool = Field(True, description="after promotion the monitor's reference becomes the new "
                             "champion's training data")
    interval_s: float = Field(5.0, gt=0.0, description="how often the watcher reads the monitor's alerts")
    promote: RetrainPromoteConfig = Field(default_factory=RetrainPromoteConfig)

    @field_validator("triggers")
    @classmethod
    def _known_kinds(cls, v: list[str]) -> list[str]:
        from raymlops.monitor.alerts import ALERT_KINDS

        known = tuple(dict.fromkeys((*RETRAIN_TRIGGER_GROUPS, *ALERT_KINDS)))
        for kind in v:
            if kind not in known:
                raise ValueError(f"expected alert kinds among {', '.join(known)}, found {kind!r}")
        return v

    @field_validator("source")
    @classmethod
    def _source(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not v.strip():
            raise ValueError("expected a non-empty URI")
        if v.startswith("callable:") and not _FUNC_REF.match(v.removeprefix("callable:").strip()):
            raise ValueError("expected 'callable:module:function', e.g. 'callable:mypkg.data:load'")
        return v

    def trigger_kinds(self) -> frozenset[str]:
        """The alert kinds that start a cycle, groups expanded."""
        out: set[str] = set()
        for kind in self.triggers:
            out.update(RETRAIN_TRIGGER_GROUPS.get(kind, (kind,)))
        return frozenset(out)


class PipelineConfig(_Strict):
    """A whole pipeline: data → train → gate → register → serve → monitor."""

    name: str
    seed: int = Field(0, ge=0)
    data: DataConfig
    train: TrainConfig
    gate: GateConfig = Field(default_factory=GateConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    retrain: RetrainConfig = Field(default_factory=RetrainConfig)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("expected lowercase letters, digits and '-', at most 63 characters")
        return v

    @field_validator("gate", mode="wrap")
    @classmethod
    def _gate_for_task(cls, v: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Any:
        """Gate rules may only name metrics the training task produces (r2 is no classification metric)."""
        train = info.data.get("train")
        if isinstance(v, dict) and isinstance(train, TrainConfig):
            return GateConfig.model_validate(v, context={"task": train.task})
        return handler(v)

    @property
    def route(self) -> str:
        return self.serve.name or self.name

    def config_hash(self) -> str:
        """sha256 of the canonical JSON form: equal configs hash equal, whatever the YAML layout."""
        canon = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = str(part)
            if not text.isidentifier():
                text = repr(text)  # odd keys (spaces, newlines) stay on one line and visible
            out += ("." if out else "") + text
    return out or "(top level)"


def _expected(err: Mapping[str, Any], model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        return f"unknown key; expected one of {', '.join(allowed)}" if allowed else "unknown key"
    if kind == "missing":
        return "expected this key, it is missing"
    msg = str(err["msg"])
    msg = msg.removeprefix("Value error, ")
    if msg.startswith("Input should be"):
        msg = "expected " + msg.removeprefix("Input should be ")
    elif not msg.startswith("expected"):
        msg = "expected: " + msg
    return msg


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        current = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if current is None:
            return []
    return sorted(f.alias or n for n, f in getattr(current, "model_fields", {}).items())


def parse_config(data: Any, source: str = "<config>") -> PipelineConfig:
    """Validate an already-parsed mapping; errors name ``source`` and the key path."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: (top level): expected a mapping of keys, found {_describe(data)}")
    try:
        return PipelineConfig.model_validate(data)
    except PydanticValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        loc = tuple(first["loc"])
        found = "" if first["type"] == "missing" else f", found {_describe(first.get('input'))}"
        expected = _expected(first, PipelineConfig, loc)
        if first["type"] == "extra_forbidden" or ", found " in expected:
            found = ""
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise ConfigError(
            f"{source}: {_key_path(loc)}: {expected}{found}{more}"
        ) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | Path) -> PipelineConfig:
    """Load and validate a YAML pipeline config."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        raise ConfigError(f"{p}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return parse_config(data, str(p))
