"""Schema and business-rule checks on Arrow batches (pure: no Ray).

Checks come from two places in the config:

- ``data.schema``: per column, ``type`` (checked once, on the dataset's schema), and
  ``nullable: false``, ``min``, ``max``, ``domain`` (checked on every row; a null passes
  ``min``/``max``/``domain`` unless the column is also ``nullable: false``);
- ``data.rules``: expressions (:mod:`raymlops.expr`) such as ``age >= 18`` or
  ``income > 0 or status == 'student'``; a row violates a rule unless the expression is true
  for it (null, i.e. unknown, is a violation).

:func:`evaluate` runs every row check on one batch and returns a :class:`BatchOutcome` that
merges with others (counts per check, rows that break at least one, the first offending rows);
:class:`ValidationReport` is the merged result, with the message the ``fail`` policy raises.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa

from raymlops.exceptions import ValidationError
from raymlops.expr import Expression, parse, quote_hint

__all__ = [
    "REASON_COLUMN",
    "BatchOutcome",
    "Check",
    "ValidationReport",
    "compile_checks",
    "evaluate",
    "split_batch",
    "type_problems",
]

#: the column that quarantined rows get: the names of the checks they broke, "; "-separated
REASON_COLUMN = "_quarantine_reason"
EXAMPLES = 5
_TYPE_ALIASES = {"float64": "double", "float32": "float", "float16": "halffloat", "utf8": "string",
                 "str": "string", "large_string": "string", "large_utf8": "string", "boolean": "bool"}

Table: TypeAlias = pa.Table | pa.RecordBatch


@dataclass(frozen=True)
class Check:
    """One row check: its name (shown in reports and reasons) and its expression."""

    name: str
    expression: Expression

    @property
    def text(self) -> str:
        return self.expression.text


def _col(name: str) -> str:
    return f"col({name!r})"


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, float) and value.is_integer():
        return repr(int(value)) if abs(value) < 2**53 else repr(value)
    return repr(value)


def compile_checks(rules: Iterable[Any] = (), schema: Mapping[str, Any] | None = None) -> list[Check]:
    """Row checks from ``data.schema`` specs (objects or dicts with nullable/min/max/domain)
    and ``data.rules`` (strings, ``(name, expr)`` pairs, or objects with ``name`` and ``expr``)."""
    checks: list[Check] = []
    for column, spec in (schema or {}).items():
        get = spec.get if isinstance(spec, Mapping) else lambda k, s=spec: getattr(s, k, None)
        c = _col(column)
        if get("nullable") is False:
            checks.append(Check(f"schema: {column} is not null", parse(f"not_null({c})")))
        if get("min") is not None:
            checks.append(Check(f"schema: {column} >= {_literal(get('min'))}",
                                parse(f"is_null({c}) or {c} >= {_literal(get('min'))}")))
        if get("max") is not None:
            checks.append(Check(f"schema: {column} <= {_literal(get('max'))}",
                                parse(f"is_null({c}) or {c} <= {_literal(get('max'))}")))
        domain = get("domain")
        if domain:
            values = ", ".join(_literal(v) for v in domain)
            checks.append(Check(f"schema: {column} in domain",
                                parse(f"is_null({c}) or {c} in ({values},)")))
    for rule in rules:
        if isinstance(rule, str):
            name, expr = rule, rule
        elif isinstance(rule, tuple):
            name, expr = rule
        else:
            name, expr = rule.name, rule.expr
        checks.append(Check(name, parse(expr, what=f"rule {name!r}") if name != expr else parse(expr)))
    names = [c.name for c in checks]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ValidationError(f"two checks are named {dup!r}; give the rules unique names")
    return checks


def _norm_type(name: str) -> str:
    return _TYPE_ALIASES.get(name.strip().lower(), name.strip().lower())


def type_problems(schema: pa.Schema, specs: Mapping[str, Any] | None, checks: Sequence[Check] = ()) -> list[str]:
    """Dataset-level problems: columns the specs or checks name that are missing, and columns
    whose Arrow type differs from ``type`` in their spec."""
    problems = []
    names = schema.names
    for column, spec in (specs or {}).items():
        expected = spec.get("type") if isinstance(spec, Mapping) else getattr(spec, "type", None)
        if column not in names:
            problems.append(f"data.schema: column {column!r} not found (columns: {', '.join(names)})")
            continue
        if expected is not None:
            actual = str(schema.field(column).type)
            if _norm_type(actual) != _norm_type(expected):
                problems.append(f"data.schema.{column}.type: expected {expected}, found {actual}")
    for check in checks:
        for column in check.expression.columns:
            if column not in names and not any(column in p for p in problems):
                problems.append(f"{check.name!r}: column {column!r} not found (columns: {', '.join(names)})"
                                f"{quote_hint(column)}")
    return problems


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not np.isfinite(v):
        return str(v)
    if v is None or isinstance(v, bool | int | float | str):
        return v
    return str(v)


@dataclass
class BatchOutcome:
    """Check results over some rows, mergeable in row order (``merge(later)``)."""

    rows: int = 0
    bad: int = 0
    violations: dict[str, int] = field(default_factory=dict)
    #: check name -> up to EXAMPLES offending rows: {"row": index among these rows, "values": {...}}
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def merge(self, later: BatchOutcome) -> BatchOutcome:
        """This outcome followed by ``later``'s rows (row numbers of ``later`` are shifted)."""
        examples = {k: list(v) for k, v in self.examples.items()}
        for name, rows in later.examples.items():
            have = examples.setdefault(name, [])
            for ex in rows:
                if len(have) >= EXAMPLES:
                    break
                have.append({"row": ex["row"] + self.rows, "values": ex["values"]})
        violations = dict(self.violations)
        for k, v in later.violations.items():
            violations[k] = violations.get(k, 0) + v
        return BatchOutcome(self.rows + later.rows, self.bad + later.bad, violations, examples)

    def to_json(self) -> bytes:
        return json.dumps({"rows": self.rows, "bad": self.bad, "violations": self.violations,
                           "examples": self.examples}, default=str).encode()

    @classmethod
    def from_json(cls, data: bytes) -> BatchOutcome:
        d = json.loads(data)
        return cls(int(d["rows"]), int(d["bad"]), {k: int(v) for k, v in d["violations"].items()}, d["examples"])


