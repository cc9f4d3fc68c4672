"""``gate:``: the rules a trained model must pass before it is registered as servable."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_serializer,
)

from raymlops.config.base import Strict, is_number
from raymlops.config.train import CLASSIFICATION_METRICS, LOWER_IS_BETTER, REGRESSION_METRICS, TASK_METRICS

_RULE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(>=|<=|>|<)\s*([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*$")
_CHAMPION_KEYS = ("min_absolute_change", "min_relative_change")
_SLICE_KEYS = ("slice_min", "slice_max")


class AbsoluteRule(Strict):
    """``roc_auc >= 0.9``: the holdout metric against a fixed threshold. Written (and dumped) as
    that one-line string."""

    metric: str
    op: Literal[">=", "<=", ">", "<"]
    threshold: float

    @model_serializer
    def _as_text(self) -> str:
        return str(self)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.threshold!r}"  # repr: the dumped config reads back exactly


class ChampionRule(Strict):
    """The candidate must beat the champion's ``metric`` by at least both changes (in the metric's
    better direction), as MLflow's MetricThreshold and TFX's GenericChangeThreshold."""

    metric: str
    min_absolute_change: float = Field(0.0, ge=0.0)
    min_relative_change: float = Field(0.0, ge=0.0)

    def __str__(self) -> str:
        return str(self.model_dump())


class SliceRule(Strict):
    """Every slice's ``metric`` must be at least (``bound`` "min", written ``slice_min: x``) or at
    most ("max", ``slice_max: x``) ``threshold``."""

    metric: str
    bound: Literal["min", "max"]
    threshold: float

    @model_serializer
    def _as_written(self) -> dict[str, Any]:
        return {"metric": self.metric, f"slice_{self.bound}": self.threshold}

    def __str__(self) -> str:
        return str(self.model_dump())


def _rule_kind(rule: Any) -> str:
    if isinstance(rule, AbsoluteRule | ChampionRule | SliceRule):
        return {AbsoluteRule: "absolute", ChampionRule: "champion", SliceRule: "slice"}[type(rule)]
    if isinstance(rule, dict) and ("op" in rule or "bound" in rule):
        return "absolute" if "op" in rule else "slice"
    return "champion"


#: one gate rule: the discriminator is the form it is written in (checked first by ``_as_rule``)
GateRule = Annotated[
    Annotated[AbsoluteRule, Tag("absolute")] | Annotated[ChampionRule, Tag("champion")]
    | Annotated[SliceRule, Tag("slice")],
    Discriminator(_rule_kind),
]


def _as_rule(rule: Any, slices: Any) -> Any:
    """A rule as written in YAML, checked for its form (with the messages users see), in the
    field form of its rule model; a rule model is returned as is."""
    if isinstance(rule, AbsoluteRule | ChampionRule | SliceRule):
        return rule
    if isinstance(rule, str):
        m = _RULE.match(rule)
        if not m:
            raise ValueError(f"expected rules like 'roc_auc >= 0.9', found {rule!r}")
        return {"metric": m.group(1), "op": m.group(2), "threshold": float(m.group(3))}
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
        if key in rule and not is_number(rule[key]):
            raise ValueError(f"expected a number for {key}, found {rule!r}")
    for key in _CHAMPION_KEYS:
        if key in rule and rule[key] < 0:
            raise ValueError(f"expected {key} >= 0 (how much better than the champion), found {rule!r}")
    bounds = [k for k in _SLICE_KEYS if k in rule]
    if not bounds:
        return {k: float(v) if k != "metric" else v for k, v in rule.items()}
    if len(bounds) > 1 or any(k in rule for k in _CHAMPION_KEYS):
        raise ValueError(f"expected one of slice_min, slice_max, or champion changes, not several, in {rule!r}")
    want = "slice_max" if metric in LOWER_IS_BETTER else "slice_min"
    if bounds[0] != want:
        bound = "a ceiling: lower is better" if want == "slice_max" else "a floor: higher is better"
        raise ValueError(f"expected {want} for {metric!r} ({bound}), found {rule!r}")
    if not slices:
        raise ValueError(f"expected gate.slices to be set for the slice rule {rule!r}")
    return {"metric": metric, "bound": bounds[0].removeprefix("slice_"), "threshold": float(rule[bounds[0]])}


class GateConfig(Strict):
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
    rules: list[GateRule] = Field(default_factory=list)

    @field_validator("fairness_gap_max")
    @classmethod
    def _fairness_needs_slices(cls, v: float | None, info: ValidationInfo) -> float | None:
        if v is not None and not info.data.get("slices"):
            raise ValueError("expected gate.slices to be set (the gap is between slices)")
        return v

    @field_validator("rules", mode="before")
    @classmethod
    def _parse_rules(cls, v: Any, info: ValidationInfo) -> Any:
        if not isinstance(v, list):
            return v  # pydantic names the type error
        task = (info.context or {}).get("task")
        known = TASK_METRICS[task] if task in TASK_METRICS else CLASSIFICATION_METRICS + REGRESSION_METRICS
        out = []
        for rule in v:
            parsed = _as_rule(rule, info.data.get("slices"))
            metric = parsed.metric if isinstance(parsed, AbsoluteRule | ChampionRule | SliceRule) else parsed["metric"]
            if metric not in known:
                raise ValueError(f"expected a metric in {sorted(known)}, found {metric!r} in {rule!r}")
            out.append(parsed)
        return out

    def typed_rules(self) -> list[AbsoluteRule | ChampionRule | SliceRule]:
        """The rules as rule models. ``model_copy(update={"rules": [...]})`` does not validate, so
        a rule still in its written form is parsed here rather than silently skipped."""
        out: list[AbsoluteRule | ChampionRule | SliceRule] = []
        for rule in self.rules:
            if not isinstance(rule, AbsoluteRule | ChampionRule | SliceRule):
                parsed = _as_rule(rule, self.slices)
                rule = {"absolute": AbsoluteRule, "champion": ChampionRule, "slice": SliceRule}[
                    _rule_kind(parsed)].model_validate(parsed)
            out.append(rule)
        return out

    def parsed(self) -> list[tuple[str, str, float]]:
        """Absolute rules as ``(metric, operator, threshold)``."""
        return [(r.metric, r.op, r.threshold) for r in self.typed_rules() if isinstance(r, AbsoluteRule)]

    def champion_rules(self) -> list[ChampionRule]:
        return [r for r in self.typed_rules() if isinstance(r, ChampionRule)]

    def slice_rules(self) -> list[SliceRule]:
        return [r for r in self.typed_rules() if isinstance(r, SliceRule)]
