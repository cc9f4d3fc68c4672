"""Append-only, hash-chained audit log: when, who, what, why and how for every state change.

Each record stores the sha256 of the previous record, so editing, removing or reordering any
record breaks the chain from that point on and :func:`verify` names the first bad record.
Records are written in the same SQLite transaction as the change they describe.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from raymlops.store.metadata import MetadataStore

GENESIS = "0" * 64


def _actor() -> dict[str, Any]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return {"user": user, "host": socket.gethostname(), "pid": os.getpid()}


def _digest(prev_hash: str, record_json: str) -> str:
    return hashlib.sha256(f"{prev_hash}\n{record_json}".encode()).hexdigest()


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    ts: float
    action: str
    record: dict[str, Any]
    prev_hash: str
    hash: str


def append(
    conn: sqlite3.Connection,
    action: str,
    ids: Mapping[str, Any],
    reason: str | None = None,
    how: Mapping[str, Any] | None = None,
    clock: Callable[[], float] = time.time,
) -> str:
    """Append one record inside the caller's open write transaction; returns its hash."""
    row = conn.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
    prev = row[0] if row else GENESIS
    ts = clock()
    record = {
        "ts": ts,
        "action": action,
        "actor": _actor(),
        "ids": dict(ids),
        "reason": reason,
        "how": dict(how or {}),
    }
    record_json = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str)
    digest = _digest(prev, record_json)
    conn.execute(
        "INSERT INTO audit(ts, action, record_json, prev_hash, hash) VALUES (?, ?, ?, ?, ?)",
        (ts, action, record_json, prev, digest),
    )
    return digest


def records(store: MetadataStore, action: str | None = None) -> list[AuditRecord]:
    with store.read() as conn:
        sql = "SELECT seq, ts, action, record_json, prev_hash, hash FROM audit"
        args: tuple[Any, ...] = ()
        if action:
            sql += " WHERE action = ?"
            args = (action,)
        rows = conn.execute(sql + " ORDER BY seq", args).fetchall()
    return [AuditRecord(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5]) for r in rows]


def verify(store: MetadataStore) -> tuple[bool, str]:
    """``(ok, message)``: ok is False and the message names the first record that does not chain."""
    prev = GENESIS
    count = 0
    with store.read() as conn:
        for seq, record_json, prev_hash, digest in conn.execute(
            "SELECT seq, record_json, prev_hash, hash FROM audit ORDER BY seq"
        ):
            if prev_hash != prev:
                return False, (
                    f"audit record {seq}: previous-hash link broken (a record before it was removed or reordered)"
                )
            if _digest(prev_hash, record_json) != digest:
                return False, f"audit record {seq}: content does not match its hash (edited)"
            prev = digest
            count += 1
    return True, f"audit chain valid ({count} records)"
