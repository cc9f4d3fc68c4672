"""Webhook subscriptions and the record of every delivery, in ``<home>/webhooks.db`` (SQLite, WAL).

A subscription holds the *name* of the environment variable with the secret, never the secret.
A delivery row is written when an event is queued (``queued``), then updated by the sender
(``delivered`` / ``failed``); an event that finds the queue full is recorded ``dropped``.

Adding and removing a receiver is a state change (events leave the system for it), so each lands
in the home's audit log (``webhook.added`` / ``webhook.removed``, in the same transaction of
``metadata.db`` as the change of ``webhooks.db`` commits in): the receiver's host and the sha256 of
its URL, not the URL, whose path can be the receiver's secret (a Slack hook's is).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from raymlops import audit
from raymlops.hooks.settings import WebhookConfig
from raymlops.store.home import resolve_home
from raymlops.store.metadata import MetadataStore

__all__ = ["DB_NAME", "Subscription", "WebhookDB", "list_deliveries"]

DB_NAME = "webhooks.db"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS webhooks (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    events_json TEXT NOT NULL,
    secret_env TEXT,
    max_attempts INTEGER NOT NULL,
    backoff_s REAL NOT NULL,
    max_backoff_s REAL NOT NULL,
    timeout_s REAL NOT NULL,
    source TEXT NOT NULL,
    key TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    webhook_id TEXT NOT NULL,
    url TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('queued', 'delivered', 'failed', 'dropped')),
    attempts INTEGER NOT NULL DEFAULT 0,
    last_status_code INTEGER,
    error TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    delivered_at REAL
);
CREATE INDEX IF NOT EXISTS deliveries_event ON deliveries(event_id);
"""
CLI_SOURCE = "cli"


@dataclass(frozen=True)
class Subscription:
    """A stored receiver: ``key`` names it in errors (``webhooks[0]`` of a config, ``webhook <id>``)."""

    id: str
    config: WebhookConfig
    source: str
    key: str
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "source": self.source, "key": self.key, "created_at": self.created_at,
                **self.config.model_dump(mode="json")}


