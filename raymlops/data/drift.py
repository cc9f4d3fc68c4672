"""Statistical validation of a snapshot against a reference: find the reference, check, store
the result, gate (adapter over :mod:`raymlops.stats.check`).

The reference is ``data.reference`` (any snapshot reference: id, prefix, tag) or, by default,
the training snapshot of the pipeline's champion model. Each check's result is stored as its own
record, keyed by (snapshot, reference, settings): a JSON report under
``checks/<snapshot>/<reference>-<settings>.json`` in the artifact store and a ``drift_checks``
row holding its sha256, written with a ``snapshot.checked`` audit record in one transaction.
Snapshots themselves never change. Checking the same pair with the same settings again reads
the stored record.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from raymlops import audit
from raymlops.data.snapshot import load_profile, resolve_snapshot, snapshot_dataset
from raymlops.exceptions import IntegrityError, NotFound, ValidationError
from raymlops.stats.check import DriftReport, DriftSettings, check
from raymlops.stats.profile import Profile, edges_digest, with_reference_counts

if TYPE_CHECKING:
    from raymlops.store.home import Store

__all__ = [
    "GATE_MODES",
    "DriftDetected",
    "Reference",
    "apply_gate",
    "check_needs_ray",
    "check_snapshot",
    "find_reference",
    "list_checks",
    "load_check",
    "settings_from_config",
    "snapshot_profile",
]

GATE_MODES = ("fail", "warn", "off")


class DriftDetected(ValidationError):
    """``data.drift_gate: fail`` and the dataset drifted; ``report`` has every score."""

    def __init__(self, message: str, report: DriftReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class Reference:
    """The snapshot new data is compared with, its profile, and why it was chosen."""

    snapshot_id: str
    profile: Profile
    why: str


def settings_from_config(drift: Any) -> DriftSettings:
    """:class:`DriftSettings` from a :class:`raymlops.config.DriftConfig` (or None: defaults)."""
    if drift is None:
        return DriftSettings()
    d = drift.model_dump() if hasattr(drift, "model_dump") else dict(drift)
    d["columns"] = None if d.get("columns") is None else tuple(d["columns"])
    return DriftSettings(**d)


def settings_hash(settings: DriftSettings) -> str:
    canon = json.dumps(settings.to_dict(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canon.encode()).hexdigest()[:16]


def snapshot_profile(store: Store, snap_id: str) -> Profile:
    """The snapshot's stored profile; computed with Ray for snapshots made before profiles."""
    prof = load_profile(store, snap_id)
    if prof is None:
        from raymlops.data.profile import profile
        from raymlops.ray_session import ensure_ray

        ensure_ray()
        prof = profile(snapshot_dataset(store, snap_id))
    return prof


def find_reference(store: Store, pipeline: str | None = None, ref: str | None = None) -> Reference | None:
    """``ref`` (``data.reference``) if given, else the champion of ``pipeline``'s training
    snapshot; None when there is neither (a first run)."""
    if ref:
        snap_id = resolve_snapshot(store, ref)
        why = f"data.reference {ref!r}"
    elif pipeline:
        from raymlops.registry.registry import get_model

        try:
            champion = get_model(store, f"{pipeline}@champion")
        except NotFound:
            return None
        snap_id = champion.snapshot_id
        why = f"training data of the champion {champion.id}"
    else:
        return None
    return Reference(snap_id, snapshot_profile(store, snap_id), why)


def _key(snap_id: str, ref_id: str, s_hash: str) -> str:
    return f"checks/{snap_id}/{ref_id}-{s_hash}.json"


def load_check(store: Store, snap_id: str, ref_id: str, settings: DriftSettings | None = None) -> DriftReport | None:
    """The stored result of checking ``snap_id`` against ``ref_id`` (with ``settings``; the
    newest of any settings when None), hash-checked; None if there is none."""
    with store.metadata.read() as conn:
        if settings is None:
            row = conn.execute("SELECT report_key, report_sha256 FROM drift_checks WHERE snapshot_id = ? AND"
                               " reference_id = ? ORDER BY created_at DESC LIMIT 1", (snap_id, ref_id)).fetchone()
        else:
            row = conn.execute("SELECT report_key, report_sha256 FROM drift_checks WHERE snapshot_id = ? AND"
                               " reference_id = ? AND settings_hash = ?",
                               (snap_id, ref_id, settings_hash(settings))).fetchone()
    if row is None:
        return None
    try:
        data = store.artifacts.read_bytes(row[0])
    except NotFound:
        raise IntegrityError(f"drift check {row[0]}: the report file is missing") from None
    if hashlib.sha256(data).hexdigest() != row[1]:
        raise IntegrityError(f"drift check {row[0]}: the report file was changed")
    return DriftReport.from_dict(json.loads(data)["report"])


