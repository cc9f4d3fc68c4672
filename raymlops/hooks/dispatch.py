"""Sending events: a bounded queue and daemon sender threads, so no caller ever waits on a receiver.

:func:`emit` finds the subscriptions of ``home`` that want the event, records one ``queued``
delivery per receiver and puts it on the process's :class:`Dispatcher` queue without waiting; a
full queue records the delivery ``dropped`` instead. Sender threads POST with a per-try timeout,
retry 5xx, 408, 429 and connection errors with exponential backoff up to ``max_attempts``, and
record the outcome. At interpreter exit the queue is drained for at most ``drain_timeout_s``.
A failure in here is logged and recorded, never raised into the caller.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raymlops.exceptions import ConfigError
from raymlops.hooks.events import (
    EVENT_HEADER,
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Event,
    matches,
    sign,
)
from raymlops.hooks.records import DB_NAME, Subscription, WebhookDB
from raymlops.hooks.settings import WebhookConfig
from raymlops.store.home import resolve_home

__all__ = ["Dispatcher", "default_dispatcher", "emit", "sync_pipeline_webhooks"]

log = logging.getLogger("raymlops.hooks")
_RETRY_CODES = {408, 425, 429}


@dataclass(frozen=True)
class _Job:
    db: WebhookDB
    seq: int
    event: Event
    sub: Subscription


class Dispatcher:
    """A bounded queue of deliveries and ``workers`` daemon threads sending them.

    ``clock`` (unix seconds, for the signature's timestamp) and ``sleep`` (between tries) are
    injected so tests need not wait for real backoff."""

    def __init__(self, maxsize: int = 1000, workers: int = 2, drain_timeout_s: float = 3.0,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] | None = None) -> None:
        self.queue: queue.Queue[_Job | None] = queue.Queue(maxsize=maxsize)
        self.drain_timeout_s = drain_timeout_s
        self.clock = clock
        self._stop = threading.Event()
        self.sleep = sleep or (lambda s: self._stop.wait(s) and None)
        self._idle = threading.Condition()
        self._busy = 0
        self._unfinished: dict[int, _Job] = {}  # by delivery seq: queued or being sent
        self._closed = False
        self._threads = [threading.Thread(target=self._run, name=f"raymlops-webhooks-{i}", daemon=True)
                         for i in range(max(1, workers))]
        for t in self._threads:
            t.start()

    # -- the caller's side ------------------------------------------------------------------------
    def submit(self, db: WebhookDB, event: Event, sub: Subscription) -> bool:
        """Queue one delivery without waiting; False (and recorded ``dropped``) when the queue is full."""
        if self._closed:
            db.record(event.id, event.type, sub, "dropped", "dispatcher closed (process exiting)")
            return False
        seq = db.record(event.id, event.type, sub, "queued")
        job = _Job(db, seq, event, sub)
        with self._idle:
            self._busy += 1
            self._unfinished[seq] = job
        try:
            self.queue.put_nowait(job)
        except queue.Full:
            self._done(job)
            db.update(seq, status="dropped", attempts=0, last_status_code=None,
                      error=f"queue full ({self.queue.maxsize} deliveries waiting)")
            log.error("webhook %s: event %s %s dropped: queue full", sub.config.url, event.type, event.id)
            return False
        return True

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until every queued delivery is finished; False if ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self, timeout_s: float | None = None) -> bool:
        """Drain for at most ``timeout_s`` (default ``drain_timeout_s``), then stop the senders.
        Deliveries not finished by then are recorded ``dropped`` (no process would ever send them:
        they stayed ``queued`` for good) and said on stderr; True when all were sent."""
        self._closed = True
        wait = self.drain_timeout_s if timeout_s is None else timeout_s
        drained = self.wait_idle(wait)
        self._stop.set()
        with self._idle:
            left = list(self._unfinished.values())
        for job in left:
            job.db.drop(job.seq, f"not sent: the process exited {wait:g} s after asking, before the receiver answered")
        if left:
            print(f"warning: webhooks: {len(left)} deliver{'y was' if len(left) == 1 else 'ies were'} not sent before "
                  f"exit (a receiver slow or down), recorded as dropped; see `raymlops webhooks deliveries`",
                  file=sys.stderr)
        for _ in self._threads:
            try:
                self.queue.put_nowait(None)
            except queue.Full:
                break
        return drained

    # -- the senders' side ------------------------------------------------------------------------
    def _done(self, job: _Job) -> None:
        with self._idle:
            self._busy -= 1
            self._unfinished.pop(job.seq, None)
            self._idle.notify_all()

    def _run(self) -> None:
        while not self._stop.is_set():
            job = self.queue.get()
            if job is None:
                return
            try:
                self._deliver(job)
            except Exception:  # noqa: BLE001  # a sender thread must survive anything
                log.exception("webhook delivery %s failed unexpectedly", job.seq)
            finally:
                self._done(job)

    def _deliver(self, job: _Job) -> None:
        cfg, event = job.sub.config, job.event
        body = event.body()
        secret = None
        if cfg.secret_env:
            secret = os.environ.get(cfg.secret_env)
            if not secret:
                missing = (f"{job.sub.key}.secret_env: expected environment variable {cfg.secret_env} to hold the "
                           "signing secret, it is not set")
                job.db.update(job.seq, status="failed", attempts=0, last_status_code=None, error=missing)
                log.error("webhook %s: event %s not sent: %s", cfg.url, event.id, missing)
                return
        code: int | None = None
        error: str | None = None
        tries = 0
        for attempt in range(1, cfg.max_attempts + 1):
            if self._stop.is_set() and attempt > 1:
                error = f"{error}; stopped at exit before try {attempt}"
                break
            tries = attempt
            code, error, retry = self._post(cfg, event, body, secret)
            if error is None:
                job.db.update(job.seq, status="delivered", attempts=attempt, last_status_code=code, error=None)
                return
            last = not retry or attempt == cfg.max_attempts or self._stop.is_set()  # at exit: no next try
            job.db.update(job.seq, status="failed" if last else "queued", attempts=attempt, last_status_code=code,
                          error=error)
            if not retry:
                break
            if attempt < cfg.max_attempts:
                self.sleep(min(cfg.max_backoff_s, cfg.backoff_s * 2 ** (attempt - 1)))
        job.db.update(job.seq, status="failed", attempts=tries, last_status_code=code, error=error)
        log.error("webhook %s: event %s %s failed after %d tries: %s", cfg.url, event.type, event.id, tries, error)

    def _post(self, cfg: WebhookConfig, event: Event, body: bytes,
              secret: str | None) -> tuple[int | None, str | None, bool]:
        """One try: ``(status code, error or None, worth retrying)``."""
        headers = {"Content-Type": "application/json", "User-Agent": "raymlops-webhooks",
                   EVENT_ID_HEADER: event.id, EVENT_HEADER: event.type}
        if secret is not None:
            ts = int(self.clock())
            headers[TIMESTAMP_HEADER] = str(ts)
            headers[SIGNATURE_HEADER] = sign(secret, ts, body)
        req = urllib.request.Request(cfg.url, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=cfg.timeout_s) as resp:  # noqa: S310  # validated http(s)
                resp.read(65536)
                return int(resp.status), None, False
        except urllib.error.HTTPError as exc:
            return exc.code, f"HTTP {exc.code} {exc.reason}", exc.code >= 500 or exc.code in _RETRY_CODES
        except TimeoutError:
            return None, f"timeout after {cfg.timeout_s:g}s", True
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                return None, f"timeout after {cfg.timeout_s:g}s", True
            return None, f"{type(reason).__name__}: {reason}", True
        except OSError as exc:
            return None, f"{type(exc).__name__}: {exc}", True


_default: Dispatcher | None = None
_default_pid = 0
_lock = threading.Lock()


def default_dispatcher() -> Dispatcher:
    """This process's dispatcher (a new one after a fork), drained at interpreter exit."""
    global _default, _default_pid
    with _lock:
        if _default is None or _default_pid != os.getpid():
            _default, _default_pid = Dispatcher(), os.getpid()
            atexit.register(_default.close)
        return _default


def emit(home: str | Path | None, event_type: str, data: dict[str, Any],
         dispatcher: Dispatcher | None = None) -> Event | None:
    """Send ``event_type`` with ``data`` to every receiver in ``home`` that wants it; returns at once.

    Returns the event (None when nobody subscribed). Never raises: a problem is logged."""
    try:
        if not (resolve_home(home) / DB_NAME).exists():
            return None
        db = WebhookDB(home, create=False)
        subs = [s for s in db.subscriptions() if matches(s.config.events, event_type)]
        if not subs:
            return None
        event = Event(event_type, data)
        sender = dispatcher or default_dispatcher()
        for sub in subs:
            sender.submit(db, event, sub)
        return event
    except Exception as exc:  # noqa: BLE001  # webhooks must never stop a promotion or the monitor
        log.error("webhooks: event %s not queued: %s: %s", event_type, type(exc).__name__, exc)
        return None


def sync_pipeline_webhooks(home: str | Path | None, pipeline: str,
                           webhooks: Sequence[WebhookConfig]) -> list[Subscription]:
    """Store ``webhooks:`` of pipeline ``pipeline`` in ``home`` (replacing its earlier ones), so
    every process using the home (CLI, monitor actor, retrain loop) sends to them. Raises
    ConfigError naming ``webhooks[i].secret_env`` when that environment variable is not set."""
    for i, cfg in enumerate(webhooks):
        if cfg.secret_env and not os.environ.get(cfg.secret_env):
            raise ConfigError(f"webhooks[{i}].secret_env: expected environment variable {cfg.secret_env} to hold "
                              "the signing secret, it is not set")
    source = f"pipeline:{pipeline}"
    if not webhooks and not (resolve_home(home) / DB_NAME).exists():
        return []
    return WebhookDB(home).replace_source(source, webhooks)
