"""The validate step: schema and business rules on a Ray Dataset (Ray adapter over
:mod:`raymlops.data.rules`).

The checks run as ``map_batches`` on the Ray Data workers; each batch returns its counts and
first offending rows (a few hundred bytes), never its rows. Policies:

``fail`` (default)
    Any violation stops the run: :class:`RulesFailed` (a :class:`ValidationError`, exit 2)
    reports the count per check and the first offending rows (0-based row index in source
    order, with the values of the columns the check reads).
``quarantine``
    Rows that break a check go to a *quarantine snapshot* (kind ``quarantine``, tag
    ``quarantine``) with a :data:`~raymlops.data.rules.REASON_COLUMN` naming the checks each
    broke; the rest go on. Rows in = rows kept + rows quarantined, checked on the written data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from raymlops.data.errors import ours
from raymlops.data.rules import (
    REASON_COLUMN,
    BatchOutcome,
    Check,
    ValidationReport,
    compile_checks,
    evaluate,
    split_batch,
    type_problems,
)
from raymlops.data.snapshot import create_snapshot
from raymlops.exceptions import IntegrityError, ValidationError

if TYPE_CHECKING:
    import ray.data

    from raymlops.data.snapshot import SnapshotInfo
    from raymlops.store.home import Store

__all__ = ["POLICIES", "RulesFailed", "ValidationResult", "checks_from_config", "validate"]

POLICIES = ("fail", "quarantine")


class RulesFailed(ValidationError):
    """Rows broke the schema or the rules under the ``fail`` policy; ``report`` has the counts."""

    def __init__(self, report: ValidationReport) -> None:
        super().__init__(f"data validation failed: {report.message()}")
        self.report = report


@dataclass
class ValidationResult:
    """What :func:`validate` did: the rows that go on, the report, and the quarantine snapshot."""

    dataset: ray.data.Dataset
    report: ValidationReport
    quarantine: SnapshotInfo | None = None

    @property
    def rows_in(self) -> int:
        return self.report.rows_in

    @property
    def rows_kept(self) -> int:
        return self.report.rows_kept

    @property
    def rows_quarantined(self) -> int:
        return self.report.rows_quarantined

    def summary(self) -> dict[str, Any]:
        """The report without examples: what a snapshot manifest records."""
        d = self.report.to_dict()
        d["checks"] = [{k: v for k, v in c.items() if k != "examples"} for c in d["checks"]]
        return d


def checks_from_config(data: Any) -> list[Check]:
    """The row checks of a :class:`raymlops.config.DataConfig` (``schema`` specs, then ``rules``)."""
    return compile_checks(getattr(data, "rules", []), getattr(data, "expected_schema", {}))


def _table(batch: pa.Table | pa.RecordBatch) -> pa.Table:
    return batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])


def validate(
    ds: ray.data.Dataset,
    checks: Sequence[Check],
    policy: str = "fail",
    *,
    specs: Mapping[str, Any] | None = None,
    store: Store | None = None,
    source: str = "",
    reason: str | None = None,
) -> ValidationResult:
    """Check every row of ``ds`` (see the module docstring). ``specs``: ``data.schema``, for the
    column types; ``store`` and ``source``: where the quarantine snapshot goes and what it came
    from (without a store, quarantined rows are dropped, and only counted)."""
    if policy not in POLICIES:
        raise ValidationError(f"policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    with ours():  # a ValidationError raised in a Ray task comes back as itself
        return _validate(ds, list(checks), policy, specs, store, source, reason)


def _validate(ds: ray.data.Dataset, checks: list[Check], policy: str, specs: Mapping[str, Any] | None,
              store: Store | None, source: str, reason: str | None) -> ValidationResult:
    ds = ds.materialize()
    schema = ds.schema()
    arrow = schema.base_schema if schema is not None and hasattr(schema, "base_schema") else schema
    if arrow is not None and not isinstance(arrow, pa.Schema):
        arrow = pa.schema(list(zip(schema.names, schema.types, strict=True)))
    if arrow is not None:
        problems = type_problems(arrow, specs, checks)
        if problems:
            raise ValidationError("data validation failed: " + "; ".join(problems))
        if REASON_COLUMN in arrow.names and policy == "quarantine":
            raise ValidationError(f"the data already has a column {REASON_COLUMN!r}, which quarantine adds")
    if not checks:
        rows = ds.count()
        return ValidationResult(ds, ValidationReport(policy, [], BatchOutcome(rows=rows)))

    def run(batch: pa.Table) -> pa.Table:
        return pa.table({"o": pa.array([evaluate(_table(batch), checks).to_json()], type=pa.binary())})

    outcome = BatchOutcome(violations={c.name: 0 for c in checks})
    batches: Iterable[Any] = ds.map_batches(run, batch_format="pyarrow", batch_size=None).iter_batches(
        batch_format="pyarrow", batch_size=None)
    for batch in batches:  # in row order (preserve_order): example row numbers are global
        for blob in batch.column("o").to_pylist():
            outcome = outcome.merge(BatchOutcome.from_json(blob))
    report = ValidationReport(policy, checks, outcome)
    if report.passed:
        return ValidationResult(ds, report)
    if policy == "fail":
        raise RulesFailed(report)

    good = ds.map_batches(lambda b: split_batch(_table(b), checks, keep=True), batch_format="pyarrow",
                          batch_size=None).materialize()
    bad = ds.map_batches(lambda b: split_batch(_table(b), checks, keep=False), batch_format="pyarrow",
                         batch_size=None).materialize()
    kept, quarantined = good.count(), bad.count()
    if kept != report.rows_kept or quarantined != report.rows_quarantined or kept + quarantined != report.rows_in:
        raise IntegrityError(f"validation counts do not add up: {report.rows_in} rows in, {kept} kept, "
                             f"{quarantined} quarantined (expected {report.rows_kept} and {report.rows_quarantined})")
    snap = None
    if store is not None:
        snap = create_snapshot(store, bad, source or "unknown", reason, kind="quarantine",
                               validation=report.to_dict() | {"quarantine_snapshot": None})
        if snap.rows != quarantined:
            raise IntegrityError(f"quarantine snapshot {snap.short} holds {snap.rows} rows, expected {quarantined}")
        report.quarantine_snapshot = snap.id
    return ValidationResult(good, report, snap)
