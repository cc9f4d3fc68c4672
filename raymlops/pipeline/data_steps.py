"""ingest → schema → validate → snapshot → data_drift: the data half of a run.

``ingest`` reads the source and applies the transforms on Ray Data; ``schema`` checks the
target and features; ``validate`` runs ``data.schema`` and ``data.rules`` on every row
(``data.on_invalid``: ``fail`` stops the run, ``quarantine`` puts the bad rows in a quarantine
snapshot); ``snapshot`` commits the rows that go on as a content-addressed snapshot, profiled
in the same pass (on the reference's bins when there is a reference); ``data_drift`` compares
it with the reference (``data.reference``, else the champion's training snapshot) and applies
``data.drift_gate``. The first four are one cache entry (:class:`DataCache`): unchanged source,
transforms and data section read nothing again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raymlops import audit
from raymlops.data.blocks import widen_schemas
from raymlops.data.errors import read_error
from raymlops.data.schema import check_category_counts, check_training_schema, infer_schema
from raymlops.data.snapshot import create_snapshot, snapshot_info, verify_snapshot
from raymlops.data.sources import check_local_source, open_source, redact_uri
from raymlops.data.transforms import apply, code_hash, module_fingerprint, resolve
from raymlops.data.validate import RulesFailed, checks_from_config, validate
from raymlops.exceptions import IntegrityError, NotFound, ValidationError
from raymlops.pipeline.cache import fingerprint, source_fingerprint
from raymlops.pipeline.context import RunContext, check_slice_columns
from raymlops.pipeline.failures import Failure, frames, unwrap
from raymlops.pipeline.step import CacheGroup, Restored, Step

__all__ = ["DataCache", "DataDriftStep", "DriftIn", "DriftOut", "IngestOut", "IngestStep", "SchemaIn", "SchemaOut",
           "SchemaStep", "SnapshotIn", "SnapshotOut", "SnapshotStep", "ValidateIn", "ValidateOut", "ValidateStep",
           "data_key", "schema_key"]


# -- inputs and outputs ----------------------------------------------------------------------------
@dataclass(frozen=True)
class IngestOut:
    dataset: Any  # the materialized Ray Dataset (None when the data steps came from the cache)
    rows: int
    bytes: int
    snapshot: Any = None  # from the cache: the snapshot these rows were committed as (SnapshotInfo)


@dataclass(frozen=True)
class SchemaIn:
    dataset: Any = None  # a Ray Dataset to sample, or
    schema: Any = None  # a snapshot's schema (raymlops.data.schema)


@dataclass(frozen=True)
class SchemaOut:
    features: list[str]


@dataclass(frozen=True)
class ValidateIn:
    dataset: Any  # a Ray Dataset


@dataclass(frozen=True)
class ValidateOut:
    dataset: Any  # the rows that go on (None when from the cache)
    summary: dict[str, Any] | None  # the validation report (checks and counts)
    quarantine: str | None  # the quarantine snapshot's id


@dataclass(frozen=True)
class SnapshotIn:
    dataset: Any  # a Ray Dataset of the rows to commit
    validation: dict[str, Any] | None = None


@dataclass(frozen=True)
class SnapshotOut:
    snapshot: Any  # raymlops.data.snapshot.SnapshotInfo
    reference: Any = None  # the data_drift reference found while profiling (raymlops.data.drift.Reference)


@dataclass(frozen=True)
class DriftIn:
    snapshot_id: str
    reference: Any  # raymlops.data.drift.Reference, or None: none yet


@dataclass(frozen=True)
class DriftOut:
    report: dict[str, Any]


# -- cache keys ------------------------------------------------------------------------------------
def data_key(ctx: RunContext) -> str | None:
    """Source files, transforms (and their code) and the data section: None when the source
    cannot be listed (the data steps then always run)."""
    cfg = ctx.config
    source = source_fingerprint(cfg.data.source, cfg.data.options)
    if source is None:
        return None
    transforms = []
    for entry in cfg.data.transforms:
        spec = getattr(entry, entry.kind)
        module = spec.split(":", 1)[0] if isinstance(spec, str) and ":" in spec else None
        transforms.append({"kind": entry.kind, "spec": spec, "code": module_fingerprint(module) if module else None})
    # the rest of the data section too (rules, schema, policy): any change there reads again
    data = cfg.data.model_dump(mode="json", exclude={"target", "features", "holdout_fraction", "options",
                                                     "split_key", "reference", "drift_gate", "drift"})
    return fingerprint("ingest", {"source": source, "data": data, "transforms": transforms})


def schema_key(ctx: RunContext, key: str | None) -> str | None:
    cfg = ctx.config
    return None if key is None else fingerprint("schema", {"ingest": key, "target": cfg.data.target,
                                                           "features": cfg.data.features})


def _validation_detail(summary: dict[str, Any] | None, quarantine: str | None) -> str:
    if not summary:
        return "no checks recorded"
    checks = summary.get("checks", [])
    rows_in = summary.get("rows_in", 0)
    if not checks:
        return f"{rows_in} rows; no data.schema or data.rules to check"
    bad = summary.get("rows_quarantined", 0)
    if not bad:
        return f"{rows_in} rows passed {len(checks)} check(s)"
    broken = ", ".join(f"{c['name']}: {c['violations']}" for c in checks if c.get("violations"))
    where = f" to quarantine snapshot {quarantine[:12]}" if quarantine else ""
    return f"{rows_in} rows in, {summary.get('rows_kept', 0)} kept, {bad} quarantined{where} ({broken})"


# -- the steps -------------------------------------------------------------------------------------
#: Arrow's error for a table with two columns of one name (a CSV header that repeats one)
_DUPLICATE_FIELD = re.compile(r'Field "(.+?)" exists (\d+) times in schema')


class IngestStep(Step[None, IngestOut]):
    """Read ``data.source`` and apply ``data.transforms`` on Ray Data."""

    name = "ingest"
    needs_ray = True

    def take(self, ctx: RunContext, outputs: Mapping[str, Any]) -> None:
        return None

    def cache_key(self, ctx: RunContext, inputs: None = None) -> str | None:
        return data_key(ctx)

    def describe_inputs(self, ctx: RunContext, inputs: None) -> dict[str, Any]:
        cfg = ctx.config
        return {"source": cfg.data.source, "format": cfg.data.format,
                "transforms": [t.model_dump(exclude_none=True) for t in cfg.data.transforms]}

    def run(self, ctx: RunContext, inputs: None = None) -> IngestOut:
        cfg, step = ctx.config, ctx.step
        transforms = resolve(cfg.data.transforms)  # a bad entry is a ConfigError before Ray starts
        if not cfg.data.options:
            check_local_source(cfg.data.source)  # so is a local path that does not exist
        ctx.connect()
        ds = self._read(ctx, transforms)
        step.rows, step.bytes = ds.count(), ds.size_bytes()
        step.outputs = {"rows": step.rows, "columns": ds.columns()}
        done = f", {len(transforms)} transform(s)" if transforms else ""
        step.detail = f"{step.rows} rows from {cfg.data.source}{done}"
        return IngestOut(ds, step.rows, step.bytes)

    @staticmethod
    def _read(ctx: RunContext, transforms: list[Any]) -> Any:
        """Read and transform the source on Ray Data, once more when a worker node (or an actor or
        object with it) was lost meanwhile: the read is deterministic, so the retry reads the same rows."""
        import ray.exceptions as rex


        lost = (rex.ActorDiedError, rex.NodeDiedError, rex.ObjectLostError, rex.OwnerDiedError,
                rex.ActorUnavailableError, rex.WorkerCrashedError)
        for attempt in (1, 2):
            try:
                return apply(open_source(ctx.config.data), transforms).materialize()
            except Exception as exc:  # noqa: BLE001  # only Ray's lost-work errors are retried
                inner = unwrap(exc)
                twice = _DUPLICATE_FIELD.search(str(inner))
                if twice:  # Arrow's words from inside a read task: say which column, and what to do
                    raise ValidationError(
                        f"data.source: column {twice.group(1)!r} appears {twice.group(2)} times in the header of "
                        f"{ctx.config.data.source!r}; give every column a name of its own") from None
                unreadable = read_error(exc, ctx.config.data.source)  # Ray Data's words without pyarrow's reason
                if unreadable is not None:
                    raise unreadable from None
                # Ray Data may hand the lost actor's error back wrapped in one it cannot deserialize
                named = isinstance(exc, rex.RayError) and any(t.__name__ in str(exc) for t in lost)
                if attempt == 2 or not (isinstance(inner, lost) or isinstance(exc, lost) or named):
                    raise
                what = next((t.__name__ for t in lost if isinstance(inner, t) or t.__name__ in str(exc)),
                            type(inner).__name__)
                ctx.progress(f"ingest: {what} (a node or worker was lost); reading the source again")
        raise AssertionError("unreachable")

    def explain(self, ctx: RunContext, exc: BaseException, failure: Failure) -> Failure:
        """A remote failure inside a ``map_batches`` function names that entry of data.transforms."""
        if not failure.remote:
            return failure

        try:
            transforms = resolve(ctx.config.data.transforms)
        except Exception:  # noqa: BLE001  # nothing more to say than the failure itself
            return failure
        seen = {(f.file, f.func) for f in frames(failure.traceback)}
        for t in transforms:
            if t.code_location() in seen:
                failure.context = f"{t.key} ({t.spec}) raised"
                break
        return failure


class SchemaStep(Step[SchemaIn, SchemaOut]):
    """Check ``data.target`` and ``data.features`` against the data's schema."""

    name = "schema"

    def take(self, ctx: RunContext, outputs: Mapping[str, Any]) -> SchemaIn:
        ingest = outputs["ingest"]
        if ingest.dataset is not None:
            return SchemaIn(dataset=ingest.dataset)
        return SchemaIn(schema=ingest.snapshot.schema)  # the data steps came from the cache

    def cache_key(self, ctx: RunContext, inputs: SchemaIn) -> str | None:
        return schema_key(ctx, data_key(ctx))

    def describe_inputs(self, ctx: RunContext, inputs: SchemaIn) -> dict[str, Any]:
        return {"target": ctx.config.data.target, "features": ctx.config.data.features}

    def run(self, ctx: RunContext, inputs: SchemaIn) -> SchemaOut:
        cfg, step = ctx.config, ctx.step
        schema = inputs.schema
        if schema is None:

            sample = _one_table(ctx.ray().get(inputs.dataset.limit(100_000).to_arrow_refs()), cfg.data.source)
            schema = infer_schema(sample)
            step.rows = sample.num_rows
        spec = cfg.data.expected_schema.get(cfg.data.target)
        features = check_training_schema(schema, cfg.data.target, cfg.data.features,
                                         target_checked=spec is not None and spec.nullable is False)
        check_slice_columns(cfg.gate.slices, schema.names)  # said now, not at evaluate after all of training
        if inputs.schema is None:  # an id or free text among the string features: refused before the snapshot
            check_category_counts(sample, features)
        step.outputs = {"features": features}
        step.detail = f"{len(features)} features, target {cfg.data.target!r}"
        return SchemaOut(features)