class WebhookDB:
    """``<home>/webhooks.db``; every operation opens its own connection (thread- and process-safe)."""

    def __init__(self, home: str | Path | None, create: bool = True) -> None:
        self.path = resolve_home(home) / DB_NAME
        self.db = MetadataStore(self.path, timeout_s=30.0, schema=_SCHEMA, create=create)

    def _conn(self, write: bool = True) -> AbstractContextManager[sqlite3.Connection]:
        """A write transaction (all or nothing), or a read connection."""
        return self.db.transaction() if write else self.db.read()

    def _audited(self) -> AbstractContextManager[sqlite3.Connection]:
        """A write transaction of the home's ``metadata.db`` for the audit records of a change here:
        open it first, change ``webhooks.db`` inside it, so a change that fails records nothing."""
        return MetadataStore(self.path.with_name("metadata.db")).transaction()

    @staticmethod
    def _audit(conn: sqlite3.Connection, action: str, sub_id: str, cfg: WebhookConfig | None, source: str) -> None:
        how: dict[str, Any] = {"source": source}
        if cfg is not None:
            how |= {"host": urlsplit(cfg.url).hostname, "url_sha256": hashlib.sha256(cfg.url.encode()).hexdigest(),
                    "events": list(cfg.events), "signed_with": cfg.secret_env}
        audit.append(conn, action, {"webhook": sub_id}, None, how)

    # -- subscriptions --------------------------------------------------------------------------
    def add(self, cfg: WebhookConfig, source: str = CLI_SOURCE, key: str | None = None,
            sub_id: str | None = None) -> Subscription:
        now = time.time()
        sub_id = sub_id or "wh_" + hashlib.sha256(f"{cfg.url}|{now}|{source}".encode()).hexdigest()[:10]
        key = key or f"webhook {sub_id}"
        with self._audited() as log, self._conn() as conn:
            self._insert(conn, sub_id, cfg, source, key, now)
            self._audit(log, "webhook.added", sub_id, cfg, source)
        return Subscription(sub_id, cfg, source, key, now)

    @staticmethod
    def _insert(conn: sqlite3.Connection, sub_id: str, cfg: WebhookConfig, source: str, key: str,
                now: float) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO webhooks(id, url, events_json, secret_env, max_attempts, backoff_s,"
            " max_backoff_s, timeout_s, source, key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (sub_id, cfg.url, json.dumps(cfg.events), cfg.secret_env, cfg.max_attempts, cfg.backoff_s,
             cfg.max_backoff_s, cfg.timeout_s, source, key, now))

    def replace_source(self, source: str, configs: Sequence[WebhookConfig]) -> list[Subscription]:
        """Make the subscriptions of ``source`` (e.g. ``pipeline:<name>``) exactly ``configs``."""
        now = time.time()
        subs = []
        with self._audited() as log, self._conn() as conn:
            before = {r[0]: (r[1], r[2]) for r in conn.execute(
                "SELECT id, events_json, secret_env FROM webhooks WHERE source = ?", (source,))}
            conn.execute("DELETE FROM webhooks WHERE source = ?", (source,))
            for i, cfg in enumerate(configs):
                sub_id = "wh_" + hashlib.sha256(f"{source}|{i}|{cfg.url}".encode()).hexdigest()[:10]
                self._insert(conn, sub_id, cfg, source, f"webhooks[{i}]", now)
                subs.append(Subscription(sub_id, cfg, source, f"webhooks[{i}]", now))
            kept = {s.id for s in subs}
            for sub_id in sorted(set(before) - kept):
                self._audit(log, "webhook.removed", sub_id, None, source)
            for sub in subs:  # a receiver kept with other events or another secret is recorded again
                if before.get(sub.id) != (json.dumps(sub.config.events), sub.config.secret_env):
                    self._audit(log, "webhook.added", sub.id, sub.config, source)
        return subs

    def remove(self, sub_id: str) -> bool:
        with self._audited() as log, self._conn() as conn:
            row = conn.execute("SELECT source FROM webhooks WHERE id = ?", (sub_id,)).fetchone()
            if row is None:
                return False
            conn.execute("DELETE FROM webhooks WHERE id = ?", (sub_id,))
            self._audit(log, "webhook.removed", sub_id, None, str(row[0]))
        return True

    def subscriptions(self) -> list[Subscription]:
        with self._conn(write=False) as conn:
            rows = conn.execute("SELECT * FROM webhooks ORDER BY created_at, id").fetchall()
        out = []
        for r in rows:
            cfg = WebhookConfig.model_validate({
                "url": r["url"], "events": json.loads(r["events_json"]), "secret_env": r["secret_env"],
                "max_attempts": r["max_attempts"], "backoff_s": r["backoff_s"],
                "max_backoff_s": r["max_backoff_s"], "timeout_s": r["timeout_s"]})
            out.append(Subscription(r["id"], cfg, r["source"], r["key"], r["created_at"]))
        return out

    # -- deliveries -----------------------------------------------------------------------------
    def record(self, event_id: str, event_type: str, sub: Subscription, status: str,
               error: str | None = None) -> int:
        now = time.time()
        with self._conn() as conn:
            cur = conn.execute(
                "INSERT INTO deliveries(event_id, event_type, webhook_id, url, status, error, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (event_id, event_type, sub.id, sub.config.url, status, error, now, now))
            return int(cur.lastrowid or 0)

    def update(self, seq: int, *, status: str, attempts: int, last_status_code: int | None,
               error: str | None) -> None:
        now = time.time()
        with self._conn() as conn:
            conn.execute(
                "UPDATE deliveries SET status = ?, attempts = ?, last_status_code = ?, error = ?, updated_at = ?,"
                " delivered_at = CASE WHEN ? = 'delivered' THEN ? ELSE delivered_at END WHERE seq = ?",
                (status, attempts, last_status_code, error, now, status, now, seq))

    def drop(self, seq: int, error: str) -> None:
        """Record a delivery still ``queued`` as ``dropped`` (its tries so far kept): its process
        exited before it was sent, and no other will send it."""
        with self._conn() as conn:
            conn.execute("UPDATE deliveries SET status = 'dropped', error = ? || coalesce('; last try: ' || error, ''),"
                         " updated_at = ? WHERE seq = ? AND status = 'queued'", (error, time.time(), seq))

    def deliveries(self, limit: int = 50) -> list[dict[str, Any]]:
        with self._conn(write=False) as conn:
            rows = conn.execute("SELECT * FROM deliveries ORDER BY seq DESC LIMIT ?", (max(0, limit),)).fetchall()
        return [dict(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._conn(write=False) as conn:
            rows = conn.execute("SELECT status, COUNT(*) FROM deliveries GROUP BY status").fetchall()
        return {str(r[0]): int(r[1]) for r in rows}


def list_deliveries(home: str | Path | None, limit: int = 50) -> list[dict[str, Any]]:
    """The newest ``limit`` deliveries, newest first: ``seq, event_id, event_type, webhook_id, url,
    status`` (queued | delivered | failed | dropped), ``attempts, last_status_code, error,
    created_at, updated_at, delivered_at``. Empty when no webhook was ever set up in ``home``."""
    path = resolve_home(home) / DB_NAME
    if not path.exists():
        return []
    return WebhookDB(home).deliveries(limit)
