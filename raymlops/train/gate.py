"""The model-validation gate: every rule with its value, and a verdict (pure: no Ray)."""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


@dataclass(frozen=True)
class RuleResult:
    rule: str
    metric: str
    value: float | None
    threshold: float
    passed: bool


@dataclass(frozen=True)
class GateVerdict:
    passed: bool
    rules: tuple[RuleResult, ...]

    @property
    def status(self) -> str:
        return "passed" if self.passed else "rejected"

    @property
    def reasons(self) -> list[str]:
        return [
            f"{r.rule} failed: {r.metric} = {r.value:.4f}" if r.value is not None else f"{r.rule}: metric missing"
            for r in self.rules
            if not r.passed
        ]

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "rules": [asdict(r) for r in self.rules], "reasons": self.reasons}


def evaluate_gate(rules: Sequence[tuple[str, str, float]], metrics: Mapping[str, float]) -> GateVerdict:
    """Apply ``(metric, op, threshold)`` rules; a metric the model did not produce fails its rule."""
    results = []
    for metric, op, threshold in rules:
        value = metrics.get(metric)
        passed = value is not None and bool(_OPS[op](value, threshold))
        results.append(RuleResult(f"{metric} {op} {threshold:g}", metric, value, threshold, passed))
    return GateVerdict(passed=all(r.passed for r in results), rules=tuple(results))