def _one_table(blocks: list[Any], source: str) -> Any:
    """The sample's blocks as one table, of one schema (:func:`~raymlops.data.blocks.widen_schemas`);
    a source with no rows, or whose files do not share their columns or types, is a ValidationError
    saying so (Arrow's own words name neither)."""
    import pyarrow as pa

    tables = [t for t in blocks if t.num_rows]
    if not tables:
        raise ValidationError(f"data.source: {source!r} holds no rows")
    # types inferred file by file: one for all, columns matched by name (a ValidationError names one
    # that some files lack)
    schema = widen_schemas([t.schema for t in tables], source)
    return pa.concat_tables([t.select(schema.names).cast(schema) for t in tables])


class ValidateStep(Step[ValidateIn, ValidateOut]):
    """``data.schema`` and ``data.rules`` on every row; ``data.on_invalid`` decides what bad rows do."""

    name = "validate"
    needs_ray = True

    def take(self, ctx: RunContext, outputs: Mapping[str, Any]) -> ValidateIn:
        return ValidateIn(outputs["ingest"].dataset)

    def cache_key(self, ctx: RunContext, inputs: ValidateIn) -> str | None:
        return data_key(ctx)

    def describe_inputs(self, ctx: RunContext, inputs: ValidateIn) -> dict[str, Any]:
        cfg = ctx.config
        return {"rules": [r.expr for r in cfg.data.rules], "schema": sorted(cfg.data.expected_schema),
                "on_invalid": cfg.data.on_invalid}

    def run(self, ctx: RunContext, inputs: ValidateIn) -> ValidateOut:
        cfg, step = ctx.config, ctx.step
        ctx.connect()
        checks = checks_from_config(cfg.data)
        try:
            checked = validate(inputs.dataset, checks, cfg.data.on_invalid, specs=cfg.data.expected_schema,
                               store=ctx.store, source=cfg.data.source, reason=ctx.reason)
        except RulesFailed as exc:
            _audit_validation(ctx, "failed", exc.report.to_dict(), None)
            raise
        quarantine = checked.quarantine.id if checked.quarantine is not None else None
        summary = checked.summary()
        ctx.result.validation = summary | {"quarantine": quarantine}
        step.rows = checked.rows_in
        step.outputs = {"rows_in": checked.rows_in, "rows_kept": checked.rows_kept,
                        "rows_quarantined": checked.rows_quarantined, "quarantine": quarantine}
        step.detail = _validation_detail(ctx.result.validation, quarantine)
        if checks:
            _audit_validation(ctx, "quarantined" if quarantine else "passed", summary, quarantine)
        if checked.rows_kept == 0:
            raise ValidationError(f"data validation: every one of the {checked.rows_in} rows was quarantined"
                                  f" ({step.detail}); nothing is left to train on")
        return ValidateOut(checked.dataset, summary, quarantine)


