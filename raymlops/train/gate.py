"""The model-validation gate: every rule with its value, and a verdict (pure: no Ray).

Four kinds of rule (see :class:`raymlops.config.GateConfig`):

- absolute: ``roc_auc >= 0.9``;
- against the champion: ``{metric, min_absolute_change, min_relative_change}``. The candidate must
  beat the champion's value by at least ``min_absolute_change`` and by at least
  ``min_relative_change × |champion|``, in the metric's better direction (as MLflow's
  MetricThreshold and TFX's GenericChangeThreshold; 0 and 0: at least as good). Without a champion,
  or a champion without that metric, the rule passes and says so;
- per slice: ``{metric, slice_min}`` (or ``slice_max`` for lower-is-better metrics) holds for
  every slice with at least ``min_slice_rows`` rows; the verdict shows the worst slice;
- fairness: the largest gap between slices (predicted positive rate / mean absolute error) is at
  most ``fairness_gap_max``.

A metric the model did not produce (or NaN) fails its rule.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from raymlops.config import LOWER_IS_BETTER, ChampionRule, GateConfig, SliceRule
from raymlops.train.evaluate import Evaluation

_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


@dataclass(frozen=True)
class RuleResult:
    rule: str
    metric: str
    value: float | None
    #: None for a champion rule without a champion
    threshold: float | None
    passed: bool
    #: absolute | champion | slice | fairness
    kind: str = "absolute"
    #: the champion's value (champion rules with a champion)
    champion: float | None = None
    #: the slice (worst one) or slice column (largest gap) the value comes from
    slice: str | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The rule as a mapping; keys that do not apply to this kind of rule are left out."""
        out = asdict(self)
        for key in ("kind", "champion", "slice", "note"):
            if out[key] in (None, "") or (key == "kind" and out[key] == "absolute"):
                del out[key]
        return out


