"""ingest → schema → validate → snapshot → data_drift: the data half of a run.

``ingest`` reads the source and applies the transforms on Ray Data; ``schema`` checks the
target and features; ``validate`` runs ``data.schema`` and ``data.rules`` on every row
(``data.on_invalid``: ``fail`` stops the run, ``quarantine`` puts the bad rows in a quarantine
snapshot); ``snapshot`` commits the rows that go on as a content-addressed snapshot, profiled
in the same pass (on the reference's bins when there is a reference); ``data_drift`` compares
it with the reference (``data.reference``, else the champion's training snapshot) and applies
``data.drift_gate``. The first three are one cache entry: unchanged source, transforms and
data section read nothing again.
"""

from __future__ import annotations

from typing import Any

from raymlops.data.sources import redact_uri
from raymlops.exceptions import IntegrityError, NotFound, ValidationError
from raymlops.pipeline.base import PipelineBase
from raymlops.pipeline.cache import fingerprint, module_fingerprint, source_fingerprint

__all__ = ["DataSteps"]


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


class DataSteps(PipelineBase):
    """The data steps of :class:`raymlops.pipeline.runner.Pipeline`."""

    def _data_key(self) -> str | None:
        cfg = self.config
        source = source_fingerprint(cfg.data.source, cfg.data.options)
        if source is None:
            return None
        transforms = []
        for entry in cfg.data.transforms:
            spec = getattr(entry, entry.kind)
            module = spec.split(":", 1)[0] if isinstance(spec, str) and ":" in spec else None
            transforms.append({"kind": entry.kind, "spec": spec,
                               "code": module_fingerprint(module) if module else None})
        # the rest of the data section too (rules, schema, policy): any change there reads again
        data = cfg.data.model_dump(mode="json", exclude={"target", "features", "holdout_fraction", "options",
                                                         "split_key", "reference", "drift_gate", "drift"})
        return fingerprint("ingest", {"source": source, "data": data, "transforms": transforms})

    def _data_steps(self) -> tuple[Any, list[str]]:
        found = self._cached_data()
        snap, features = found if found is not None else self._read_validate_commit()
        self._data_drift(snap)
        return snap, features

    # -- from the cache ------------------------------------------------------------------------
    def _cached_data(self) -> tuple[Any, list[str]] | None:
        from raymlops.data.schema import check_training_schema
        from raymlops.data.snapshot import snapshot_info, verify_snapshot

        cfg, res = self.config, self.result
        key = self._data_key()
        hit = self.cache.get(key) if key and self.use_cache else None
        if key is None or hit is None:
            return None
        try:
            snap = snapshot_info(self.store, hit["snapshot"])
            problems = verify_snapshot(self.store, snap.id)
        except (NotFound, IntegrityError) as exc:
            problems = [str(exc)]
        if problems:
            self.progress(f"cache: snapshot {hit['snapshot'][:12]} of an earlier run is unusable "
                          f"({problems[0]}); ingesting again")
            return None
        res.snapshot = snap.id
        res.validation = hit.get("validation")
        self._cached("ingest", key, f"{snap.rows} rows, {cfg.data.source} unchanged since run {hit['_run']}",
                     {"snapshot": snap.id}, rows=snap.rows, nbytes=snap.bytes,
                     inputs={"source": cfg.data.source, "transforms": len(cfg.data.transforms)})
        schema_key = self._schema_key(key)
        schema_hit = self.cache.get(schema_key)
        if schema_hit is not None:
            features = list(schema_hit["features"])
            self._cached("schema", schema_key, f"{len(features)} features, target {cfg.data.target!r}",
                         {"features": features})
        else:
            with self._step("schema", schema_key, {"snapshot": snap.id, "target": cfg.data.target}) as step:
                features = check_training_schema(snap.schema, cfg.data.target, cfg.data.features)
                step.outputs = {"features": features}
                step.detail = f"{len(features)} features, target {cfg.data.target!r}"
            self.cache.put(schema_key, "schema", self.run_id, {"features": features})
        self._cached("validate", key, _validation_detail(res.validation, hit.get("quarantine")),
                     {"validation": res.validation, "quarantine": hit.get("quarantine")})
        self._cached("snapshot", fingerprint("snapshot", {"ingest": key}), f"{snap.short}, {snap.rows} rows",
                     {"snapshot": snap.id}, rows=snap.rows, nbytes=snap.bytes)
        return snap, features

    def _read_source(self) -> Any:
        """Read and transform the source on Ray Data, once more when a worker node (or an actor or
        object with it) was lost meanwhile: the read is deterministic, so the retry reads the same rows."""
        import ray.exceptions as rex

        from raymlops.data.sources import open_source
        from raymlops.data.transforms import apply
        from raymlops.pipeline.failures import unwrap

        lost = (rex.ActorDiedError, rex.NodeDiedError, rex.ObjectLostError, rex.OwnerDiedError,
                rex.ActorUnavailableError, rex.WorkerCrashedError)
        for attempt in (1, 2):
            try:
                return apply(open_source(self.config.data), self._transforms).materialize()
            except Exception as exc:  # noqa: BLE001  # only Ray's lost-work errors are retried
                inner = unwrap(exc)
                # Ray Data may hand the lost actor's error back wrapped in one it cannot deserialize
                named = isinstance(exc, rex.RayError) and any(t.__name__ in str(exc) for t in lost)
                if attempt == 2 or not (isinstance(inner, lost) or isinstance(exc, lost) or named):
                    raise
                what = next((t.__name__ for t in lost if isinstance(inner, t) or t.__name__ in str(exc)),
                            type(inner).__name__)
                self.progress(f"ingest: {what} (a node or worker was lost); reading the source again")
        raise AssertionError("unreachable")

    def _schema_key(self, key: str) -> str:
        cfg = self.config
        return fingerprint("schema", {"ingest": key, "target": cfg.data.target, "features": cfg.data.features})

    # -- from the source -----------------------------------------------------------------------
    def _read_validate_commit(self) -> tuple[Any, list[str]]:
        import pyarrow as pa
        import ray

        from raymlops.data.drift import find_reference
        from raymlops.data.schema import check_training_schema, infer_schema
        from raymlops.data.snapshot import create_snapshot
        from raymlops.data.transforms import code_hash, resolve
        from raymlops.data.validate import RulesFailed, checks_from_config, validate

        cfg, store, res = self.config, self.store, self.result
        key = self._data_key()
        with self._step("ingest", key, {"source": cfg.data.source, "format": cfg.data.format,
                                        "transforms": [t.model_dump(exclude_none=True)
                                                       for t in cfg.data.transforms]}) as step:
            self._transforms = resolve(cfg.data.transforms)
            self._connect()
            ds = self._read_source()
            step.rows = ds.count()
            step.bytes = ds.size_bytes()
            step.outputs = {"rows": step.rows, "columns": ds.columns()}
            done = f", {len(self._transforms)} transform(s)" if self._transforms else ""
            step.detail = f"{step.rows} rows from {cfg.data.source}{done}"

        schema_key = None if key is None else self._schema_key(key)
        with self._step("schema", schema_key, {"target": cfg.data.target, "features": cfg.data.features}) as step:
            sample = pa.concat_tables(ray.get(ds.limit(100_000).to_arrow_refs()))
            features = check_training_schema(infer_schema(sample), cfg.data.target, cfg.data.features)
            step.rows = sample.num_rows
            step.outputs = {"features": features}
            step.detail = f"{len(features)} features, target {cfg.data.target!r}"

        with self._step("validate", key, {"rules": [r.expr for r in cfg.data.rules],
                                          "schema": sorted(cfg.data.expected_schema),
                                          "on_invalid": cfg.data.on_invalid}) as step:
            checks = checks_from_config(cfg.data)
            try:
                checked = validate(ds, checks, cfg.data.on_invalid, specs=cfg.data.expected_schema, store=store,
                                   source=cfg.data.source, reason=self.reason)
            except RulesFailed as exc:
                self._audit_validation("failed", exc.report.to_dict(), None)
                raise
            ds = checked.dataset
            quarantine = checked.quarantine.id if checked.quarantine is not None else None
            res.validation = checked.summary() | {"quarantine": quarantine}
            step.rows = checked.rows_in
            step.outputs = {"rows_in": checked.rows_in, "rows_kept": checked.rows_kept,
                            "rows_quarantined": checked.rows_quarantined, "quarantine": quarantine}
            step.detail = _validation_detail(res.validation, quarantine)
            if checks:
                self._audit_validation("quarantined" if quarantine else "passed", checked.summary(), quarantine)
            if checked.rows_kept == 0:
                raise ValidationError(f"data validation: every one of the {checked.rows_in} rows was quarantined"
                                      f" ({step.detail}); nothing is left to train on")

        snap_key = None if key is None else fingerprint("snapshot", {"ingest": key})
        with self._step("snapshot", snap_key) as step:
            self._reference = find_reference(store, cfg.name, cfg.data.reference)
            snap = create_snapshot(
                store, ds, cfg.data.source, reason=self.reason, transform_hash=code_hash(self._transforms),
                transforms=[t.describe() for t in self._transforms], validation=checked.summary(),
                reference=None if self._reference is None else self._reference.profile,
            )
            res.snapshot = snap.id
            step.status = "ran" if snap.new else "cached"
            step.rows, step.bytes = snap.rows, snap.bytes
            step.outputs = {"snapshot": snap.id, "new": snap.new}
            step.detail = f"{snap.short}, {snap.rows} rows, {'new' if snap.new else 'unchanged data, stored nothing'}"
        if key and schema_key and snap_key:
            outputs = {"snapshot": snap.id, "rows": snap.rows, "bytes": snap.bytes, "validation": res.validation,
                       "quarantine": quarantine}
            self.cache.put(key, "ingest", self.run_id, outputs)
            self.cache.put(schema_key, "schema", self.run_id, {"features": features})
            self.cache.put(snap_key, "snapshot", self.run_id, outputs)
        return snap, features

    def _audit_validation(self, verdict: str, report: dict[str, Any], quarantine: str | None) -> None:
        """One audit record per validation verdict (when there was something to check)."""
        from raymlops import audit

        cfg = self.config
        ids = {"source": redact_uri(cfg.data.source)} | ({"quarantine": quarantine} if quarantine else {})
        counts = {k: report.get(k) for k in ("rows_in", "rows_kept", "rows_quarantined")}
        broken = {c["name"]: c["violations"] for c in report.get("checks", []) if c.get("violations")}
        with self.store.metadata.transaction() as conn:
            audit.append(conn, f"data.{verdict}", ids, self.reason,
                         {"config_hash": cfg.config_hash(), "policy": cfg.data.on_invalid, **counts,
                          "violations": broken})

    # -- statistical validation ----------------------------------------------------------------
    def _data_drift(self, snap: Any) -> None:
        from raymlops.data.drift import (
            apply_gate,
            check_needs_ray,
            check_snapshot,
            find_reference,
            settings_from_config,
        )

        cfg, res = self.config, self.result
        if cfg.data.drift_gate == "off":
            self._skip("data_drift", "data.drift_gate is off")
            return
        reference = self._reference if self._reference is not None else find_reference(
            self.store, cfg.name, cfg.data.reference)
        if reference is None:
            self._skip("data_drift", "no reference yet: no champion, and data.reference is not set")
            return
        if reference.snapshot_id == snap.id:
            self._skip("data_drift", f"the data is the reference itself ({reference.why})")
            return
        settings = settings_from_config(cfg.data.drift)
        with self._step("data_drift", inputs={"snapshot": snap.id, "reference": reference.snapshot_id,
                                              "why": reference.why, "gate": cfg.data.drift_gate}) as step:
            if check_needs_ray(self.store, snap.id, reference, settings):
                self._connect()
            report = check_snapshot(self.store, snap.id, reference, settings, reason=self.reason)
            verdict = "warned"
            try:
                verdict = apply_gate(report, cfg.data.drift_gate, reference)
            finally:
                res.data_drift = {"reference": reference.snapshot_id, "why": reference.why, "verdict": verdict,
                                  "dataset_drift": report.dataset_drift, "share": round(report.share, 4),
                                  "drifted_columns": report.drifted_columns, "tested": len(report.tested)}
                step.outputs = dict(res.data_drift)
            step.detail = (f"against {reference.snapshot_id[:12]} ({reference.why}): {report.summary()}"
                           + (" — data.drift_gate is 'warn': going on" if verdict == "warned" else ""))
            if verdict == "warned":
                self.progress(f"warning: data drift against {reference.snapshot_id[:12]}: {report.summary()}")