def _audit_validation(ctx: RunContext, verdict: str, report: dict[str, Any], quarantine: str | None) -> None:
    """One audit record per validation verdict (when there was something to check)."""

    cfg = ctx.config
    ids = {"source": redact_uri(cfg.data.source)} | ({"quarantine": quarantine} if quarantine else {})
    counts = {k: report.get(k) for k in ("rows_in", "rows_kept", "rows_quarantined")}
    broken = {c["name"]: c["violations"] for c in report.get("checks", []) if c.get("violations")}
    with ctx.store.metadata.transaction() as conn:
        audit.append(conn, f"data.{verdict}", ids, ctx.reason,
                     {"config_hash": cfg.config_hash(), "policy": cfg.data.on_invalid, **counts, "violations": broken})


class SnapshotStep(Step[SnapshotIn, SnapshotOut]):
    """Commit the rows as a content-addressed snapshot, profiled in the same pass."""

    name = "snapshot"
    needs_ray = True
    requires = ("validate",)

    def take(self, ctx: RunContext, outputs: Mapping[str, Any]) -> SnapshotIn:
        validated = outputs["validate"]
        return SnapshotIn(validated.dataset, validated.summary)

    def cache_key(self, ctx: RunContext, inputs: SnapshotIn) -> str | None:
        key = data_key(ctx)
        return None if key is None else fingerprint("snapshot", {"ingest": key})

    def run(self, ctx: RunContext, inputs: SnapshotIn) -> SnapshotOut:
        # pyarrow.parquet: only when the step runs (`raymlops runs` reads run history from here)
        from raymlops.data.drift import find_reference

        cfg, step = ctx.config, ctx.step
        ctx.connect()
        transforms = resolve(cfg.data.transforms)
        reference = find_reference(ctx.store, cfg.name, cfg.data.reference)
        snap = create_snapshot(
            ctx.store, inputs.dataset, cfg.data.source, reason=ctx.reason, transform_hash=code_hash(transforms),
            transforms=[t.describe() for t in transforms], validation=inputs.validation,
            reference=None if reference is None else reference.profile,
            verify_existing=not ctx.use_cache,  # --no-cache: a stored copy that fails its manifest is written again
        )
        ctx.result.snapshot = snap.id
        step.status = "ran" if snap.new or snap.repaired else "cached"
        step.rows, step.bytes = snap.rows, snap.bytes
        step.outputs = {"snapshot": snap.id, "new": snap.new} | ({"repaired": list(snap.repaired)} if snap.repaired
                                                                 else {})
        state = "new" if snap.new else (f"stored copy repaired ({'; '.join(snap.repaired[:3])})" if snap.repaired
                                        else "unchanged data, stored nothing")
        step.detail = f"{snap.short}, {snap.rows} rows, {state}"
        return SnapshotOut(snap, reference)


