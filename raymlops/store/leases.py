"""Named leases in the metadata database: one holder at a time for work that must not run twice.

A retraining cycle holds ``retrain:<route>`` so that two watchers (or a watcher and an operator's
``raymlops retrain run``) cannot train and deploy two challengers for one route at once. A lease
expires ``ttl_s`` after it was last renewed, so a holder that died (SIGKILL, lost node) blocks
nobody for longer than that; a live holder renews it from a background thread (:class:`Held`).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from raymlops.exceptions import RaymlopsError
from raymlops.store.metadata import MetadataStore


class LeaseHeld(RaymlopsError):
    """Someone else holds the lease; ``holder`` and ``expires_at`` say who and until when."""

    def __init__(self, name: str, holder: str, acquired_at: float, expires_at: float) -> None:
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(acquired_at))
        super().__init__(f"{name} is held by {holder} since {since} "
                         f"(expires in {max(expires_at - time.time(), 0.0):.0f} s unless renewed)")
        self.name, self.holder, self.expires_at = name, holder, expires_at


def holder_id() -> str:
    """``user@host:pid`` plus a random suffix: unique per acquisition attempt's owner."""
    user = os.environ.get("USER") or os.environ.get("USERNAME") or str(os.getuid())
    return f"{user}@{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


def acquire(metadata: MetadataStore, name: str, holder: str, ttl_s: float,
            clock: Callable[[], float] = time.time) -> None:
    """Take ``name`` for ``ttl_s`` seconds, or raise :class:`LeaseHeld` naming the holder."""
    now = clock()
    with metadata.transaction() as conn:  # BEGIN IMMEDIATE: check-and-set under the write lock
        row = conn.execute("SELECT holder, acquired_at, expires_at FROM leases WHERE name = ?", (name,)).fetchone()
        if row is not None and row["holder"] != holder and row["expires_at"] > now:
            raise LeaseHeld(name, row["holder"], row["acquired_at"], row["expires_at"])
        conn.execute("INSERT OR REPLACE INTO leases(name, holder, acquired_at, expires_at) VALUES (?, ?, ?, ?)",
                     (name, holder, now, now + ttl_s))


def renew(metadata: MetadataStore, name: str, holder: str, ttl_s: float,
          clock: Callable[[], float] = time.time) -> bool:
    """Extend our lease; False when it is no longer ours (it expired and someone took it)."""
    with metadata.transaction() as conn:
        cur = conn.execute("UPDATE leases SET expires_at = ? WHERE name = ? AND holder = ?",
                           (clock() + ttl_s, name, holder))
        return cur.rowcount == 1


def release(metadata: MetadataStore, name: str, holder: str) -> None:
    with metadata.transaction() as conn:
        conn.execute("DELETE FROM leases WHERE name = ? AND holder = ?", (name, holder))


def held(metadata: MetadataStore, prefix: str = "", clock: Callable[[], float] = time.time) -> list[dict[str, Any]]:
    """Unexpired leases whose name starts with ``prefix``, oldest first."""
    with metadata.read() as conn:
        rows = conn.execute("SELECT name, holder, acquired_at, expires_at FROM leases WHERE name LIKE ? "
                            "AND expires_at > ? ORDER BY acquired_at", (prefix.replace("%", "") + "%", clock()))
        return [dict(r) for r in rows]


def current(metadata: MetadataStore, name: str) -> dict[str, Any] | None:
    with metadata.read() as conn:
        row = conn.execute("SELECT holder, acquired_at, expires_at FROM leases WHERE name = ?", (name,)).fetchone()
    return dict(row) if row is not None else None


@dataclass
class Held:
    """``with Held(metadata, name, ttl_s=120):`` acquires (or raises :class:`LeaseHeld`), renews
    every ``ttl_s / 4`` in a daemon thread, and releases on exit."""

    metadata: MetadataStore
    name: str
    ttl_s: float = 120.0

    def __post_init__(self) -> None:
        self.holder = holder_id()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = False

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl_s / 4):
            try:
                if not renew(self.metadata, self.name, self.holder, self.ttl_s):
                    self.lost = True
                    return
            except Exception:  # noqa: BLE001  # a busy database: try again next time
                continue

    def __enter__(self) -> Held:
        acquire(self.metadata, self.name, self.holder, self.ttl_s)
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease-{self.name}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        release(self.metadata, self.name, self.holder)
