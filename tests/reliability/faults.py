"""Fault injection shared by ``tests/reliability`` (small counts) and ``benchmarks/reliability.py``
(the full counts): SIGKILLed drivers, concurrent writers, and the store checks run afterwards.

Every check goes through the user's tools where there is one (``raymlops doctor``,
``raymlops snapshot verify``, ``raymlops audit verify`` as subprocesses) and reads SQLite and
the artifact folder directly for what no tool reports (a row without its file, an alias to a
missing version, a change without its audit record)."""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DRIVER = "tests.reliability.fault_driver"


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without raymlops/Ray addresses that would point elsewhere."""
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAYMLOPS_HOME", "RAYMLOPS_ARTIFACT_ROOT")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def cli(*args: str, timeout: float = 120.0, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``raymlops <args>`` as a user runs it (a fresh process)."""
    return subprocess.run([sys.executable, "-m", "raymlops.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env or clean_env(), cwd=ROOT)


# -- storage faults --------------------------------------------------------------------------------
# root ignores file modes: its processes here run without the capabilities that let it
NO_OVERRIDE = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"] if os.geteuid() == 0 else []


def file_limit(limit: int) -> Any:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG instead of killing us
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def store_write(home: Path, size: int, env: dict[str, str], preexec: Any = None,
                prefix: list[str] | None = None) -> dict[str, Any]:
    """Register one model of ``size`` floats in a fresh process (the fault_driver's ``store-write``);
    its one JSON line: the error's type and message, or the version."""
    proc = subprocess.run([*(prefix or []), sys.executable, "-m", "tests.reliability.fault_driver", "store-write",
                           str(home), str(size)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, preexec_fn=preexec)
    if proc.returncode != 0 or not proc.stdout.strip():
        return {"error": "crashed", "message": proc.stderr[-2000:], "raymlops": False}
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# -- SIGKILL campaigns -----------------------------------------------------------------------------
@dataclass
class KillReport:
    mode: str
    kills: int = 0
    phases: Counter[str] = field(default_factory=Counter)
    delays_s: list[float] = field(default_factory=list)
    failed_to_start: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "kills": self.kills, "phases": dict(self.phases),
                "delay_s_min": min(self.delays_s, default=0.0), "delay_s_max": max(self.delays_s, default=0.0),
                "failed_to_start": self.failed_to_start}


class _Reader(threading.Thread):
    """Collects a child's stdout lines as they come (the last phase marker is where it died)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        super().__init__(daemon=True)
        self.proc = proc
        self.lines: list[str] = []
        self.ready = threading.Event()

    def run(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            self.lines.append(line)
            if line == "ready":
                self.ready.set()
        self.ready.set()  # ended (crashed before ready): do not wait forever

    def phase(self) -> str:
        marks = [ln[2:] for ln in self.lines if ln.startswith("P ")]
        return marks[-1].split()[0] if marks else "startup"


def kill_campaign(mode: str, home: Path, kills: int, *, seed: int = 0, max_delay_s: float = 0.4,
                  address: str | None = None, ready_timeout_s: float = 120.0) -> KillReport:
    """Start the driver ``kills`` times, SIGKILL it a random time (0 to ``max_delay_s``) after it is
    ready, and record in which phase each kill landed."""
    rng = random.Random(seed)
    report = KillReport(mode)
    for i in range(kills):
        args = [home.as_posix(), str(seed * 1000 + i)]
        if mode == "snapshot":
            assert address is not None
            args = [home.as_posix(), address, str(seed * 1000 + i)]
        proc = subprocess.Popen([sys.executable, "-m", DRIVER, mode, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=clean_env(), cwd=ROOT)
        reader = _Reader(proc)
        reader.start()
        try:
            if not reader.ready.wait(ready_timeout_s) or proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.poll() is not None else "timeout"
                report.failed_to_start.append(err)
                continue
            delay = rng.uniform(0.0, max_delay_s)
            time.sleep(delay)
            if proc.poll() is not None:  # it died by itself: that is a bug, report it
                report.failed_to_start.append(proc.stderr.read().decode(errors="replace")[-2000:])
                continue
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            reader.join(timeout=5)
            report.kills += 1
            report.delays_s.append(delay)
            report.phases[reader.phase()] += 1
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
    return report


# -- store checks ------------------------------------------------------------------------------------
def check_store(home: Path, *, cli_verify_all: bool = True) -> dict[str, Any]:
    """Every check a user can run, plus the invisible-partial checks; ``problems`` lists failures."""
    problems: list[str] = []
    doctor = cli("doctor", "--home", str(home), "--json")
    report = json.loads(doctor.stdout.strip().splitlines()[-1]) if doctor.stdout.strip() else {}
    if doctor.returncode != 0:
        problems.append(f"raymlops doctor exit {doctor.returncode}: "
                        f"{[f for f in report.get('findings', []) if not f['ok']] or doctor.stderr[-500:]}")
    audit_v = cli("audit", "verify", "--home", str(home), "--json")
    if audit_v.returncode != 0:
        problems.append(f"raymlops audit verify exit {audit_v.returncode}: "
                        f"{audit_v.stdout[-500:]}{audit_v.stderr[-500:]}")

    db = sqlite3.connect(f"file:{home / 'metadata.db'}?mode=ro", uri=True, timeout=60)
    try:
        snaps = [r[0] for r in db.execute("SELECT id FROM snapshots ORDER BY created_at")]
        models = db.execute("SELECT id, artifact_key, artifact_sha256 FROM models").fetchall()
        dangling_alias = db.execute(
            "SELECT name, alias, model_id FROM aliases WHERE model_id NOT IN (SELECT id FROM models)").fetchall()
        dangling_tag = db.execute(
            "SELECT tag, snapshot_id FROM snapshot_tags WHERE snapshot_id NOT IN (SELECT id FROM snapshots)").fetchall()
        actions = Counter(r[0] for r in db.execute("SELECT action FROM audit"))
        alias_moves = db.execute("SELECT count(*) FROM alias_history").fetchone()[0]
    finally:
        db.close()
    if dangling_alias:
        problems.append(f"aliases to versions that do not exist: {dangling_alias}")
    if dangling_tag:
        problems.append(f"tags to snapshots that do not exist: {dangling_tag}")
    # every change is audited in its own transaction: counts must agree exactly
    if actions["model.registered"] != len(models):
        problems.append(f"{len(models)} model versions but {actions['model.registered']} model.registered records")
    if actions["snapshot.created"] != len(snaps):
        problems.append(f"{len(snaps)} snapshots but {actions['snapshot.created']} snapshot.created records")
    audited_moves = actions["alias.moved"] + actions["alias.rolled_back"]
    if audited_moves != alias_moves:
        problems.append(f"{alias_moves} alias moves but {audited_moves} alias audit records")
    artifacts = home / "artifacts"
    for model_id, key, _sha in models:
        if not (artifacts / key).is_file():
            problems.append(f"model {model_id}: artifact {key} missing")
    verified = 0
    for snap in snaps if cli_verify_all else snaps[-1:]:
        r = cli("snapshot", "verify", snap, "--home", str(home))
        verified += 1
        if r.returncode != 0:
            problems.append(f"raymlops snapshot verify {snap[:12]} exit {r.returncode}: "
                            f"{r.stdout[-300:]}{r.stderr[-300:]}")
    staging = artifacts / "staging"
    leftovers = {
        "staging": sorted(p.name for p in staging.glob("*")) if staging.is_dir() else [],
        "tmp_files": sorted(str(p.relative_to(artifacts)) for p in artifacts.rglob("*.tmp-*")),
        "unrecorded_snapshot_folders": sorted(
            p.name for p in (artifacts / "snapshots").glob("*") if p.name not in set(snaps))
        if (artifacts / "snapshots").is_dir() else [],
    }
    return {"problems": problems, "snapshots": len(snaps), "models": len(models), "alias_moves": alias_moves,
            "snapshots_verified_by_cli": verified, "audit_records": sum(actions.values()), "leftovers": leftovers,
            "doctor_exit": doctor.returncode, "audit_verify_exit": audit_v.returncode}


# -- concurrent writers ------------------------------------------------------------------------------
def concurrent_writers(home: Path, writers: int, per_writer: int, timeout_s: float = 240.0) -> dict[str, Any]:
    """``writers`` processes at once, each registering ``per_writer`` versions of ``shared`` and moving
    three aliases after each; then the lost-update checks."""
    start = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-m", DRIVER, "writer", home.as_posix(), str(w), str(per_writer)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env(), cwd=ROOT)
             for w in range(writers)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=timeout_s)
        outs.append((p.returncode, out, err))
    wall = time.monotonic() - start
    problems: list[str] = []
    results = []
    for rc, out, err in outs:
        if rc != 0 or not out.strip():
            problems.append(f"writer exit {rc}: {err[-1500:]}")
            continue
        results.append(json.loads(out.strip().splitlines()[-1]))
    errors = [e for r in results for e in r["errors"]]
    locked = [e for e in errors if "locked" in e.lower()]
    registered = [m for r in results for m in r["registered"]]
    db = sqlite3.connect(f"file:{home / 'metadata.db'}?mode=ro", uri=True, timeout=60)
    try:
        versions = [r[0] for r in db.execute("SELECT version FROM models WHERE name = 'shared' ORDER BY version")]
        history = db.execute(
            "SELECT alias, from_model, to_model FROM alias_history WHERE name = 'shared' ORDER BY seq").fetchall()
        aliases = dict(db.execute("SELECT alias, model_id FROM aliases WHERE name = 'shared'").fetchall())
    finally:
        db.close()
    expected = writers * per_writer
    if len(registered) != expected:
        problems.append(f"{len(registered)} registrations reported, {expected} expected")
    if sorted(set(registered)) != sorted(registered):
        problems.append("two writers were told they registered the same version")
    if versions != list(range(1, expected + 1)):
        problems.append(f"versions are not 1..{expected} without gaps or repeats: {versions}")
    # no lost update: each alias's moves form one chain (every move starts where the last one ended)
    last: dict[str, str | None] = {}
    for alias, frm, to in history:
        if last.get(alias) != frm:
            problems.append(f"lost update on @{alias}: a move from {frm} after the alias pointed at {last.get(alias)}")
        last[alias] = to
    if len(history) != writers * per_writer * 3:
        problems.append(f"{len(history)} alias moves recorded, {writers * per_writer * 3} made")
    if {a: m for a, m in last.items()} != aliases:
        problems.append(f"alias table {aliases} differs from the end of its history {last}")
    return {"writers": writers, "per_writer": per_writer, "registered": len(registered), "alias_moves": len(history),
            "errors": errors, "database_is_locked": len(locked), "wall_s": round(wall, 2), "problems": problems}


# -- serving: a replica killed under steady load ---------------------------------------------------
def replica_actors(route: str) -> list[str]:
    """Names of the live replica actors of ``route``'s model deployment (Serve's own namespace)."""
    import ray

    names = ray.util.list_named_actors(all_namespaces=True)
    return sorted(a["name"] for a in names if a["namespace"] == "serve" and a["name"].startswith("SERVE_REPLICA::")
                  and f"::{route}#" in a["name"])


def _running_replicas(route: str) -> int:
    from ray import serve

    try:
        app = serve.status().applications[route]
    except Exception:  # noqa: BLE001 - Serve busy: count as not running
        return 0
    return sum(d.replica_states.get("RUNNING", 0) for d in app.deployments.values() if "Control" not in str(d))


def kill_replica_under_load(url: str, route: str, payload: Any, *, before_s: float = 3.0, after_s: float = 12.0,
                            threads: int = 4, bucket_s: float = 0.5, replace_timeout_s: float = 60.0,
                            ) -> dict[str, Any]:
    """Steady loopback load for ``before_s``, then one replica killed (``ray.kill``: its process
    dies), load for ``after_s`` more. Failed = non-2xx replies plus dropped connections.
    ``replica_replaced_s``: until a new replica (a name not seen before) runs and Serve counts as
    many running replicas as before (polled up to ``replace_timeout_s`` after the load stops).
    ``throughput_back_s``: until the end of the first 1 s window after the kill whose successful
    requests/s are back to 80 % of the median 0.5 s window before it."""
    import ray

    from tests.integration.serving_helpers import Load

    replicas = replica_actors(route)
    assert replicas, f"no replica of {route!r} found"
    want = _running_replicas(route)
    victim = replicas[0]
    with Load(url, lambda i: payload, threads=threads) as load:
        t0 = time.monotonic()
        time.sleep(before_s)
        t_kill = time.monotonic()
        ray.kill(ray.get_actor(victim, namespace="serve"), no_restart=True)
        replaced_s: float | None = None
        while time.monotonic() - t_kill < after_s:
            # every 0.5 s: the state API calls run in this process, beside the load's client threads,
            # and polled ten times a second they slowed the client (not the server) on a busy machine
            new = set(replica_actors(route)) - set(replicas)
            if replaced_s is None and new and _running_replicas(route) >= want:
                replaced_s = time.monotonic() - t_kill
            time.sleep(0.5)
        t_end = time.monotonic()
    while replaced_s is None and time.monotonic() - t_kill < after_s + replace_timeout_s:  # no load now
        if set(replica_actors(route)) - set(replicas) and _running_replicas(route) >= want:
            replaced_s = time.monotonic() - t_kill
        time.sleep(0.1)
    replies = list(load.replies)
    failed = sum(1 for _, status, _ in replies if not 200 <= status < 300) + len(load.errors)
    total = len(replies) + len(load.errors)
    n_buckets = int((t_end - t0) / bucket_s)
    counts = [0] * n_buckets
    for sent, status, _ in replies:
        b = int((sent - t0) / bucket_s)
        if 0 <= b < n_buckets and 200 <= status < 300:
            counts[b] += 1
    kill_b = int((t_kill - t0) / bucket_s)
    n_buckets = min(n_buckets, int((t_end - t0) / bucket_s))
    before = sorted(counts[1:kill_b]) or [0]
    baseline = before[len(before) // 2]
    per_window = int(round(1.0 / bucket_s))
    back_b = None
    for b in range(kill_b + 1, n_buckets - per_window):  # the last bucket is cut short by the stop
        if sum(counts[b:b + per_window]) / per_window >= 0.8 * baseline:
            back_b = b + per_window
            break
    throughput_back_s = None if back_b is None else max(0.0, back_b * bucket_s - (t_kill - t0))
    return {"requests": total, "failed": failed, "failed_pct": round(100.0 * failed / max(total, 1), 3),
            "errors": load.errors[:5], "statuses": dict(Counter(s for _, s, _ in replies)),
            "baseline_rps": baseline / bucket_s, "replica_replaced_s": replaced_s,
            "throughput_back_s": throughput_back_s, "victim": victim,
            "rps_by_bucket": [c / bucket_s for c in counts], "kill_bucket": kill_b}


# -- monitor: the actor killed while rows stream in ------------------------------------------------
def kill_monitor_under_ingest(home: Path, *, checkpoint_s: float = 1.0, batch: int = 50, run_s: float = 3.0,
                              seed: int = 0, route: str = "rel-monitor") -> dict[str, Any]:
    """Stream batches into the monitor actor (checkpointing to ``home`` every ``checkpoint_s``),
    kill it (Ray restarts it) after ``run_s`` at a random moment, then keep streaming. Rows lost =
    rows acknowledged before the kill minus rows the restarted actor restored."""
    import numpy as np
    import ray

    from raymlops.monitor import build_reference
    from raymlops.monitor.lifecycle import start_monitor, stop_monitor
    from raymlops.monitor.names import monitor_name
    from raymlops.ray_session import NAMESPACE
    from tests.integration.serving_helpers import restarted_monitor_status

    rng = np.random.default_rng(seed)
    features = ["a", "b", "c"]
    reference = build_reference({n: rng.normal(size=5_000) for n in features})
    settings = {"window_rows": 500, "checkpoint_s": checkpoint_s, "max_restarts": 3, "seed": 0,
                "alerts": {"log": False}}
    handle = start_monitor(route, reference, settings, NAMESPACE, detached=False, home=home)
    try:
        acked = 0
        start = time.monotonic()
        kill_at = start + run_s * (0.5 + 0.5 * random.Random(seed).random())
        first: tuple[float, int] | None = None  # the stream's rate is timed from its first answer, not
        while time.monotonic() < kill_at:       # from before the actor started (which took 1-2 s)
            X = rng.normal(size=(batch, 3))
            acked = int(ray.get(handle.ingest.remote(X, (X[:, 0] > 0).astype(int))))
            first = first or (time.monotonic(), acked)
        before = ray.get(handle.status.remote())
        assert int(before["rows_total"]) == acked
        t_kill = time.monotonic()
        ray.kill(handle, no_restart=False)  # a crash: Ray restarts the actor, which reads its checkpoint
        after = restarted_monitor_status(route)
        handle = ray.get_actor(monitor_name(route), namespace=NAMESPACE)
        back_s = time.monotonic() - t_kill
        restored = int(after["rows_total"])
        windows_before = int(after["windows_closed"])
        shifted = rng.normal(size=(1_000, 3)) + np.array([3.0, 0.0, 0.0])  # verdicts must go on: a drift
        total = int(ray.get(handle.ingest.remote(shifted, np.ones(1_000))))
        st = ray.get(handle.status.remote())
        drifted = (st.get("last_window") or {}).get("overall", {}).get("drifted", [])
        t0, acked0 = first or (start, 0)
        rate = (acked - acked0) / max(t_kill - t0, 1e-9)  # rows/s, averaged over the stream once it flowed
        return {"acked_before_kill": acked, "restored": restored, "rows_lost": acked - restored,
                "restored_flag": bool(after["restored"]), "rows_per_checkpoint_interval": rate * checkpoint_s,
                "seconds_lost": (acked - restored) / max(rate, 1e-9),
                "batch": batch, "restart_s": back_s, "windows_closed_after_restart": int(st["windows_closed"]),
                "windows_closed_at_restart": windows_before, "rows_total_end": total,
                "drift_detected_after_restart": "a" in drifted,
                "checkpoint_s": checkpoint_s}
    finally:
        stop_monitor(route, NAMESPACE)


def listening_sockets() -> list[tuple[str, int, int]]:
    """``(address, port, pid)`` of every listening TCP socket on this machine (``ss -ltnpH``)."""
    import re

    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        parts = line.split()
        addr, _, port = parts[3].rpartition(":")
        for pid in re.findall(r"pid=(\d+)", line):
            found.append((addr.strip("[]"), int(port), int(pid)))
    return found
