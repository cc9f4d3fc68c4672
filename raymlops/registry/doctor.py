"""``raymlops doctor``: is the home folder consistent? (no Ray)

Checks, in order: the metadata database opens and passes SQLite's integrity check; every
snapshot it records has its manifest (with the recorded sha256) and every file the manifest
lists (with the listed sha256); every model version's artifact is present with its recorded
sha256; no staging folder (``staging/<kind>-<uuid>``, where snapshots are written before they
are committed) nor half-written temporary file (``<key>.tmp-<uuid>``, from a process killed while
writing an artifact) is older than a run could be (a crash left it behind); the audit chain is intact.

``repair`` removes orphaned staging folders and temporary files and nothing else: a missing or changed snapshot or
model cannot be recreated here (run the pipeline again, or restore the file from a backup).
"""

from __future__ import annotations

import json
import posixpath
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from raymlops import audit
from raymlops.data.snapshot import list_snapshots, verify_snapshot
from raymlops.exceptions import NotFound
from raymlops.store.artifacts import DEFAULT_STAGING_GRACE_S, ArtifactStore
from raymlops.store.home import Store, recorded_root
from raymlops.store.metadata import MetadataStore
from raymlops.store.processes import gone

CHECKS = ("metadata", "snapshots", "models", "staging", "audit")


@dataclass(frozen=True)
class Finding:
    """One thing found: ``ok`` False is a problem; ``repairable`` ones ``--repair`` fixes."""

    check: str
    ok: bool
    subject: str
    message: str
    repairable: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DoctorReport:
    home: str
    artifact_root: str
    findings: list[Finding] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[Finding]:
        return [f for f in self.findings if not f.ok]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"home": self.home, "artifact_root": self.artifact_root, "ok": self.ok,
                "findings": [f.to_dict() for f in self.findings], "repaired": self.repaired}


def _check_metadata(db: Path) -> tuple[Finding, bool]:
    if not db.is_file():
        return Finding("metadata", False, str(db), "metadata.db not found"), False
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            result = conn.execute("PRAGMA quick_check").fetchone()[0]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return Finding("metadata", False, str(db), f"cannot read metadata.db: {exc}"), False
    missing = {"snapshots", "models", "audit"} - tables
    if result != "ok":
        return Finding("metadata", False, str(db), f"SQLite integrity check failed: {result}"), False
    if missing:
        what = f"not a raymlops database (no {', '.join(sorted(missing))} table)"
        return Finding("metadata", False, str(db), what), False
    return Finding("metadata", True, str(db), f"readable, integrity ok ({len(tables)} tables)"), True


def _check_webhooks_db(db: Path) -> list[Finding]:
    """``webhooks.db``, where the home has one: readable, integrity ok (a damaged one lost every event
    while doctor said all was well)."""
    if not db.is_file():
        return []
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
        try:
            result = conn.execute("PRAGMA quick_check").fetchone()[0]
            conn.execute("SELECT COUNT(*) FROM webhooks").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return [Finding("webhooks", False, str(db), f"cannot read webhooks.db: {exc} (its receivers get no event; "
                        "restore it from a backup, or remove it and add the receivers again)")]
    if result != "ok":
        return [Finding("webhooks", False, str(db), f"SQLite integrity check failed: {result}")]
    return [Finding("webhooks", True, str(db), "readable, integrity ok")]


def _check_snapshots(store: Any) -> list[Finding]:
    out = []
    snaps = list_snapshots(store)
    for s in snaps:
        for p in verify_snapshot(store, s["id"]):
            out.append(Finding("snapshots", False, s["id"], f"snapshot {s['id'][:12]}: {p}"))
    if not out:
        out.append(Finding("snapshots", True, "", f"{len(snaps)} snapshot(s), every file present with its sha256"))
    return out