@dataclass(frozen=True)
class GateVerdict:
    passed: bool
    rules: tuple[RuleResult, ...]

    @property
    def status(self) -> str:
        return "passed" if self.passed else "rejected"

    @property
    def reasons(self) -> list[str]:
        out = []
        for r in self.rules:
            if r.passed:
                continue
            if r.value is None:
                out.append(f"{r.rule}: metric missing" + (f" ({r.note})" if r.note else ""))
                continue
            where = f" on slice {r.slice}" if r.kind == "slice" and r.slice else ""
            where = f" for {r.slice}" if r.kind == "fairness" and r.slice else where
            champ = ""
            if r.champion is not None and r.threshold is not None:
                champ = f" (champion {r.champion:.4f}, needed {r.threshold:.4f})"
            out.append(f"{r.rule} failed: {r.metric} = {r.value:.4f}{where}{champ}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "rules": [r.to_dict() for r in self.rules], "reasons": self.reasons}


def _ok(value: float | None) -> bool:
    return value is not None and not math.isnan(value)


def evaluate_gate(rules: Sequence[tuple[str, str, float]], metrics: Mapping[str, float]) -> GateVerdict:
    """Apply absolute ``(metric, op, threshold)`` rules; a metric the model did not produce fails its rule."""
    results = _absolute(rules, metrics)
    return GateVerdict(passed=all(r.passed for r in results), rules=tuple(results))


def _absolute(rules: Sequence[tuple[str, str, float]], metrics: Mapping[str, float]) -> list[RuleResult]:
    results = []
    for metric, op, threshold in rules:
        value = metrics.get(metric)
        passed = value is not None and _ok(value) and bool(_OPS[op](value, threshold))
        results.append(RuleResult(f"{metric} {op} {threshold:g}", metric, value, threshold, passed))
    return results


def champion_rule(rule: ChampionRule, metrics: Mapping[str, float], champion: Mapping[str, float] | None) -> RuleResult:
    """The candidate against the champion on one metric (see the module docstring)."""
    lower = rule.metric in LOWER_IS_BETTER
    text = (f"{rule.metric} vs champion (min_absolute_change {rule.min_absolute_change:g}, "
            f"min_relative_change {rule.min_relative_change:g})")
    value = metrics.get(rule.metric)
    base = None if champion is None else champion.get(rule.metric)
    if champion is None or not _ok(base):
        note = "no champion: passes" if champion is None else f"the champion has no {rule.metric}: passes"
        return RuleResult(text, rule.metric, value, None, _ok(value), "champion", None, None,
                          note if _ok(value) else "the candidate has no such metric")
    assert base is not None
    margin = max(rule.min_absolute_change, rule.min_relative_change * abs(base))
    threshold = base - margin if lower else base + margin
    passed = _ok(value) and (value <= threshold if lower else value >= threshold)  # type: ignore[operator]
    direction = "at most" if lower else "at least"
    return RuleResult(text, rule.metric, value, threshold, bool(passed), "champion", base, None,
                      f"needs {direction} {threshold:.6g}")


def slice_rule(rule: SliceRule, evaluation: Evaluation) -> RuleResult:
    """``rule.metric`` on every counted slice; the result carries the worst slice."""
    text = f"{rule.metric} {'>=' if rule.bound == 'min' else '<='} {rule.threshold:g} on every slice"
    counted = [s for s in evaluation.slices if s.counted]
    scored = [(s, s.metrics[rule.metric]) for s in counted if _ok(s.metrics.get(rule.metric))]
    unscored = [s.name for s in counted if not _ok(s.metrics.get(rule.metric))]
    if not scored:
        why = "no slice with enough rows" if not counted else f"no slice has {rule.metric}"
        return RuleResult(text, rule.metric, None, rule.threshold, False, "slice", None, None, why)
    pick = max if rule.bound == "max" else min
    worst, value = pick(scored, key=lambda sv: sv[1])
    passed = value >= rule.threshold if rule.bound == "min" else value <= rule.threshold
    failing = sum(1 for _, v in scored if (v < rule.threshold if rule.bound == "min" else v > rule.threshold))
    note = f"{len(scored)} slices checked, {failing} below the bound" if rule.bound == "min" else \
        f"{len(scored)} slices checked, {failing} above the bound"
    if unscored:
        note += f"; without {rule.metric}: {', '.join(unscored[:5])}"
    return RuleResult(text, rule.metric, value, rule.threshold, bool(passed), "slice", None, worst.name, note)


def fairness_rule(ceiling: float, evaluation: Evaluation) -> RuleResult:
    gap = evaluation.fairness_gap
    text = f"fairness_gap <= {ceiling:g}"
    if gap is None:  # refused, as a slice rule without its metric is: a check not made does not pass
        why = ("not measured: no gate.slices column has two slices of at least gate.min_slice_rows holdout rows"
               if evaluation.slices else "no slices evaluated")
        return RuleResult(text, "fairness_gap", None, ceiling, False, "fairness", None, None, why)
    column = max(evaluation.fairness_by_column, key=lambda c: evaluation.fairness_by_column[c])
    return RuleResult(text, "fairness_gap", gap, ceiling, gap <= ceiling, "fairness", None, column,
                      f"largest difference in {evaluation.fairness_measure} between slices")


def gate(
    config: GateConfig, evaluation: Evaluation, champion_metrics: Mapping[str, float] | None = None
) -> GateVerdict:
    """Every rule of ``config`` against ``evaluation`` (and the champion's holdout metrics, if any)."""
    results = _absolute(config.parsed(), evaluation.metrics)
    results += [champion_rule(r, evaluation.metrics, champion_metrics) for r in config.champion_rules()]
    results += [slice_rule(r, evaluation) for r in config.slice_rules()]
    if config.fairness_gap_max is not None:
        results.append(fairness_rule(config.fairness_gap_max, evaluation))
    return GateVerdict(passed=all(r.passed for r in results), rules=tuple(results))