def _ok_masks(table: Table, checks: Sequence[Check]) -> list[np.ndarray]:
    return [np.asarray(c.expression.mask(table).to_numpy(zero_copy_only=False), dtype=bool) for c in checks]


def evaluate(table: Table, checks: Sequence[Check], examples: int = EXAMPLES) -> BatchOutcome:
    """Every check on every row of ``table``: counts, rows breaking any, first offending rows."""
    n = table.num_rows
    out = BatchOutcome(rows=n, violations={c.name: 0 for c in checks})
    if not checks or n == 0:
        return out
    any_bad = np.zeros(n, dtype=bool)
    for check, ok in zip(checks, _ok_masks(table, checks), strict=True):
        bad = ~ok
        count = int(bad.sum())
        out.violations[check.name] = count
        if count:
            any_bad |= bad
            cols = list(check.expression.columns)
            rows = np.flatnonzero(bad)[:examples]
            picked = table.select(cols).take(pa.array(rows)).to_pylist() if cols else [{} for _ in rows]
            out.examples[check.name] = [{"row": int(r), "values": {k: _json_value(v) for k, v in vals.items()}}
                                        for r, vals in zip(rows, picked, strict=True)]
    out.bad = int(any_bad.sum())
    return out


def split_batch(table: Table, checks: Sequence[Check], keep: bool) -> pa.Table:
    """The rows that pass every check (``keep``), or those that break one with a
    :data:`REASON_COLUMN` naming the checks they broke."""
    t = table if isinstance(table, pa.Table) else pa.Table.from_batches([table])
    if not checks or t.num_rows == 0:
        if keep:
            return t
        return t.slice(0, 0).append_column(REASON_COLUMN, pa.array([], type=pa.string()))
    masks = _ok_masks(t, checks)
    ok_all = np.logical_and.reduce(masks)
    if keep:
        return t.filter(pa.array(ok_all))
    bad_rows = np.flatnonzero(~ok_all)
    reasons = ["; ".join(c.name for c, ok in zip(checks, masks, strict=True) if not ok[i]) for i in bad_rows]
    return t.take(pa.array(bad_rows)).append_column(REASON_COLUMN, pa.array(reasons, type=pa.string()))


@dataclass
class ValidationReport:
    """Merged check results: counts per check, examples, and what the policy did."""

    policy: str
    checks: list[Check]
    outcome: BatchOutcome
    quarantine_snapshot: str | None = None

    @property
    def rows_in(self) -> int:
        return self.outcome.rows

    @property
    def rows_bad(self) -> int:
        return self.outcome.bad

    @property
    def rows_kept(self) -> int:
        return self.rows_in if self.policy == "fail" else self.rows_in - self.rows_bad

    @property
    def rows_quarantined(self) -> int:
        return 0 if self.policy == "fail" else self.rows_bad

    @property
    def passed(self) -> bool:
        return self.rows_bad == 0

    def message(self, limit: int = 3) -> str:
        """One paragraph: how many rows broke which checks, with the first offending rows."""
        broken = [(c, self.outcome.violations.get(c.name, 0)) for c in self.checks]
        broken = [(c, n) for c, n in broken if n]
        if not broken:
            return f"all {self.rows_in} rows pass {len(self.checks)} check(s)"
        parts = []
        for check, n in broken:
            shown = []
            for ex in self.outcome.examples.get(check.name, [])[:limit]:
                vals = ", ".join(f"{k}={json.dumps(v)}" for k, v in ex["values"].items())
                shown.append(f"row {ex['row']}: {vals}" if vals else f"row {ex['row']}")
            parts.append(f"{check.name!r}: {n} row{'s' if n != 1 else ''} ({'; '.join(shown)})")
        return (f"{self.rows_bad} of {self.rows_in} rows break {len(broken)} of {len(self.checks)} "
                f"check(s): " + "; ".join(parts))

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy, "passed": self.passed, "rows_in": self.rows_in, "rows_kept": self.rows_kept,
            "rows_quarantined": self.rows_quarantined, "rows_bad": self.rows_bad,
            "checks": [{"name": c.name, "expr": c.text, "violations": self.outcome.violations.get(c.name, 0),
                        "examples": self.outcome.examples.get(c.name, [])} for c in self.checks],
            "quarantine_snapshot": self.quarantine_snapshot,
        }