def _check_models(store: Any) -> list[Finding]:
    with store.metadata.read() as conn:
        rows = conn.execute("SELECT id, artifact_key, artifact_sha256 FROM models ORDER BY name, version").fetchall()
    out = []
    for model_id, key, sha in rows:
        try:
            actual = store.artifacts.sha256(key)
        except NotFound:
            out.append(Finding("models", False, model_id, f"model {model_id}: artifact {key} is missing"))
            continue
        if actual != sha:
            out.append(Finding("models", False, model_id,
                               f"model {model_id}: artifact {key} was changed (sha256 {actual[:12]}… != recorded "
                               f"{sha[:12]}…)"))
    if not out:
        out.append(Finding("models", True, "", f"{len(rows)} model version(s), every artifact matches its sha256"))
    return out


def staging_folders(arts: ArtifactStore) -> list[tuple[str, float, int, int]]:
    """``(key, newest mtime, files, bytes)`` of every entry under ``staging/``."""
    base = arts.path("staging")
    top = arts.fs.get_file_info(pafs.FileSelector(base, recursive=False, allow_not_found=True))
    out = []
    for entry in sorted(top, key=lambda i: i.path):
        key = posixpath.relpath(entry.path, arts.root)
        newest = entry.mtime.timestamp() if entry.mtime is not None else 0.0
        n_files = n_bytes = 0
        if entry.type == pafs.FileType.Directory:
            for info in arts.fs.get_file_info(pafs.FileSelector(entry.path, recursive=True, allow_not_found=True)):
                if info.mtime is not None:
                    newest = max(newest, info.mtime.timestamp())
                if info.type == pafs.FileType.File:
                    n_files += 1
                    n_bytes += int(info.size or 0)
        else:
            n_files, n_bytes = 1, int(entry.size or 0)
        out.append((key, newest, n_files, n_bytes))
    return out


TEMP_MARK = ".tmp-"  # ArtifactStore.write_bytes writes <key>.tmp-<uuid>, then renames it to <key>


def temp_files(arts: ArtifactStore) -> list[tuple[str, float, int]]:
    """``(key, mtime, bytes)`` of every temporary file outside ``staging/``: a process killed
    while writing an artifact (a model, a monitor checkpoint) leaves one; nothing refers to it."""
    sel = pafs.FileSelector(arts.root, recursive=True, allow_not_found=True)
    out = []
    for info in arts.fs.get_file_info(sel):
        if info.type != pafs.FileType.File or TEMP_MARK not in info.base_name:
            continue
        key = posixpath.relpath(info.path, arts.root)
        if key.startswith("staging/"):
            continue  # counted with its staging folder
        out.append((key, info.mtime.timestamp() if info.mtime is not None else 0.0, int(info.size or 0)))
    return sorted(out)


def _check_staging(arts: ArtifactStore, older_than_s: float, now: float) -> list[Finding]:
    out = []
    young = 0
    for key, mtime, n_bytes in temp_files(arts):
        age = now - mtime
        if age >= older_than_s:
            out.append(Finding("staging", False, key,
                               f"{key}: half-written temporary file ({age / 3600:.1f} h old, {n_bytes} bytes) left by "
                               "an interrupted write; `raymlops doctor --repair` removes it", repairable=True))
        else:
            young += 1
    for key, newest, n_files, n_bytes in staging_folders(arts):
        age = now - newest
        if age >= older_than_s:
            out.append(Finding("staging", False, key,
                               f"{key}: orphaned staging folder ({age / 3600:.1f} h old, {n_files} file(s), "
                               f"{n_bytes} bytes) left by an interrupted write; `raymlops doctor --repair` removes it",
                               repairable=True))
        else:
            young += 1
    if not out:
        more = f" ({young} in use by a running write)" if young else ""
        out.append(Finding("staging", True, "", f"no orphaned staging folders{more}"))
    return out