def list_checks(store: Store, snap_id: str) -> list[dict[str, Any]]:
    """Checks recorded for ``snap_id`` (as the checked snapshot), newest first."""
    with store.metadata.read() as conn:
        rows = conn.execute(
            "SELECT reference_id, settings_hash, created_at, dataset_drift, drifted, tested FROM drift_checks"
            " WHERE snapshot_id = ? ORDER BY created_at DESC", (snap_id,)).fetchall()
    return [{"reference": r[0], "settings": r[1], "created_at": r[2], "dataset_drift": bool(r[3]),
             "drifted": r[4], "tested": r[5]} for r in rows]


def _needs_counts(current: Profile, reference: Profile) -> list[str]:
    return [n for n, r in reference.columns.items()
            if r.numeric and n in current.columns and current.columns[n].numeric
            and current.columns[n].ref_edges != edges_digest(r.edges)]


def check_needs_ray(store: Store, snap_id: str, reference: Reference, settings: DriftSettings | None = None) -> bool:
    """Whether :func:`check_snapshot` will run a Ray pass: no stored result, and the snapshot's
    profile is missing or was not counted on the reference's bins (a runner connects first)."""
    snap_id = resolve_snapshot(store, snap_id)
    if load_check(store, snap_id, reference.snapshot_id, settings or DriftSettings()) is not None:
        return False
    current = load_profile(store, snap_id)
    return current is None or bool(_needs_counts(current, reference.profile))


def check_snapshot(
    store: Store,
    snap_id: str,
    reference: Reference,
    settings: DriftSettings | None = None,
    *,
    profile: Profile | None = None,
    reason: str | None = None,
    exact: bool = True,
) -> DriftReport:
    """Check snapshot ``snap_id`` against ``reference`` and record the result (or return the
    recorded one). ``profile``: ``snap_id``'s profile if at hand (counted on the reference's bins,
    ideally). When it was not counted on the reference's bins, ``exact`` counts it there with one
    Ray pass over the snapshot; otherwise its own fine histogram is re-binned (``approximate``)."""
    settings = settings or DriftSettings()
    snap_id = resolve_snapshot(store, snap_id)
    stored = load_check(store, snap_id, reference.snapshot_id, settings)
    if stored is not None:
        return stored
    current = profile or snapshot_profile(store, snap_id)
    missing = _needs_counts(current, reference.profile)
    if missing and exact:
        from raymlops.data.profile import reference_counts
        from raymlops.ray_session import ensure_ray

        ensure_ray()
        counts = reference_counts(snapshot_dataset(store, snap_id), reference.profile, missing)
        current = with_reference_counts(current, reference.profile, counts)
    report = check(current, reference.profile, settings)
    _record(store, snap_id, reference, settings, report, reason)
    return report


def _record(store: Store, snap_id: str, reference: Reference, settings: DriftSettings, report: DriftReport,
            reason: str | None) -> None:
    s_hash = settings_hash(settings)
    key = _key(snap_id, reference.snapshot_id, s_hash)
    now = time.time()
    body = {"snapshot": snap_id, "reference": reference.snapshot_id, "why": reference.why, "created_at": now,
            "report": report.to_dict()}
    sha = store.artifacts.write_bytes(key, json.dumps(body, indent=1, sort_keys=True, default=str).encode())
    with store.metadata.transaction() as conn:
        if conn.execute("SELECT 1 FROM drift_checks WHERE snapshot_id = ? AND reference_id = ? AND settings_hash = ?",
                        (snap_id, reference.snapshot_id, s_hash)).fetchone() is not None:
            return  # recorded meanwhile by another process (same inputs, same result)
        conn.execute(
            "INSERT INTO drift_checks(snapshot_id, reference_id, settings_hash, created_at, dataset_drift, drifted,"
            " tested, report_key, report_sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (snap_id, reference.snapshot_id, s_hash, now, int(report.dataset_drift), len(report.drifted_columns),
             len(report.tested), key, sha),
        )
        audit.append(conn, "snapshot.checked", {"snapshot": snap_id, "reference": reference.snapshot_id}, reason,
                     {"dataset_drift": report.dataset_drift, "drifted_columns": report.drifted_columns,
                      "tested": len(report.tested), "share": round(report.share, 4), "why": reference.why,
                      "settings": s_hash})


def apply_gate(report: DriftReport, mode: str, reference: Reference | None = None) -> str:
    """``data.drift_gate``: ``fail`` raises :class:`DriftDetected` when the dataset drifted,
    ``warn`` returns ``"warned"``; else ``"passed"`` (``"off"`` when the gate is off)."""
    if mode not in GATE_MODES:
        raise ValidationError(f"drift_gate must be one of {', '.join(GATE_MODES)}, got {mode!r}")
    if mode == "off":
        return "off"
    if not report.dataset_drift:
        return "passed"
    against = f" against {reference.snapshot_id[:12]} ({reference.why})" if reference else ""
    if mode == "fail":
        raise DriftDetected(f"data drift{against}: {report.summary()} (data.drift_gate is 'fail')", report)
    return "warned"