class DataDriftStep(Step[DriftIn, DriftOut]):
    """Compare the snapshot with the reference; ``data.drift_gate`` decides (fail / warn / off)."""

    name = "data_drift"
    requires = ("snapshot",)

    def take(self, ctx: RunContext, outputs: Mapping[str, Any]) -> DriftIn:
        # pyarrow.parquet: only when the step runs (`raymlops runs` reads run history from here)
        from raymlops.data.drift import find_reference

        cfg, snap = ctx.config, outputs["snapshot"]
        reference = snap.reference
        if reference is None and cfg.data.drift_gate != "off":
            reference = find_reference(ctx.store, cfg.name, cfg.data.reference)
        return DriftIn(snap.snapshot.id, reference)

    def skip(self, ctx: RunContext, inputs: DriftIn) -> str | None:
        if ctx.config.data.drift_gate == "off":
            return "data.drift_gate is off"
        if inputs.reference is None:
            return "no reference yet: no champion, and data.reference is not set"
        if inputs.reference.snapshot_id == inputs.snapshot_id:
            return f"the data is the reference itself ({inputs.reference.why})"
        return None

    def describe_inputs(self, ctx: RunContext, inputs: DriftIn) -> dict[str, Any]:
        ref = inputs.reference
        return {"snapshot": inputs.snapshot_id, "reference": ref.snapshot_id, "why": ref.why,
                "gate": ctx.config.data.drift_gate}

    def run(self, ctx: RunContext, inputs: DriftIn) -> DriftOut:
        # pyarrow.parquet: only when the step runs (`raymlops runs` reads run history from here)
        from raymlops.data.drift import apply_gate, check_needs_ray, check_snapshot, settings_from_config

        cfg, step, reference = ctx.config, ctx.step, inputs.reference
        settings = settings_from_config(cfg.data.drift)
        if check_needs_ray(ctx.store, inputs.snapshot_id, reference, settings):
            ctx.connect()
        report = check_snapshot(ctx.store, inputs.snapshot_id, reference, settings, reason=ctx.reason)
        verdict = "warned"
        try:
            verdict = apply_gate(report, cfg.data.drift_gate, reference)
        finally:
            ctx.result.data_drift = {"reference": reference.snapshot_id, "why": reference.why, "verdict": verdict,
                                     "dataset_drift": report.dataset_drift, "share": round(report.share, 4),
                                     "drifted_columns": report.drifted_columns, "tested": len(report.tested)}
            step.outputs = dict(ctx.result.data_drift)
        step.detail = (f"against {reference.snapshot_id[:12]} ({reference.why}): {report.summary()}"
                       + (" — data.drift_gate is 'warn': going on" if verdict == "warned" else ""))
        if verdict == "warned":
            ctx.progress(f"warning: data drift against {reference.snapshot_id[:12]}: {report.summary()}")
        return DriftOut(dict(ctx.result.data_drift))


