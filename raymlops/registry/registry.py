"""Model versions with artifact hash, signature, metrics, gate verdict and lineage.

A version is written in two stages: the joblib artifact goes to ``models/<name>/<sha256>/`` via an
atomic write, then one SQLite transaction records the version, its aliases and the audit
record. A crash in between leaves an unreferenced file, never a version without its artifact.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import joblib

from raymlops import audit
from raymlops.exceptions import IntegrityError, NotFound, ValidationError
from raymlops.hooks import emit
from raymlops.registry.spec import load_artifact
from raymlops.store.home import Store

CHAMPION = "champion"
_ALIAS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


# what every registered version's record holds (register_model writes them all), and their types
RECORD_FIELDS: dict[str, type] = {"signature": dict, "metrics": dict, "gate": dict, "lineage": dict, "tune": dict}


def check_record(model_id: str, record: Any) -> dict[str, Any]:
    """``record`` (a version's stored record) when it has every field of :data:`RECORD_FIELDS`
    with its type and a signature with inputs; else ValidationError naming the field."""
    where = f"model {model_id}: stored record"
    if not isinstance(record, dict):
        raise ValidationError(f"{where}: expected a mapping, found {type(record).__name__}")
    for name, kind in RECORD_FIELDS.items():
        if name not in record:
            raise ValidationError(f"{where}: missing field {name!r}")
        if not isinstance(record[name], kind):
            raise ValidationError(f"{where}: field {name!r}: expected {kind.__name__}, "
                                  f"found {type(record[name]).__name__}")
    inputs = record["signature"].get("inputs")
    if not isinstance(inputs, list) or not all(isinstance(i, dict) and "name" in i for i in inputs):
        raise ValidationError(f"{where}: field 'signature.inputs': expected a list of inputs with a name")
    return record


@dataclass(frozen=True)
class ModelVersion:
    """One registered version. ``record`` is its stored JSON (signature, metrics, gate, lineage,
    tune, and ``native`` for an engine's own model file), checked when read; the properties give
    its parts. :meth:`raymlops.registry.spec.ModelSpec.of` is what loaders and replicas get."""

    id: str
    name: str
    version: int
    status: str
    snapshot_id: str
    artifact_key: str
    artifact_sha256: str
    created_at: float
    record: dict[str, Any]

    @property
    def signature(self) -> dict[str, Any]:
        """Inputs (name, type, training range), output kind, target and classes."""
        return dict(self.record["signature"])

    @property
    def features(self) -> list[str]:
        """The input columns, in the order the model takes them."""
        return [str(i["name"]) for i in self.record["signature"]["inputs"]]

    @property
    def metrics(self) -> dict[str, Any]:
        return dict(self.record["metrics"])

    @property
    def gate(self) -> dict[str, Any]:
        """The gate's verdict: ``status`` (passed / rejected), ``reasons`` and its rules."""
        return dict(self.record["gate"])

    @property
    def lineage(self) -> dict[str, Any]:
        """Snapshot, config (and its hash), code, packages, seed, run, calibration."""
        return dict(self.record["lineage"])

    @property
    def tune(self) -> dict[str, Any]:
        """The search: trials and the ``best`` one's config (empty for a single fit)."""
        return dict(self.record["tune"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "version": self.version, "status": self.status,
            "snapshot_id": self.snapshot_id, "artifact_key": self.artifact_key,
            "artifact_sha256": self.artifact_sha256, "created_at": self.created_at, **self.record,
        }


def _row_to_version(row: Any) -> ModelVersion:
    return ModelVersion(
        id=row["id"], name=row["name"], version=row["version"], status=row["status"],
        snapshot_id=row["snapshot_id"], artifact_key=row["artifact_key"],
        artifact_sha256=row["artifact_sha256"], created_at=row["created_at"],
        record=check_record(row["id"], json.loads(row["record_json"])),
    )


def register_model(
    store: Store,
    name: str,
    model: Any,
    *,
    snapshot_id: str,
    signature: dict[str, Any],
    metrics: dict[str, float],
    gate: dict[str, Any],
    lineage: dict[str, Any],
    tune: dict[str, Any] | None = None,
    reason: str | None = None,
    alias: str | None = CHAMPION,
) -> ModelVersion:
    """Register a new version of ``name``; a passed gate moves ``alias`` (``champion`` by default;
    None: no alias, e.g. a retrained challenger that must earn promotion first) to it."""
    if not _ALIAS.match(name):
        raise ValidationError(f"model name {name!r}: expected letters, digits, '-' or '_' (no ':' or '@')")
    buf = io.BytesIO()
    joblib.dump(model, buf)
    passed = gate.get("status") == "passed"
    status = "registered" if passed else "rejected"
    record = {"signature": signature, "metrics": metrics, "gate": gate, "lineage": lineage, "tune": tune or {}}
    # content-addressed key: a writer racing us for the same version number can never overwrite
    # our artifact, and identical bytes are stored once
    payload = buf.getvalue()
    sha = hashlib.sha256(payload).hexdigest()
    key = f"models/{name}/{sha}/model.joblib"
    if not store.artifacts.exists(key):
        store.artifacts.write_bytes(key, payload)
    native = getattr(model, "native_file", None)
    if callable(native):  # an engine's own model file (XGBoost UBJSON, LightGBM text), stored beside it
        file_name, data = native()
        native_key = f"models/{name}/{sha}/{file_name}"
        if not store.artifacts.exists(native_key):
            store.artifacts.write_bytes(native_key, data)
        record["native"] = {"key": native_key, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                            "framework": getattr(model, "framework", None)}
    record_json = json.dumps(record, sort_keys=True, default=str)
    with store.metadata.read() as conn:
        row = conn.execute("SELECT COALESCE(MAX(version), 0) FROM models WHERE name = ?", (name,)).fetchone()
    version = int(row[0]) + 1
    while True:
        with store.metadata.transaction() as conn:
            taken = conn.execute("SELECT 1 FROM models WHERE name = ? AND version = ?", (name, version)).fetchone()
            if taken:  # another writer registered this number meanwhile: take the next one
                version += 1
                continue
            model_id = f"{name}:v{version}"
            now = time.time()
            conn.execute(
                "INSERT INTO models(id, name, version, created_at, status, snapshot_id, artifact_key,"
                " artifact_sha256, record_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (model_id, name, version, now, status, snapshot_id, key, sha, record_json),
            )
            how = {"config_hash": lineage.get("config_hash"), "code": lineage.get("code")}
            # what was registered, bound to the chain: `audit verify` finds a later edit of the row
            # (its metrics, gate verdict, lineage or status; the artifact's hash)
            bound = {"status": status, "artifact_sha256": sha,
                     "record_sha256": hashlib.sha256(record_json.encode()).hexdigest()}
            # the run's id among the ids (`audit --id RUN` lists its whole trail), where a run registers it
            run = {"run": str(lineage["run_id"])} if lineage.get("run_id") else {}
            audit.append(conn, "model.registered", {"model": model_id, "snapshot": snapshot_id, **run},
                         reason, {**how, **bound})
            moved_from = None
            if passed and alias:
                moved_from = _set_alias(conn, name, alias, model_id, "gate passed")
                audit.append(conn, "alias.moved", {"model": model_id, "alias": alias, "previous": moved_from, **run},
                             "gate passed", how)
            elif not passed:
                audit.append(conn, "gate.rejected", {"model": model_id, **run}, "; ".join(gate.get("reasons", [])),
                             how)
        break
    emit(store.home, "model.registered", {"model": model_id, "name": name, "version": version, "status": status,
                                          "snapshot": snapshot_id, "metrics": metrics, "reason": reason})
    if passed and alias:
        emit(store.home, "model.promoted", {"model": model_id, "name": name, "alias": alias,
                                            "previous": moved_from, "reason": "gate passed"})
    return get_model(store, model_id)


def _set_alias(conn: Any, name: str, alias: str, model_id: str, reason: str | None = None) -> str | None:
    """Point ``name@alias`` at ``model_id`` and record the move; returns the previous target."""
    row = conn.execute("SELECT model_id FROM aliases WHERE name = ? AND alias = ?", (name, alias)).fetchone()
    previous = row[0] if row else None
    now = time.time()
    conn.execute(
        "INSERT INTO aliases(name, alias, model_id, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT(name, alias) DO UPDATE SET model_id = excluded.model_id, updated_at = excluded.updated_at",
        (name, alias, model_id, now),
    )
    conn.execute(
        "INSERT INTO alias_history(name, alias, from_model, to_model, ts, reason) VALUES (?, ?, ?, ?, ?, ?)",
        (name, alias, previous, model_id, now, reason),
    )
    return str(previous) if previous else None


def promote(store: Store, ref: str, alias: str = CHAMPION, reason: str | None = None) -> ModelVersion:
    """Move ``<name>@<alias>`` to the version ``ref``; a rejected version cannot become champion."""
    version = get_model(store, ref)
    if not _ALIAS.match(alias):
        raise ValidationError(f"alias {alias!r}: expected letters, digits, '-' or '_'")
    if version.status == "rejected" and alias == CHAMPION:
        raise ValidationError(
            f"{version.id} was rejected by the gate ({'; '.join(version.gate.get('reasons', []))});"
            " it cannot become champion"
        )
    if alias == CHAMPION:
        _servable(store, version)
    with store.metadata.transaction() as conn:
        row = conn.execute("SELECT model_id FROM aliases WHERE name = ? AND alias = ?",
                           (version.name, alias)).fetchone()
        if row is not None and row[0] == version.id:
            return version  # already there (a script run twice): nothing moves, so nothing is recorded
        previous = _set_alias(conn, version.name, alias, version.id, reason)
        audit.append(conn, "alias.moved", {"model": version.id, "alias": alias, "previous": previous}, reason,
                     {"command": "promote"})
    emit(store.home, "model.promoted", {"model": version.id, "name": version.name, "alias": alias,
                                        "previous": previous, "reason": reason})
    return version


def rollback(store: Store, name: str, alias: str = CHAMPION, reason: str | None = None) -> ModelVersion:
    """Return ``name@alias`` to the version it pointed at before its latest move (a recorded move
    to the version it already pointed at is no move)."""
    with store.metadata.transaction() as conn:
        rows = conn.execute(
            "SELECT from_model, to_model FROM alias_history WHERE name = ? AND alias = ? ORDER BY seq DESC",
            (name, alias),
        ).fetchall()
        if not rows:
            raise NotFound(f"{name}@{alias} has never been set; nothing to roll back")
        current = rows[0][1]
        previous = next((f for f, t in rows if t == current and f is not None and f != current), None)
        if previous is None:
            raise ValidationError(f"{name}@{alias} has no earlier version to roll back to (it is {current})")
        if alias == CHAMPION:
            row = conn.execute("SELECT * FROM models WHERE id = ?", (previous,)).fetchone()
            if row is not None:
                _servable(store, _row_to_version(row))
        _set_alias(conn, name, alias, previous, reason)
        audit.append(conn, "alias.rolled_back", {"model": previous, "alias": alias, "previous": current}, reason,
                     {"command": "rollback"})
    emit(store.home, "model.rolled_back", {"model": previous, "name": name, "alias": alias, "previous": current,
                                           "reason": reason})
    return get_model(store, previous)


def _servable(store: Store, version: ModelVersion) -> None:
    """An IntegrityError (exit 1) unless ``version``'s artifact is there with its recorded sha256: a
    champion whose file is gone or changed moved the alias, and every replica then refused to load it."""
    problems = artifact_problems(store, version)
    if problems:
        raise IntegrityError(f"{version.id} cannot become champion: {problems[0]} "
                             f"(`raymlops models verify {version.id}`)")


def alias_history(store: Store, name: str) -> list[dict[str, Any]]:
    """Every alias move of model ``name``, oldest first; NotFound (exit 2) when no version has that name."""
    with store.metadata.read() as conn:
        if conn.execute("SELECT 1 FROM models WHERE name = ? LIMIT 1", (name,)).fetchone() is None:
            names = [r[0] for r in conn.execute("SELECT DISTINCT name FROM models ORDER BY name")]
            raise NotFound(f"no model named {name!r} (models: {', '.join(names) or 'none registered'})")
        rows = conn.execute(
            "SELECT alias, from_model, to_model, ts, reason FROM alias_history WHERE name = ? ORDER BY seq", (name,)
        ).fetchall()
    return [dict(r) for r in rows]


def aliases_of(store: Store, model_id: str) -> list[str]:
    with store.metadata.read() as conn:
        rows = conn.execute("SELECT alias FROM aliases WHERE model_id = ? ORDER BY alias", (model_id,)).fetchall()
    return [r[0] for r in rows]


def verify_model(store: Store, ref: str) -> list[str]:
    """Problems with the artifact of ``ref`` (empty when it is present with its recorded sha256)."""
    return artifact_problems(store, get_model(store, ref))


def artifact_problems(store: Store, version: ModelVersion) -> list[str]:
    try:  # the check every loader makes (ArtifactStore), streamed: nothing is loaded
        store.artifacts.verify(version.artifact_key, version.artifact_sha256)
    except NotFound:
        return [f"{version.artifact_key}: missing"]
    except IntegrityError as exc:
        return [str(exc)]
    return []


def get_model(store: Store, ref: str) -> ModelVersion:
    """A version by id (``name:v3``) or alias (``name@champion``)."""
    with store.metadata.read() as conn:
        if "@" in ref:
            name, alias = ref.split("@", 1)
            row = conn.execute("SELECT model_id FROM aliases WHERE name = ? AND alias = ?", (name, alias)).fetchone()
            if row is None:
                raise NotFound(f"model alias {ref!r} not found")
            ref = row[0]
        row = conn.execute("SELECT * FROM models WHERE id = ?", (ref,)).fetchone()
    if row is None:
        raise NotFound(f"model version {ref!r} not found (use name:vN or name@alias)")
    return _row_to_version(row)


def list_models(store: Store, name: str | None = None) -> list[ModelVersion]:
    with store.metadata.read() as conn:
        if name:
            rows = conn.execute("SELECT * FROM models WHERE name = ? ORDER BY version", (name,)).fetchall()
        else:
            rows = conn.execute("SELECT * FROM models ORDER BY name, version").fetchall()
    return [_row_to_version(r) for r in rows]


def load_model(store: Store, version: ModelVersion) -> Any:
    """The fitted estimator, after checking the artifact's sha256 (IntegrityError if changed)."""
    return load_artifact(store.artifacts, version.artifact_key, version.artifact_sha256)
