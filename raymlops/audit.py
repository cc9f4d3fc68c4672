"""Append-only, hash-chained audit log: when, who, what, why and how for every state change.

Each record stores the sha256 of the previous record, so editing, removing or reordering any
record breaks the chain from that point on and :func:`verify` names the first bad record.
Records are written in the same SQLite transaction as the change they describe.

The newest record's sequence number and hash are also kept in the ``meta`` table (the chain's
head), so removing the last records is caught too. Both live in the same database: someone who
can rewrite the whole file can rewrite the chain. Keep the head that ``raymlops audit verify``
prints somewhere else (a ticket, a CI log, another machine) to anchor it: ``raymlops audit verify
--head SEQ:HASH`` then also checks that the log still holds that record with that hash, which a
rewrite or a removal of the newest records with the head row fixed cannot keep.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import socket
import sqlite3
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from raymlops.store.metadata import MetadataStore

GENESIS = "0" * 64
HEAD_KEY = "audit_head"  # meta row: {"seq": …, "hash": …} of the newest record


def os_user() -> dict[str, Any]:
    """Who the operating system says runs this process: ``user`` (the account of its uid) and
    ``uid``; ``claimed``: the name ``$LOGNAME`` / ``$USER`` give, where it is another (any process
    can set those, so the record keeps the account, as ``ps`` shows it)."""
    if not hasattr(os, "getuid"):  # not POSIX: the environment is all there is
        try:
            return {"user": getpass.getuser()}
        except (KeyError, OSError):
            return {"user": "unknown"}
    uid = os.getuid()
    try:
        import pwd

        user = pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):  # a uid without an account (a container's): the number
        user = str(uid)
    out: dict[str, Any] = {"user": user, "uid": uid}
    claimed = next((os.environ[k] for k in ("LOGNAME", "USER", "LNAME", "USERNAME") if os.environ.get(k)), None)
    if claimed and claimed != user:
        out["claimed"] = claimed
    return out


def _actor() -> dict[str, Any]:
    return {**os_user(), "host": socket.gethostname(), "pid": os.getpid()}


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
    cur = conn.execute(
        "INSERT INTO audit(ts, action, record_json, prev_hash, hash) VALUES (?, ?, ?, ?, ?)",
        (ts, action, record_json, prev, digest),
    )
    conn.execute(
        "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (HEAD_KEY, json.dumps({"seq": cur.lastrowid, "hash": digest})),
    )
    return digest


_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: float | None = None) -> float:
    """A UNIX time from ``30m``, ``1h``, ``2d``, ``1w`` (that long before ``now``) or an ISO 8601
    date or time (``2026-05-01``, ``2026-05-01T12:30``, ``…Z``, ``…+02:00``; without a zone it
    is local time). ``ValueError`` names the accepted forms."""
    now = time.time() if now is None else now
    m = _RELATIVE.match(text)
    if m:
        return now - float(m.group(1)) * _UNIT_S[m.group(2)]
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"expected an ISO date or time (2026-05-01, 2026-05-01T12:30, 2026-05-01T12:30Z) "
            f"or an age such as 30m, 1h, 2d, 1w; found {text!r}"
        ) from None
    return when.timestamp()  # naive: local time


def _matches_id(ids: Mapping[str, Any], wanted: str) -> bool:
    """True when any id equals ``wanted``, or ``wanted`` is a prefix (6+ characters) of a
    content hash (snapshot ids); ``NAME@ALIAS`` (the registry's notation) is a record of that
    alias of that model (an alias id alone, ``champion``, is every model's)."""
    if not isinstance(ids, Mapping):
        return False
    name, at, alias = wanted.rpartition("@")
    if at and name and alias:
        model = str(ids.get("model", ids.get("name", "")))
        return str(ids.get("alias")) == alias and (model == name or model.startswith(name + ":"))
    for value in ids.values():
        text = str(value)
        if text == wanted:
            return True
        if len(wanted) >= 6 and len(text) == 64 and text.startswith(wanted):
            return True
    return False


def records(
    store: MetadataStore,
    action: str | None = None,
    since: float | None = None,
    id: str | None = None,
    limit: int | None = None,
    until: float | None = None,
) -> list[AuditRecord]:
    """Records in chain order. ``action``: exact name (``model.registered``) or a prefix ending
    in a dot (``model.``); ``since`` / ``until``: UNIX times (both included); ``id``: a touched id
    (see :func:`_matches_id`); ``limit``: the newest ``limit`` records that match."""
    sql = "SELECT seq, ts, action, record_json, prev_hash, hash FROM audit"
    where: list[str] = []
    args: list[Any] = []
    if action:
        if action.endswith("."):
            where.append("substr(action, 1, ?) = ?")
            args += [len(action), action]
        else:
            where.append("action = ?")
            args.append(action)
    if since is not None:
        where.append("ts >= ?")
        args.append(since)
    if until is not None:
        where.append("ts <= ?")
        args.append(until)
    if where:
        sql += " WHERE " + " AND ".join(where)
    with store.read() as conn:
        rows = conn.execute(sql + " ORDER BY seq", args).fetchall()
    edited = {"ids": {}, "reason": "(this record's content is no audit record: edited; see `raymlops audit verify`)"}
    out = [AuditRecord(r[0], r[1], r[2], _object(r[3]) or edited, r[4], r[5]) for r in rows]
    if id:
        out = [r for r in out if _matches_id(r.record.get("ids") or {}, id)]
    if limit is not None:
        out = out[-limit:] if limit > 0 else []
    return out


def to_json(rec: AuditRecord) -> dict[str, Any]:
    """One record as exported (JSON Lines): the hashed record plus its place in the chain."""
    return {"seq": rec.seq, "prev_hash": rec.prev_hash, "hash": rec.hash, **rec.record}


def head(store: MetadataStore) -> dict[str, Any] | None:
    """``{"seq", "hash"}`` of the newest record as recorded at append time (None before any)."""
    with store.read() as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (HEAD_KEY,)).fetchone()
    return None if row is None else _object(row[0])


def _object(text: str) -> dict[str, Any] | None:
    """``text`` as a JSON object, or None when it is none (an edited record or head row)."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def parse_anchor(text: str) -> tuple[int, str]:
    """``SEQ:HASH`` (as ``audit verify`` prints the head; 12 or more hex digits of the hash), or
    ValueError naming the form."""
    seq, _, digest = text.strip().partition(":")
    if not seq.isdigit() or int(seq) < 1 or not re.fullmatch(r"[0-9a-f]{12,64}", digest.lower()):
        raise ValueError(f"expected SEQ:HASH, a record number and 12 to 64 hex digits of its hash (as `raymlops "
                         f"audit verify` prints the head), found {text!r}")
    return int(seq), digest.lower()


def _registry_changes(conn: sqlite3.Connection, registered: Mapping[str, tuple[int, dict[str, Any]]],
                      moved: Mapping[tuple[str, str], tuple[int, str]]) -> str | None:
    """The first registry row that disagrees with the log: a model version whose row is not what its
    ``model.registered`` record bound (records of older versions bind nothing), or an alias that
    names another version than its last recorded move."""
    for model_id, status, artifact_sha, record_json in conn.execute(
            "SELECT id, status, artifact_sha256, record_json FROM models ORDER BY created_at"):
        seq, how = registered.get(model_id, (0, {}))
        if "record_sha256" not in how:
            continue
        now = {"status": status, "artifact_sha256": artifact_sha,
               "record_sha256": hashlib.sha256(str(record_json).encode()).hexdigest()}
        edited = [k.removesuffix("_sha256") for k in now if now[k] != how.get(k)]
        if edited:
            return (f"model {model_id}: its registry row differs from what audit record {seq} registered "
                    f"({', '.join(edited)}): changed outside raymlops")
    for name, alias, target in conn.execute("SELECT name, alias, model_id FROM aliases ORDER BY name, alias"):
        seq, logged = moved.get((str(name), str(alias)), (0, None))
        if logged is None:
            return f"alias {name}@{alias}: names {target}, but the audit log has no move of it: set outside raymlops"
        if logged != target:
            return (f"alias {name}@{alias}: names {target}, but its last recorded move (audit record {seq}) is to "
                    f"{logged}: changed outside raymlops, or the records of later moves were removed")
    return None


def verify(store: MetadataStore, anchor: tuple[int, str] | None = None) -> tuple[bool, str]:
    """``(ok, message)``: ok is False and the message names the first record that does not
    chain: its content was edited, it was removed, or records were reordered.
    Removing the newest records is caught by the head kept in ``meta``; removing that row too is
    caught when records exist without it, and when a snapshot or model version the home holds
    has no record (each is written in the same transaction as its record), or when the registry
    disagrees with the log (:func:`_registry_changes`). ``anchor``: a head kept elsewhere
    (:func:`parse_anchor`), which the log must still hold."""
    prev = GENESIS
    count = 0
    last: tuple[int, str] | None = None
    named: set[str] = set()
    registered: dict[str, tuple[int, dict[str, Any]]] = {}  # model id -> (seq, how) of model.registered
    moved: dict[tuple[str, str], tuple[int, str]] = {}  # (name, alias) -> (seq, model) of its last move
    with store.read() as conn:
        rows = conn.execute("SELECT seq, ts, action, record_json, prev_hash, hash FROM audit ORDER BY seq")
        for seq, ts, action, record_json, prev_hash, digest in rows:
            if _digest(prev_hash, record_json) != digest:
                return False, f"audit record {seq}: content does not match its hash (edited)"
            expected = 1 if last is None else last[0] + 1  # the numbers are no part of the hash: checked here
            if seq > expected and prev_hash != prev:
                gone = f"record {expected}" if seq == expected + 1 else f"records {expected} to {seq - 1}"
                return False, f"audit {gone}: missing (removed); the log goes on with record {seq}"
            if prev_hash != prev:
                return False, (
                    f"audit record {last[0] if last else seq}: " + (
                        f"edited and re-hashed (record {seq} links to the hash it had when written), or records "
                        "reordered" if last else "does not start the chain (records before it were removed)"))
            if seq != expected:
                return False, f"audit record {seq}: numbered out of order (record {expected} expected): renumbered"
            try:
                body = json.loads(record_json)
            except ValueError:
                return False, f"audit record {seq}: content is not valid JSON (edited)"
            if not isinstance(body, dict) or not isinstance(body.get("ids") or {}, dict):
                return False, f"audit record {seq}: content is not an audit record (edited)"
            if body.get("action") != action or body.get("ts") != ts:
                return False, f"audit record {seq}: action or time column differs from the hashed record (edited)"
            prev = digest
            last = (seq, digest)
            count += 1
            ids = body.get("ids") or {}
            named.update(str(v) for v in ids.values())
            if action == "model.registered" and isinstance(body.get("how"), dict):
                registered[str(ids.get("model"))] = (seq, body["how"])
            elif action in ("alias.moved", "alias.rolled_back") and ":v" in str(ids.get("model")):
                moved[(str(ids["model"]).rsplit(":v", 1)[0], str(ids.get("alias")))] = (seq, str(ids["model"]))
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (HEAD_KEY,)).fetchone()
        recorded = None if row is None else _object(row[0])
        at_head = None if recorded is None or not isinstance(recorded.get("seq"), int) else conn.execute(
            "SELECT hash FROM audit WHERE seq = ?", (recorded["seq"],)).fetchone()  # the newest raymlops wrote
        unrecorded = [f"snapshot {i[:12]}" for (i,) in conn.execute("SELECT id FROM snapshots ORDER BY created_at")
                      if i not in named]
        unrecorded += [f"model {i}" for (i,) in conn.execute("SELECT id FROM models ORDER BY created_at")
                       if i not in named]
        changed = _registry_changes(conn, registered, moved)
    if row is None and last is not None:
        return False, (f"audit head: missing; the log ends at record {last[0]} but the row that records its newest "
                       "record was removed (the newest records may have been removed with it)")
    if unrecorded:
        return False, (f"audit log: no record of {unrecorded[0]}"
                       + (f" (and {len(unrecorded) - 1} more)" if len(unrecorded) > 1 else "")
                       + "; every snapshot and model version is recorded when it is written, so records were removed")
    if changed:
        return False, changed
    if row is not None:
        if recorded is None:
            return False, "audit head: the row that records the newest record is not valid (edited)"
        seq_at = int(recorded["seq"]) if at_head is not None else -1  # (a seq there is an int: at_head says)
        if last is not None and at_head is not None and seq_at < last[0] and at_head[0] == recorded.get("hash"):
            return False, (f"audit record {seq_at + 1}: written after the newest record raymlops wrote "
                           f"(record {seq_at}): added outside raymlops")
        if last is None or (recorded.get("seq"), recorded.get("hash")) != last:
            have = f"record {last[0]}" if last else "no records"
            return False, (
                f"audit record {recorded.get('seq')}: missing; the log ends at {have} "
                f"but record {recorded.get('seq')} (hash {str(recorded.get('hash'))[:12]}…) was written "
                "(the newest records were removed)"
            )
    if anchor is not None:
        seq, digest = anchor
        with store.read() as conn:
            kept = conn.execute("SELECT hash FROM audit WHERE seq = ?", (seq,)).fetchone()
        if kept is None:
            return False, (f"audit record {seq}: missing; the head kept elsewhere ({seq}:{digest[:12]}…) is not in "
                           f"the log, which ends at {f'record {last[0]}' if last else 'no record'} (records removed)")
        if not str(kept[0]).startswith(digest):
            return False, (f"audit record {seq}: its hash {str(kept[0])[:12]}… is not the head kept elsewhere "
                           f"({digest[:12]}…): the log was rewritten up to it")
    tip = f", head {last[0]}:{last[1]}" if last else ""
    held = f"; holds the head kept elsewhere, record {anchor[0]}" if anchor else ""
    return True, f"audit chain valid ({count} records{tip}{held})"
