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
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import ValidationError as PydanticValidationError

from raymlops.exceptions import ConfigError

_RULE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|>|<)\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*$")
GATE_METRICS = {"roc_auc", "accuracy", "f1", "log_loss", "precision", "recall"}
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class _Strict(BaseModel):
    # strict: `port: yes` or `port: "80"` is an error, not port 1 / 80 (YAML gives native types)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class DataConfig(_Strict):
    """Where the rows come from and how they are split."""

    source: str = Field(description="URI: a path, s3://…, hdfs://…, or sklearn://<dataset>")
    format: Literal["auto", "csv", "parquet", "json"] = "auto"
    target: str
    features: list[str] | None = None
    holdout_fraction: float = Field(0.2, gt=0.0, lt=1.0)

    @field_validator("source")
    @classmethod
    def _source_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("expected a non-empty URI")
        return v


class Candidate(_Strict):
    """One estimator and its parameter grid: list values are searched, scalars are fixed."""

    estimator: str = Field(description="import path, e.g. sklearn.linear_model.LogisticRegression")
    params: dict[str, Any] = Field(default_factory=dict)
    scale: bool = False

    @field_validator("estimator")
    @classmethod
    def _dotted(cls, v: str) -> str:
        if "." not in v or any(not p.isidentifier() for p in v.split(".")):
            raise ValueError("expected an import path such as 'sklearn.linear_model.LogisticRegression'")
        return v

    @field_validator("params")
    @classmethod
    def _grid_not_empty(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key, value in v.items():
            if isinstance(value, list) and not value:
                raise ValueError(f"expected at least one value for parameter '{key}'")
        return v


class TrainConfig(_Strict):
    task: Literal["classification"] = "classification"
    metric: Literal["roc_auc", "accuracy", "f1", "log_loss"] = "roc_auc"
    mode: Literal["max", "min"] = "max"
    validation_fraction: float = Field(0.25, gt=0.0, lt=1.0)
    max_concurrent_trials: int = Field(2, ge=1)
    cpus_per_trial: float = Field(1.0, gt=0.0)
    candidates: list[Candidate] = Field(min_length=1)


class GateConfig(_Strict):
    rules: list[str] = Field(default_factory=list)

    @field_validator("rules")
    @classmethod
    def _parse_rules(cls, v: list[str]) -> list[str]:
        for rule in v:
            m = _RULE.match(rule)
            if not m:
                raise ValueError(f"expected rules like 'roc_auc >= 0.9', found {rule!r}")
            if m.group(1) not in GATE_METRICS:
                raise ValueError(f"expected a metric in {sorted(GATE_METRICS)}, found {m.group(1)!r} in {rule!r}")
        return v

    def parsed(self) -> list[tuple[str, str, float]]:
        """Rules as ``(metric, operator, threshold)``."""
        out = []
        for rule in self.rules:
            m = _RULE.match(rule)
            assert m is not None  # validated at load
            out.append((m.group(1), m.group(2), float(m.group(3))))
        return out


class ServeConfig(_Strict):
    enabled: bool = True
    name: str | None = Field(None, description="route prefix /<name>; defaults to the pipeline name")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    num_replicas: int = Field(1, ge=1)
    max_batch_size: int = Field(32, ge=1)
    batch_wait_timeout_s: float = Field(0.01, ge=0.0)
    max_rows_per_request: int = Field(1000, ge=1)

    @field_validator("name")
    @classmethod
    def _route_name(cls, v: str | None) -> str | None:
        if v is not None and not _NAME.match(v):
            raise ValueError("expected lowercase letters, digits and '-' (a URL path segment)")
        return v


class MonitorConfig(_Strict):
    enabled: bool = True
    n_bins: int = Field(10, ge=2, le=100)
    alpha: float = Field(0.05, gt=0.0, lt=1.0)
    correction: Literal["bonferroni", "bh"] = "bonferroni"
    dataset_drift_share: float = Field(0.5, gt=0.0, le=1.0)


class PipelineConfig(_Strict):
    """A whole pipeline: data → train → gate → register → serve → monitor."""

    name: str
    seed: int = Field(0, ge=0)
    data: DataConfig
    train: TrainConfig
    gate: GateConfig = Field(default_factory=GateConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("expected lowercase letters, digits and '-', at most 63 characters")
        return v

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
    return sorted(getattr(current, "model_fields", {}))


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
