"""Run history: one ``runs`` row per pipeline run and one ``run_steps`` row per step (no Ray).

A run's record says who started it (user, host, pid, command line), where (Ray cluster address,
job id and submission id under ``ray job submit``), the config and its hash, the code version,
and for every step its status (``ran``, ``cached``, ``skipped``, ``failed``, ``interrupted``), start
and end, inputs and outputs, cache key, rows and bytes, and for a failed step the error with its
traceback and the last lines of the step's log. Rows are written as the run goes, so a run
that was killed still shows how far it got (status ``running`` with no end; ``abandoned`` once its
process is gone).
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from raymlops.audit import os_user
from raymlops.exceptions import NotFound, ValidationError
from raymlops.store.metadata import MetadataStore
from raymlops.store.processes import gone

RUN_STATUSES = ("running", "succeeded", "failed", "interrupted", "abandoned")
STEP_STATUSES = ("ran", "cached", "skipped", "failed", "interrupted")


def new_run_id(clock: Callable[[], float] = time.time) -> str:
    return time.strftime("%Y%m%d-%H%M%S-", time.localtime(clock())) + uuid.uuid4().hex[:6]


def who() -> dict[str, Any]:
    """The person and process that started the run (the account of its uid, as the audit log's)."""
    return {**os_user(), "host": socket.gethostname(), "pid": os.getpid(), "argv": list(sys.argv),
            "cwd": os.getcwd()}


def submission_id(environ: Mapping[str, str]) -> str | None:
    """The ``ray job submit`` submission id of this driver, if it runs as one: the job
    supervisor passes it in the job config's metadata (``RAY_JOB_CONFIG_JSON_ENV_VAR``)."""
    if environ.get("RAY_JOB_SUBMISSION_ID"):
        return environ["RAY_JOB_SUBMISSION_ID"]
    try:
        job_config = json.loads(environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR") or "{}")
    except ValueError:
        return None
    meta = job_config.get("metadata") if isinstance(job_config, dict) else None
    value = meta.get("job_submission_id") if isinstance(meta, dict) else None
    return str(value) if value else None


class RunRecorder:
    """Writes one run's rows; every write is its own short transaction."""

    def __init__(self, metadata: MetadataStore, run_id: str, clock: Callable[[], float] = time.time) -> None:
        self.metadata = metadata
        self.run_id = run_id
        self.clock = clock

    def save_run(self, *, pipeline: str, status: str, config_hash: str, started_at: float,
                 ended_at: float | None, record: dict[str, Any]) -> None:
        with self.metadata.transaction() as conn:
            conn.execute(
                "INSERT INTO runs(id, pipeline, started_at, ended_at, status, config_hash, record_json)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET ended_at = excluded.ended_at,"
                " status = excluded.status, record_json = excluded.record_json",
                (self.run_id, pipeline, started_at, ended_at, status, config_hash,
                 json.dumps(record, default=str, sort_keys=True)),
            )

    def save_step(self, seq: int, step: dict[str, Any], log_text: str = "") -> None:
        with self.metadata.transaction() as conn:
            conn.execute(
                "INSERT INTO run_steps(run_id, seq, name, status, started_at, ended_at, cache_key, rows, bytes,"
                " record_json, log_text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(run_id, seq) DO UPDATE SET status = excluded.status, ended_at = excluded.ended_at,"
                " cache_key = excluded.cache_key, rows = excluded.rows, bytes = excluded.bytes,"
                " record_json = excluded.record_json, log_text = excluded.log_text",
                (self.run_id, seq, step["name"], step["status"], step.get("started_at"), step.get("ended_at"),
                 step.get("cache_key"), step.get("rows"), step.get("bytes"),
                 json.dumps(step, default=str, sort_keys=True), log_text),
            )


# -- reading -----------------------------------------------------------------------------------
def resolve_run(metadata: MetadataStore, ref: str) -> str:
    """A run id from an id, ``latest``, or a unique prefix or suffix of 4+ characters."""
    with metadata.read() as conn:
        if ref in ("latest", "last"):
            row = conn.execute("SELECT id FROM runs ORDER BY started_at DESC, id DESC LIMIT 1").fetchone()
            if row is None:
                raise NotFound("no runs recorded yet in this home")
            return str(row[0])
        if conn.execute("SELECT 1 FROM runs WHERE id = ?", (ref,)).fetchone():
            return ref
        if len(ref) < 4:
            raise NotFound(f"run {ref!r} not found (give a run id, 4+ of its characters, or 'latest')")
        rows = conn.execute(
            "SELECT id FROM runs WHERE substr(id, 1, ?) = ? OR substr(id, -?) = ? LIMIT 2",
            (len(ref), ref, len(ref), ref),
        ).fetchall()
    if not rows:
        raise NotFound(f"run {ref!r} not found; `raymlops runs list` shows the recorded runs")
    if len(rows) > 1:
        raise NotFound(f"run {ref!r} is ambiguous; give more characters")
    return str(rows[0][0])


def list_runs(metadata: MetadataStore, status: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
    """Newest first: id, pipeline, status, start, end, seconds, config hash, failed step, error."""
    if status is not None and status not in RUN_STATUSES:
        raise ValidationError(f"--status: expected one of {', '.join(RUN_STATUSES)}, found {status!r}")
    if limit is not None and not 1 <= limit <= 10**9:  # SQLite's integers end at 2^63
        raise ValidationError(f"--limit: expected a number of runs from 1 to 1000000000, found {limit}")
    sql = "SELECT id, pipeline, started_at, ended_at, status, config_hash, record_json FROM runs"
    args: tuple[Any, ...] = ()
    # a run recorded running whose process is gone is abandoned (_status): both are read, then filtered
    live = status in ("running", "abandoned")
    if status:
        sql += " WHERE status IN (?, ?)" if live else " WHERE status = ?"
        args = ("running", "abandoned") if live else (status,)
    sql += " ORDER BY started_at DESC, id DESC"
    if limit and not live:
        sql += f" LIMIT {int(limit)}"
    with metadata.read() as conn:
        rows = conn.execute(sql, args).fetchall()
    out = []
    for r in rows:
        record = _loads(r["record_json"])
        error = record.get("error") or {}
        out.append({
            "run": r["id"], "pipeline": r["pipeline"], "status": _status(r["status"], record),
            "started_at": r["started_at"],
            "ended_at": r["ended_at"],
            "seconds": None if r["ended_at"] is None else round(r["ended_at"] - r["started_at"], 3),
            "config_hash": r["config_hash"], "user": (record.get("who") or {}).get("user"),
            "model": record.get("model"), "snapshot": record.get("snapshot"), "gate": record.get("gate"),
            "failed_step": error.get("step") if error else None,
            "error": f"{error.get('type')}: {error.get('message')}" if error else None,
        })
    if live:
        out = [r for r in out if r["status"] == status][:limit]
    return out


def get_run(metadata: MetadataStore, ref: str) -> dict[str, Any]:
    """The whole record of one run, its steps (without their logs) read from ``run_steps``."""
    run_id = resolve_run(metadata, ref)
    with metadata.read() as conn:
        row = conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        steps = conn.execute("SELECT record_json FROM run_steps WHERE run_id = ? ORDER BY seq", (run_id,)).fetchall()
    record = _loads(row["record_json"])
    record.update({"run": run_id, "pipeline": row["pipeline"], "status": _status(row["status"], record),
                   "started_at": row["started_at"], "ended_at": row["ended_at"], "config_hash": row["config_hash"]})
    if steps:
        record["steps"] = [_loads(s["record_json"]) for s in steps]
        if record["status"] == "abandoned":  # the step its process died in: not running any more
            for step in record["steps"]:
                if step.get("status") == "running":
                    step["status"] = "abandoned"
    return record


def run_logs(metadata: MetadataStore, ref: str, step: str | None = None) -> tuple[str, list[tuple[str, str]]]:
    """``(run id, [(step, log text), …])``; ``step`` picks one (NotFound names the steps there are)."""
    run_id = resolve_run(metadata, ref)
    with metadata.read() as conn:
        rows = conn.execute("SELECT name, log_text FROM run_steps WHERE run_id = ? ORDER BY seq", (run_id,)).fetchall()
    logs = [(r["name"], r["log_text"]) for r in rows]
    if step is not None:
        chosen = [item for item in logs if item[0] == step]
        if not chosen:
            names = ", ".join(n for n, _ in logs) or "none recorded"
            raise NotFound(f"run {run_id} has no step {step!r} (steps: {names})")
        return run_id, chosen
    return run_id, logs


def _status(status: str, record: Mapping[str, Any]) -> str:
    """``abandoned`` for a run recorded ``running`` whose process on this host is gone (killed
    before it could record its end: SIGKILL, the out-of-memory killer); `raymlops doctor --repair`
    records it so."""
    return "abandoned" if status == "running" and gone(record.get("who")) else status


def _loads(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