# -- the cache entry of ingest → snapshot --------------------------------------------------------
class DataCache(CacheGroup):
    """ingest, schema, validate and snapshot as one entry (keyed by :func:`data_key`) pointing at
    the snapshot; schema has an entry of its own (target and features may change alone)."""

    names = ("ingest", "schema", "validate", "snapshot")

    def __init__(self) -> None:
        self._key: str | None = None
        self._known = False

    def key(self, ctx: RunContext) -> str | None:
        if not self._known:
            self._key, self._known = data_key(ctx), True
        return self._key

    def key_of(self, ctx: RunContext, name: str, outputs: Mapping[str, Any]) -> str | None:
        key = self.key(ctx)
        if name == "schema":
            return schema_key(ctx, key)
        if name == "snapshot":
            return None if key is None else fingerprint("snapshot", {"ingest": key})
        return key

    def restore(self, ctx: RunContext, outputs: Mapping[str, Any]) -> dict[str, Restored] | None:
        cfg = ctx.config
        key = self.key(ctx)
        hit = ctx.cache.get(key) if key and ctx.use_cache else None
        if key is None or hit is None:
            return None
        try:
            snap = snapshot_info(ctx.store, hit["snapshot"])
            problems = verify_snapshot(ctx.store, snap.id)
        except (NotFound, IntegrityError) as exc:
            problems = [str(exc)]
        if problems:
            ctx.progress(f"cache: snapshot {hit['snapshot'][:12]} of an earlier run is unusable "
                         f"({problems[0]}); ingesting again")
            return None
        validation = hit.get("validation")
        ctx.result.snapshot, ctx.result.validation = snap.id, validation
        out = {
            "ingest": Restored(IngestOut(None, snap.rows, snap.bytes, snap),
                               f"{snap.rows} rows, {cfg.data.source} unchanged since run {hit['_run']}",
                               {"snapshot": snap.id}, snap.rows, snap.bytes,
                               {"source": cfg.data.source, "transforms": len(cfg.data.transforms)}),
            "validate": Restored(ValidateOut(None, validation, hit.get("quarantine")),
                                 _validation_detail(validation, hit.get("quarantine")),
                                 {"validation": validation, "quarantine": hit.get("quarantine")}),
            "snapshot": Restored(SnapshotOut(snap), f"{snap.short}, {snap.rows} rows", {"snapshot": snap.id},
                                 snap.rows, snap.bytes),
        }
        schema_hit = ctx.cache.get(schema_key(ctx, key) or "")
        if schema_hit is not None:
            features = list(schema_hit["features"])
            out["schema"] = Restored(SchemaOut(features), f"{len(features)} features, target {cfg.data.target!r}",
                                     {"features": features})
        return out

    def entries(self, ctx: RunContext, outputs: Mapping[str, Any], records: Mapping[str, Any],
                restored: set[str]) -> list[tuple[str, str, dict[str, Any]]]:
        key = self.key(ctx)
        skey, snap_key = schema_key(ctx, key), self.key_of(ctx, "snapshot", outputs)
        if key is None or skey is None or snap_key is None:
            return []
        found = [(skey, "schema", {"features": outputs["schema"].features})] if "schema" not in restored else []
        if "snapshot" in restored:
            return found
        snap, checked = outputs["snapshot"].snapshot, outputs["validate"]
        value = {"snapshot": snap.id, "rows": snap.rows, "bytes": snap.bytes, "validation": ctx.result.validation,
                 "quarantine": checked.quarantine}
        return [(key, "ingest", value), *found, (snap_key, "snapshot", value)]
