"""Shared pieces of the serving and monitor tests: a tiny registry, loopback HTTP, load in the
background, a monitor actor back from a crash."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from raymlops.registry import register_model
from raymlops.registry.registry import promote
from raymlops.store.home import Store

FEATURES = ("a", "b", "c", "d")


def toy_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(400, len(FEATURES)))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    return X, y


def toy_store(home: Path, name: str = "toy") -> Store:
    """``name:v1`` learns y, ``name:v2`` learns 1 - y (so their answers differ), ``name:v3`` is
    v1 fitted again on fewer rows (a third artifact). All pass the gate; ``name@champion`` is v1."""
    from sklearn.linear_model import LogisticRegression

    store = Store.open(home)
    X, y = toy_data()
    signature = {"inputs": [{"name": n, "type": "double", "min": float(X[:, j].min()), "max": float(X[:, j].max())}
                            for j, n in enumerate(FEATURES)], "output": "classification", "classes": [0, 1]}
    common: dict[str, Any] = {
        "snapshot_id": "s" * 64, "signature": signature, "metrics": {"roc_auc": 1.0},
        "gate": {"status": "passed", "reasons": []},
        "lineage": {"config_hash": "c", "snapshot_id": "s" * 64, "seed": 1, "run_id": "test"},
    }
    register_model(store, name, LogisticRegression().fit(X, y), **common)
    register_model(store, name, LogisticRegression().fit(X, 1 - y), **common)
    register_model(store, name, LogisticRegression(C=0.5).fit(X[:200], y[:200]), **common)
    promote(store, f"{name}:v1", reason="test setup")
    return store


def row(values: Any) -> dict[str, float]:
    return {n: float(v) for n, v in zip(FEATURES, values, strict=True)}


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


def request(url: str, body: bytes | None = None, *, method: str = "POST", headers: dict[str, str] | None = None,
            conn: http.client.HTTPConnection | None = None, timeout: float = 60.0) -> Reply:
    """One HTTP call on loopback with exactly these bytes and headers."""
    parts = urlsplit(url)
    own = conn is None
    c = conn or http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        c.request(method, parts.path, body=body,
                  headers={"Content-Type": "application/json"} if headers is None else headers)
        resp = c.getresponse()
        raw = resp.read()
    finally:
        if own:
            c.close()
    try:
        parsed: Any = json.loads(raw)
    except ValueError:
        parsed = raw.decode(errors="replace")
    return Reply(resp.status, parsed, {k.lower(): v for k, v in resp.getheaders()})


def predict(url: str, payload: Any, conn: http.client.HTTPConnection | None = None,
            headers: dict[str, str] | None = None) -> Reply:
    return request(f"{url}/predict", json.dumps(payload).encode(), conn=conn, headers=headers)


@dataclass
class Load:
    """Requests sent in background threads until :meth:`stop`; every reply is kept as
    ``(time the request was sent, status, X-Model-Version)``, and the time its answer arrived at
    the same index of :attr:`answered`."""

    url: str
    make_payload: Callable[[int], Any]
    threads: int = 4
    replies: list[tuple[float, int, str | None]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    answered: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(self.threads)]

    def _run(self, worker: int) -> None:
        parts = urlsplit(self.url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        i = 0
        while not self._stop.is_set():
            try:
                started = time.monotonic()
                r = predict(self.url, self.make_payload(worker * 1_000_000 + i), conn=conn)
                item = (started, r.status, r.headers.get("x-model-version"))
            except (OSError, http.client.HTTPException) as exc:  # a dropped connection is a failure too
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
                with self._lock:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            done = time.monotonic()
            with self._lock:
                self.replies.append(item)
                self.answered.append(done)
            i += 1
        conn.close()

    def __enter__(self) -> Load:
        for t in self._workers:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=90)

    def count(self) -> int:
        with self._lock:
            return len(self.replies)

    def wait_for(self, n: int, timeout_s: float = 60.0) -> None:
        start = self.count()
        deadline = time.monotonic() + timeout_s
        while self.count() < start + n and time.monotonic() < deadline:
            time.sleep(0.05)


def restarted_monitor_status(route: str, timeout: float = 120.0) -> dict[str, Any]:
    """The status of monitor ``route`` once Ray has restarted it after a ``ray.kill``. ``ray.kill``
    returns before the kill lands, so a call right after it may still reach the old instance: this
    waits for an answer from the restarted one (``restored``: it read its checkpoint), and returns
    the last answer after ``timeout``."""
    import ray

    from raymlops.monitor.names import monitor_name
    from raymlops.ray_session import NAMESPACE

    deadline = time.monotonic() + timeout
    while True:
        try:
            status: dict[str, Any] = ray.get(
                ray.get_actor(monitor_name(route), namespace=NAMESPACE).status.remote(), timeout=30)
            if status["restored"] or time.monotonic() > deadline:
                return status
        except Exception:  # noqa: BLE001 - restarting
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)
