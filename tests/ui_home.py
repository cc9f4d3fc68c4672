"""A small, real raymlops home for the web UI's tests, built without Ray: two snapshots laid out
as ``create_snapshot`` writes them (with their profiles), a recorded drift check, two model
versions with aliases moved between them, a succeeded and a failed run, and their audit records.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from sklearn.linear_model import LogisticRegression

from raymlops import audit
from raymlops.data.drift import Reference, check_snapshot
from raymlops.data.schema import schema_from_profile
from raymlops.data.snapshot_read import load_profile
from raymlops.pipeline.history import RunRecorder
from raymlops.registry.registry import promote, register_model
from raymlops.stats.profile import profile_table
from raymlops.store import Store

OK_RUN, FAILED_RUN = "20260101-000000-aaaaaa", "20260102-000000-bbbbbb"


@dataclass(frozen=True)
class UiHome:
    home: Path
    snap_a: str
    snap_b: str
    models: tuple[str, ...]
    runs: tuple[str, ...]


def snapshot(store: Store, table: pa.Table, source: str, tags: list[str], parent: str | None = None) -> str:
    """A committed snapshot (data, profile, manifest, lineage row, tags, audit), without Ray."""
    buf = io.BytesIO()
    pq.write_table(table, buf)
    data = buf.getvalue()
    snap_id = hashlib.sha256(data).hexdigest()
    prof = profile_table(table)
    arts = store.artifacts
    staging = arts.staging_key("snapshot")
    sha = arts.write_bytes(f"{staging}/data/part-00000-0.parquet", data)
    prof_bytes = json.dumps(prof.to_dict(), default=str).encode()
    prof_sha = arts.write_bytes(f"{staging}/profile.json", prof_bytes)
    now = time.time()
    manifest = {"format_version": 2, "id": snap_id, "kind": "data", "created_at": now, "source": source,
                "sources": [source], "parent": parent, "transform_hash": "t" * 16,
                "transforms": [{"name": "dropna"}],
                "validation": {"rows_in": table.num_rows + 2, "rows_kept": table.num_rows, "rows_quarantined": 2,
                               "policy": "quarantine"},
                "rows": table.num_rows, "bytes": len(data), "schema": schema_from_profile(prof).to_dict(),
                "profile": {"file": "profile.json", **prof.summary()},
                "files": [{"path": "data/part-00000-0.parquet", "size": len(data), "sha256": sha},
                          {"path": "profile.json", "size": len(prof_bytes), "sha256": prof_sha}]}
    manifest_bytes = json.dumps(manifest, default=str).encode()
    manifest_sha = arts.write_bytes(f"{staging}/manifest.json", manifest_bytes)
    assert arts.promote(staging, f"snapshots/{snap_id}")
    with store.metadata.transaction() as conn:
        conn.execute("INSERT INTO snapshots(id, created_at, source, rows, bytes, manifest_key, manifest_sha256)"
                     " VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (snap_id, now, source, table.num_rows, len(data), f"snapshots/{snap_id}/manifest.json",
                      manifest_sha))
        conn.execute("INSERT INTO snapshot_lineage(snapshot_id, kind, parent_id, transform_hash, record_json)"
                     " VALUES (?, 'data', ?, ?, ?)", (snap_id, parent, "t" * 16, json.dumps({"sources": [source]})))
        for tag in tags:
            conn.execute("INSERT INTO snapshot_tags(tag, snapshot_id, updated_at) VALUES (?, ?, ?)",
                         (tag, snap_id, now))
        audit.append(conn, "snapshot.created", {"snapshot": snap_id}, "test", {"source": source})
    return snap_id


def _table(rng: np.random.Generator, n: int, shift: float) -> pa.Table:
    return pa.table({"x": rng.normal(size=n) + shift, "y": rng.integers(0, 2, size=n),
                     "color": rng.choice(["red", "green", "blue"], size=n)})


def _run(store: Store, run_id: str, started: float, model: str | None, snap: str, failed: bool) -> None:
    rec = RunRecorder(store.metadata, run_id)
    steps = [("ingest", {"source": "mem://a"}, {"rows": 400}), ("snapshot", {}, {"snapshot": snap}),
             ("train", {"snapshot": snap}, {"model": model} if model else {})]
    rec.save_run(pipeline="quickstart", status="running", config_hash="c" * 64, started_at=started, ended_at=None,
                 record={})
    t = started
    for seq, (name, inputs, outputs) in enumerate(steps, start=1):
        status = "failed" if failed and name == "train" else "ran"
        rec.save_step(seq, {"name": name, "status": status, "seconds": 1.0 + seq, "detail": f"{name} detail",
                            "started_at": t, "ended_at": t + 1.0 + seq, "cache_key": "k" * 64, "inputs": inputs,
                            "outputs": outputs, "rows": 400, "bytes": 4096, "error": None},
                      f"{name} log line one\n{name} log line two")
        t += 1.0 + seq
    error = None
    if failed:
        error = {"step": "train", "type": "ZeroDivisionError", "message": "division by zero",
                 "context": "your objective divided by the number of positive labels, which was 0",
                 "where": "userfns.py:12 in objective",
                 "traceback": 'Traceback (most recent call last):\n  File "userfns.py", line 12, in objective\n'
                              "    return 1 / positives\nZeroDivisionError: division by zero",
                 "remote": True, "log_tail": ["train log line two"]}
    rec.save_run(pipeline="quickstart", status="failed" if failed else "succeeded", config_hash="c" * 64,
                 started_at=started, ended_at=t,
                 record={"who": {"user": "ann", "host": "box", "pid": 1, "argv": ["raymlops", "run", "q.yaml"]},
                         "where": {"host": "box", "cluster": "local"}, "code": {"package_version": "0.1.0"},
                         "config": {"name": "quickstart", "train": {"model": "logistic"}}, "snapshot": snap,
                         "model": model, "gate": None if failed else "passed", "error": error})


def build_home(home: Path) -> UiHome:
    store = Store.open(home)
    rng = np.random.default_rng(7)
    a = snapshot(store, _table(rng, 400, 0.0), "mem://train.csv", ["train"])
    b = snapshot(store, _table(rng, 300, 1.5), "mem://new.csv", ["latest"], parent=a)
    ref_profile = load_profile(store, a)
    assert ref_profile is not None
    check_snapshot(store, b, Reference(a, ref_profile, "the training snapshot"),
                   reason="test", exact=False)
    X = rng.normal(size=(60, 2))
    y = (X[:, 0] > 0).astype(int)
    sig = {"inputs": [{"name": "x"}, {"name": "y"}], "output": "classification", "classes": [0, 1]}
    ids = []
    for i, (C, gate) in enumerate(((1.0, {"status": "passed", "reasons": []}),
                                   (0.1, {"status": "rejected", "reasons": ["roc_auc >= 0.99 failed"]}),
                                   (0.5, {"status": "passed", "reasons": []}))):
        v = register_model(store, "quickstart", LogisticRegression(C=C).fit(X, y), snapshot_id=a, signature=sig,
                           metrics={"roc_auc": 0.9 + i / 100, "accuracy": 0.8}, gate=gate,
                           lineage={"config_hash": "c" * 64, "code": {"package_version": "0.1.0"}, "seed": 42,
                                    "run_id": OK_RUN, "packages": {"numpy": np.__version__}})
        ids.append(v.id)
    promote(store, ids[0], reason="roll back for the test")
    with store.metadata.transaction() as conn:
        audit.append(conn, "deployment.created", {"deployment": "quickstart", "model": ids[0]}, "test",
                     {"endpoint": "http://127.0.0.1:8000/quickstart"})
    _run(store, OK_RUN, 1_767_225_600.0, ids[0], a, failed=False)
    _run(store, FAILED_RUN, 1_767_312_000.0, None, b, failed=True)
    return UiHome(store.home, a, b, tuple(ids), (OK_RUN, FAILED_RUN))


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@contextlib.contextmanager
def ui_process(home: Path, *args: str, ready_path: str = "/", timeout_s: float = 60.0) -> Iterator[str]:
    """The real ``raymlops ui --port 0`` in a subprocess over ``home`` (plus ``args``); yields its base
    URL (``http://127.0.0.1:<port>``, as the command printed it) once ``ready_path`` answers."""
    import re
    import subprocess
    import sys

    import httpx

    proc = subprocess.Popen([sys.executable, "-m", "raymlops.cli", "ui", "--port", "0", "--home", str(home), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.fullmatch(r"raymlops ui: (http://127\.0\.0\.1:\d+)/\n", line)
        assert m, (line, proc.stderr.read() if proc.poll() is not None else "")  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                httpx.get(m.group(1) + ready_path, timeout=timeout_s)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, f"{m.group(1)} did not answer within {timeout_s} s"
                time.sleep(0.1)
        yield m.group(1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