def check_home(
    home: str | Path,
    artifact_root: str | None = None,
    *,
    older_than_s: float = DEFAULT_STAGING_GRACE_S,
    clock: Callable[[], float] = time.time,
) -> DoctorReport:
    """Check the raymlops home at ``home`` (its artifacts at ``artifact_root``, default
    ``<home>/artifacts``); nothing is changed."""
    home = Path(home)
    finding, readable = _check_metadata(home / "metadata.db")
    # the root the home recorded (a stray RAYMLOPS_ARTIFACT_ROOT is a config error, as for every
    # other command: it reported every snapshot and model missing, and made the stray folder)
    root = recorded_root(home, MetadataStore(home / "metadata.db"), artifact_root, "RAYMLOPS_ARTIFACT_ROOT") \
        if readable else artifact_root or str(home / "artifacts")
    arts = ArtifactStore(root)
    report = DoctorReport(home=str(home), artifact_root=root)
    report.findings.append(finding)
    if readable:
        store = Store(home=home, metadata=MetadataStore(home / "metadata.db"), artifacts=arts)
        report.findings += _check_snapshots(store)
        report.findings += _check_models(store)
        report.findings += _check_runs(store)
    report.findings += _check_staging(arts, older_than_s, clock())
    report.findings += _check_webhooks_db(home / "webhooks.db")
    if readable:
        ok, message = audit.verify(store.metadata)
        report.findings.append(Finding("audit", ok, "", message))
    return report


def _check_runs(store: Store) -> list[Finding]:
    """Runs recorded ``running`` whose process on this host is gone (killed before it could record
    its end: SIGKILL, the out-of-memory killer); ``--repair`` records them ``abandoned``."""
    with store.metadata.read() as conn:
        rows = conn.execute("SELECT id, record_json FROM runs WHERE status = 'running' ORDER BY started_at").fetchall()
    out = []
    for run_id, record_json in rows:
        who = (json.loads(record_json or "{}") or {}).get("who") or {}
        if gone(who):
            out.append(Finding("runs", False, str(run_id), f"recorded running, but its process (pid {who.get('pid')} "
                               f"on {who.get('host')}) is gone: killed before it could record its end", True))
    return out


def repair(report: DoctorReport) -> list[str]:
    """Remove the orphaned staging folders and temporary files ``report`` found (and nothing else);
    their keys."""
    arts = ArtifactStore(report.artifact_root)
    removed = []
    for f in report.findings:
        temp = TEMP_MARK in posixpath.basename(f.subject)
        if f.repairable and f.check == "staging" and (f.subject.startswith("staging/") or temp):
            arts.delete(f.subject)
            removed.append(f.subject)
    return removed


def run_doctor(
    home: str | Path,
    artifact_root: str | None = None,
    *,
    older_than_s: float = DEFAULT_STAGING_GRACE_S,
    fix: bool = False,
    clock: Callable[[], float] = time.time,
) -> DoctorReport:
    """Check the home; with ``fix``, remove orphaned staging folders, record runs whose process is
    gone as abandoned, and check again."""
    report = check_home(home, artifact_root, older_than_s=older_than_s, clock=clock)
    if fix and any(f.repairable for f in report.findings):
        removed = repair(report)
        abandoned = [f.subject for f in report.findings if f.check == "runs" and f.repairable]
        if abandoned:
            with MetadataStore(Path(home) / "metadata.db").transaction() as conn:
                for run_id in abandoned:  # ended: its last sign of life (a step's start or end), not the repair
                    conn.execute("UPDATE runs SET status = 'abandoned', ended_at = COALESCE((SELECT MAX(COALESCE("
                                 "s.ended_at, s.started_at)) FROM run_steps s WHERE s.run_id = runs.id), started_at) "
                                 "WHERE id = ? AND status = 'running'", (run_id,))
                audit.append(conn, "run.abandoned", {"runs": abandoned}, "raymlops doctor --repair: the run's "
                             "process is gone", {})
        metadata_ok = report.findings[0].check == "metadata" and report.findings[0].ok
        if removed and metadata_ok:
            with MetadataStore(Path(home) / "metadata.db").transaction() as conn:
                audit.append(conn, "staging.removed", {"keys": removed}, "raymlops doctor --repair: orphaned "
                             "staging folders", {"older_than_s": older_than_s})
        report = check_home(home, artifact_root, older_than_s=older_than_s, clock=clock)
        report.repaired = removed + [f"run {r}" for r in abandoned]
    return report
