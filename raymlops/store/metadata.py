"""SQLite metadata: the embedded default store (WAL mode, one transaction per change).

Each operation opens its own connection, so the store is safe to use from several threads and
processes; writers take the write lock up front (``BEGIN IMMEDIATE``) and wait for it instead
of failing with ``database is locked``.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA_VERSION = 2  # 2: a step can be 'interrupted' (Ctrl-C / SIGTERM in it)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    source TEXT NOT NULL,
    rows INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    manifest_key TEXT NOT NULL,
    manifest_sha256 TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshot_tags (
    tag TEXT PRIMARY KEY,
    snapshot_id TEXT NOT NULL REFERENCES snapshots(id),
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS models (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at REAL NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('registered', 'rejected')),
    snapshot_id TEXT NOT NULL,
    artifact_key TEXT NOT NULL,
    artifact_sha256 TEXT NOT NULL,
    record_json TEXT NOT NULL,
    UNIQUE (name, version)
);
CREATE TABLE IF NOT EXISTS aliases (
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    model_id TEXT NOT NULL REFERENCES models(id),
    updated_at REAL NOT NULL,
    PRIMARY KEY (name, alias)
);
CREATE TABLE IF NOT EXISTS alias_history (
    seq INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    alias TEXT NOT NULL,
    from_model TEXT,
    to_model TEXT NOT NULL,
    ts REAL NOT NULL,
    reason TEXT
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    status TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    record_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    action TEXT NOT NULL,
    record_json TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS run_steps (
    run_id TEXT NOT NULL REFERENCES runs(id),
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'ran', 'cached', 'skipped', 'failed', 'interrupted')),
    started_at REAL,
    ended_at REAL,
    cache_key TEXT,
    rows INTEGER,
    bytes INTEGER,
    record_json TEXT NOT NULL,
    log_text TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (run_id, seq)
);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at);
CREATE TABLE IF NOT EXISTS step_cache (
    cache_key TEXT PRIMARY KEY,
    step TEXT NOT NULL,
    run_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    outputs_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS snapshot_lineage (
    snapshot_id TEXT PRIMARY KEY REFERENCES snapshots(id),
    kind TEXT NOT NULL,
    parent_id TEXT,
    transform_hash TEXT,
    record_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS drift_checks (
    snapshot_id TEXT NOT NULL REFERENCES snapshots(id),
    reference_id TEXT NOT NULL REFERENCES snapshots(id),
    settings_hash TEXT NOT NULL,
    created_at REAL NOT NULL,
    dataset_drift INTEGER NOT NULL,
    drifted INTEGER NOT NULL,
    tested INTEGER NOT NULL,
    report_key TEXT NOT NULL,
    report_sha256 TEXT NOT NULL,
    PRIMARY KEY (snapshot_id, reference_id, settings_hash)
);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    acquired_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
"""


def _run_steps_sql(conn: sqlite3.Connection) -> str:
    return str(conn.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'run_steps'").fetchone()[0])


def _upgrade(conn: sqlite3.Connection) -> None:
    """A home of schema 1 to 2: ``run_steps`` gets the ``interrupted`` status. SQLite cannot change
    a CHECK constraint in place, so the table is rebuilt with its rows, in one transaction (another
    process that opens the home meanwhile waits, then finds it done)."""
    if "'interrupted'" in _run_steps_sql(conn):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if "'interrupted'" not in _run_steps_sql(conn):
            table = _SCHEMA[_SCHEMA.index("CREATE TABLE IF NOT EXISTS run_steps ("):]
            table = table[:table.index(");") + 2].replace("IF NOT EXISTS run_steps", "run_steps_v2")
            conn.execute(table)
            conn.execute("INSERT INTO run_steps_v2 SELECT * FROM run_steps")
            conn.execute("DROP TABLE run_steps")
            conn.execute("ALTER TABLE run_steps_v2 RENAME TO run_steps")
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class MetadataStore:
    """The SQLite database at ``path`` (created with ``schema`` on first use; the home's metadata
    by default, another schema for another database of the home such as ``webhooks.db``;
    ``schema=None`` opens an existing database as it is)."""

    def __init__(self, path: str | Path, timeout_s: float = 60.0, schema: str | None = None,
                 create: bool = True) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        if not create:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            self._wal(conn)
            if schema is None:
                conn.executescript(_SCHEMA)
                conn.execute(
                    "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
                _upgrade(conn)
            else:
                conn.executescript(schema)
        conn.close()

    def _wal(self, conn: sqlite3.Connection) -> None:
        """WAL mode, waiting while other processes hold the database: SQLite answers the mode change
        "database is locked" at once, without its busy handler, when another connection holds a lock
        (eight processes opening one home at once: one failed)."""
        deadline = time.monotonic() + self.timeout_s
        delay = 0.01
        while True:
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: all or nothing, holding the write lock from the start."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()

    def journal_mode(self) -> str:
        with self.read() as conn:
            return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
