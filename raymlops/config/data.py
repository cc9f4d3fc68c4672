"""``data:``: sources, schema, rules, transforms, splits and the drift settings of snapshots."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from raymlops.config.base import FUNC_REF, ExpressionText, Strict
from raymlops.store.artifacts import is_secret_option


class TransformConfig(Strict):
    """One entry of ``data.transforms``; exactly one kind of transform is set per entry.

    Kinds (one optional field each; :mod:`raymlops.data.transforms` applies them in order):
    ``map_batches: "module:function"`` — a function that takes and returns a pandas DataFrame batch;
    ``select: [a, b]`` — keep these columns, in this order; ``rename: {old: new}``;
    ``cast: {column: int64}`` — to an Arrow type; ``filter: "age >= 18"`` — keep the rows where the
    expression is true; ``derive: {ratio: "a / b"}`` — add (or replace) columns, in order.
    Expressions are parsed safely (:mod:`raymlops.expr`), never evaluated as Python.
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
        if v is not None and not FUNC_REF.match(v):
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


class ColumnSpec(Strict):
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


class RuleConfig(Strict):
    """A named business rule: rows where ``expr`` is not true violate it. In YAML a plain string
    is a rule named by its own text."""

    name: str = Field(min_length=1)
    expr: ExpressionText


class DriftConfig(Strict):
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


class DataConfig(Strict):
    """Where the rows come from, how they are checked, split and compared with the reference."""

    # `schema` is the YAML key (a field of that name would shadow BaseModel.schema); dumps use it too
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, serialize_by_alias=True,
                              validate_by_name=True, validate_by_alias=True)

    source: str = Field(description="URI: a path, s3://…, hdfs://…, or sklearn://<dataset>")
    format: Literal["auto", "csv", "parquet", "json"] = "auto"
    target: str
    features: list[str] | None = Field(None, min_length=1, description="the model's inputs; left out: every column "
                                       "but the target (an empty list is refused, not read as every column)")
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
        if v.startswith("callable:") and not FUNC_REF.match(v.removeprefix("callable:").strip()):
            raise ValueError("expected 'callable:module:function', e.g. 'callable:mypkg.data:load'")
        return v
