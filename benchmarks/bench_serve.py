#!/usr/bin/env python
"""Serving throughput and latency: the raymlops deployment against a plain uvicorn + FastAPI app.

Claim measured (issue 5): with a load generator on loopback, at concurrency 1, 16 and 64, for
1-row and 100-row requests, requests/s, rows/s and p50/p99 latency of

1. the raymlops deployment (``raymlops.serve.deploy``) with monitoring on (every request handed
   to the DriftMonitor actor, ``monitor.sample_rate`` 1.0),
2. the same deployment with monitoring off,
3. the baseline a user would write: one uvicorn process with a FastAPI app (pydantic request
   model, ``predict`` + ``predict_proba``) serving the same fitted model,

measured back to back for every (rows, concurrency) cell, so all three see the same machine.
Targets: (1) >= 0.8 x (3) in requests/s at concurrency 16; monitoring costs <= 5 % of
throughput and <= 1 ms at p50; at saturation, rows monitored >= 99 % of the rows the monitored
deployment served (issue 14: both counted after the run, from the route's metrics and the monitor
actor, once the hand-off has drained). The cold start of a scaled-to-zero deployment
(``serve.autoscaling.min_replicas: 0``) is measured too.

The model: scikit-learn's breast-cancer data (30 features, no download), StandardScaler +
LogisticRegression, registered in a temp raymlops home. Load generator: ``wrk`` (Debian
package) with a Lua script, else an asyncio client (aiohttp) in a subprocess. Everything
listens on 127.0.0.1 (free ports); a private local Ray is started (``RAY_ADDRESS`` is ignored)
with Serve's high-throughput (HAProxy) ingress made loopback-safe by
``raymlops.serve.throughput`` (``--ingress default`` uses Serve's Python proxy instead). The
script stops by itself after ``--timeout`` seconds and always stops Serve, Ray, the baseline
server and removes its temp folder.

    python benchmarks/bench_serve.py [--duration 5] [--repeat 2] [--concurrency 1 16 64] [--rows 1 100]
        [--ingress haproxy|default|both] [--batch-size 32] [--batch-wait 0] [--no-cold-start] [--out PATH]

``--ingress both`` runs it once per ingress (HAProxy, raymlops' default; Serve's Python proxy,
``serve.high_throughput: false``), each on its own private Ray and beside its own plain-app
measurement, and prints one table with each system's ratio to the plain app.

``--monitor-cost`` measures only the monitoring claim, as conclusively as a shared machine
allows: ``--rounds`` (default 5) rounds of monitor on / monitor off, each ``--duration`` seconds,
alternating which goes first, in one Ray session, 1-row requests at concurrency 16 (the first
``--rows`` / ``--concurrency``); it reports each system's median, min and max and the cost of
each round's pair (on vs the off run next to it), so the noise is shown beside the difference.

    python benchmarks/bench_serve.py --monitor-cost --rounds 5 --duration 8 --concurrency 16 --rows 1

With ``--toggle`` both systems are the *same* replica process of the monitored deployment: "off"
is its monitor sample rate set to 0 live (``raymlops deploy ROUTE --sample-rate 0``; the request
path still pays the ``offer`` call that counts the row as sampled out, about 1 us), "on" the
configured rate 1. That removes the difference between two replica processes (heap, batching
history, where the OS runs them) from the comparison.
"""

# (no `from __future__ import annotations`: the baseline's FastAPI reads its route signature)
import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
from machine import cpu_model as _cpu_model  # noqa: E402
from machine import mem_gib as _mem_gib  # noqa: E402
from machine import package_version as _version  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NAME = Path(__file__).stem
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / f"{NAME}.json"
SYSTEMS = ("raymlops+monitor", "raymlops", "uvicorn")


class BenchmarkTimeout(Exception):
    """Raised by the watchdog alarm: the benchmark ran past ``--timeout``."""


# -- machine facts ---------------------------------------------------------------------------






def machine_facts() -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": _cpu_model(),
        "mem_gib": _mem_gib(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "ray": _version("ray"),
        "scikit-learn": _version("scikit-learn"),
        "fastapi": _version("fastapi"),
        "uvicorn": _version("uvicorn"),
        "raymlops": _version("raymlops"),
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        cells = [str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(cells))
    return "\n".join(lines)


# -- the baseline server (a subprocess: `bench_serve.py --baseline-server PORT MODEL FEATURES`) --
def run_baseline_server(port: int, model_path: str, features_path: str) -> None:
    """What a user would write: FastAPI + pydantic + the joblib model, one uvicorn process."""
    import joblib
    import uvicorn
    from fastapi import FastAPI
    from pydantic import BaseModel

    model = joblib.load(model_path)  # the bench's own file, written a moment ago
    features = json.loads(Path(features_path).read_text())
    app = FastAPI()

    class PredictRequest(BaseModel):
        instances: list[dict[str, float]]

    @app.post("/predict")
    async def predict(req: PredictRequest) -> dict[str, Any]:
        X = np.array([[row[f] for f in features] for row in req.instances], dtype=np.float64)
        return {"predictions": model.predict(X).tolist(), "probabilities": model.predict_proba(X).tolist()}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- CPU accounting: CPU seconds per request are far steadier than requests/s on a shared machine --
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_table() -> dict[int, tuple[int, float, str]]:
    """pid -> (parent pid, CPU seconds used so far, command line)."""
    out = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(proc.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK, cmd)
    return out


def ray_pids(table: dict[int, tuple[int, float, str]], ha_folder: str | None) -> set[int]:
    """Our private Ray: its GCS, raylet and everything below them, and our HAProxy."""
    import ray

    roots: set[int] = set()
    try:
        node = ray._private.worker._global_node
        roots = {p.process.pid for procs in node.all_processes.values() for p in procs}
    except Exception:  # private API moved: no CPU accounting, the rest of the benchmark still runs
        return set()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.add(pid)
        todo.extend(children.get(pid, []))
    if ha_folder:
        found |= {pid for pid, (_, _, cmd) in table.items() if "haproxy" in cmd and ha_folder in cmd}
    return found


def cpu_of(pids: set[int], table: dict[int, tuple[int, float, str]]) -> dict[int, float]:
    return {pid: table[pid][1] for pid in pids if pid in table}


def stop_haproxy_under(folder: Path) -> None:
    """SIGTERM HAProxy processes whose config lies under ``folder`` (ours, nobody else's)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"haproxy") and any(str(folder).encode() in part for part in cmd):
            with contextlib.suppress(OSError):
                os.kill(int(proc.name), signal.SIGTERM)


def wait_http(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s")
        time.sleep(0.2)


# -- load generators -------------------------------------------------------------------------
WRK_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open("%s", "rb"))
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests": %%d, "duration_us": %%d, "non2xx": %%d, "socket_errors": %%d, '
    .. '"p50_us": %%d, "p99_us": %%d, "mean_us": %%.1f}\\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""

ASYNC_CLIENT = """
import asyncio, json, sys, time
import aiohttp
url, body_path, conc, duration = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
body = open(body_path, "rb").read()
lat, non2xx, errors = [], 0, 0
async def worker(session, stop):
    global non2xx, errors
    while time.perf_counter() < stop:
        t = time.perf_counter()
        try:
            async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                await r.read()
                if r.status // 100 != 2:
                    non2xx += 1
        except Exception:
            errors += 1
            continue
        lat.append(time.perf_counter() - t)
async def main():
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as s:
        t0 = time.perf_counter()
        await asyncio.gather(*[worker(s, t0 + duration) for _ in range(conc)])
        took = time.perf_counter() - t0
    lat.sort()
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else 0.0
    print("RESULT " + json.dumps({"requests": len(lat) + non2xx, "duration_us": int(took * 1e6),
          "non2xx": non2xx, "socket_errors": errors, "p50_us": int(pct(0.5) * 1e6),
          "p99_us": int(pct(0.99) * 1e6), "mean_us": sum(lat) / max(1, len(lat)) * 1e6}))
asyncio.run(main())
"""


def run_load(tool: str, url: str, body_path: str, concurrency: int, duration: float, tmp: str,
             pids: set[int] | None = None) -> dict[str, Any]:
    """One measurement; with ``pids``, also the CPU seconds those processes used meanwhile."""
    before = cpu_of(pids, _proc_table()) if pids else {}
    r = _run_load(tool, url, body_path, concurrency, duration, tmp)
    if pids:
        after = cpu_of(pids, _proc_table())
        cpu = sum(after[p] - before[p] for p in before if p in after)
        r["cpu_s"] = cpu
        r["cpu_ms_per_request"] = cpu / r["requests"] * 1000.0 if r["requests"] else None
    return r


def _run_load(tool: str, url: str, body_path: str, concurrency: int, duration: float, tmp: str) -> dict[str, Any]:
    if tool == "wrk":
        lua = Path(tmp) / "post.lua"
        lua.write_text(WRK_LUA % body_path)
        threads = max(1, min(concurrency, 2))
        cmd = ["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{max(1, round(duration))}s",
               "--timeout", "10s", "-s", str(lua), url]
    else:
        script = Path(tmp) / "client.py"
        script.write_text(ASYNC_CLIENT)
        cmd = [sys.executable, str(script), url, body_path, str(concurrency), str(duration)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"{cmd[0]} printed no result: {out.stdout[-500:]} {out.stderr[-500:]}")
    r = json.loads(line[len("RESULT "):])
    secs = r["duration_us"] / 1e6
    return {"requests": r["requests"], "seconds": secs, "rps": r["requests"] / secs if secs else 0.0,
            "p50_ms": r["p50_us"] / 1000.0, "p99_ms": r["p99_us"] / 1000.0, "mean_ms": r["mean_us"] / 1000.0,
            "non2xx": r["non2xx"], "socket_errors": r["socket_errors"]}


# -- the model -------------------------------------------------------------------------------
def build_model(home: str) -> tuple[Any, Any, np.ndarray, list[str]]:
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from raymlops.registry import register_model
    from raymlops.store.home import Store

    data = load_breast_cancer()
    features = [str(n).replace(" ", "_") for n in data.feature_names]
    X, y = data.data, data.target
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y)
    store = Store.open(home)
    signature = {"inputs": [{"name": n, "type": "double", "min": float(X[:, j].min()), "max": float(X[:, j].max())}
                            for j, n in enumerate(features)], "output": "classification", "classes": [0, 1]}
    version = register_model(store, "bench", model, snapshot_id="0" * 64, signature=signature,
                             metrics={}, gate={"status": "passed", "reasons": []},
                             lineage={"config_hash": "bench", "snapshot_id": "0" * 64, "seed": 0, "run_id": "bench"})
    return store, version, X, features


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-field medians of repeated measurements; failures summed."""
    out = {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50_ms", "p99_ms", "mean_ms")}
    cpu = [r["cpu_ms_per_request"] for r in runs if r.get("cpu_ms_per_request") is not None]
    out["cpu_ms_per_request"] = statistics.median(cpu) if cpu else None
    out |= {k: sum(r[k] for r in runs) for k in ("requests", "non2xx", "socket_errors")}
    return out


def handoff_cost(rows_per_request: list[int], n_features: int, requests: int = 2000) -> dict[str, Any]:
    """The monitor hand-off's own cost, in this process: ``offer`` (on the request path) and the
    background ``flush`` (batching, row ids, pickling as Ray would), per request."""
    import asyncio
    import pickle

    from raymlops.serve.handoff import MonitorHandoff, Served

    async def send(payload: dict[str, Any]) -> None:
        pickle.dumps(payload, protocol=5)

    out = {}
    for n in rows_per_request:
        h = MonitorHandoff(send, max_rows=n * requests + 1)
        X, preds = np.ones((n, n_features)), np.zeros(n)
        t0 = time.perf_counter()
        for _ in range(requests):
            h.offer(Served(X, preds, "m:v1", 1.0, 200, "0123456789abcdef0123456789abcdef", "champion"))
        t1 = time.perf_counter()
        asyncio.run(h.flush())
        t2 = time.perf_counter()
        out[n] = {"offer_us": (t1 - t0) / requests * 1e6, "flush_us": (t2 - t1) / requests * 1e6}
    return out


def rows_monitored(ray: Any, monitor: str, namespace: str, metrics_url: str, settle_s: float = 30.0) -> dict[str, Any]:
    """Rows the monitored deployment served (its ``raymlops_serve_rows_total``) against the rows its
    monitor ingested, once the hand-off has drained (the monitor's count stops moving), with the
    replicas' hand-off outcomes (sent, dropped, failed, sampled_out)."""
    actor = ray.get_actor(monitor, namespace=namespace)
    seen, deadline = -1, time.monotonic() + settle_s
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = int(ray.get(actor.rows.remote()))
        if now == seen:
            break
        seen = now
    with urllib.request.urlopen(metrics_url, timeout=30) as resp:  # noqa: S310 - loopback
        text = resp.read().decode()
    handoff = {m.group(1): float(m.group(2)) for m in re.finditer(
        r'^raymlops_serve_monitor_rows_total\{[^}]*outcome="([a-z_]+)"[^}]*\} (\S+)$', text, re.M)}
    served = sum(float(m.group(1)) for m in re.finditer(r'^raymlops_serve_rows_total\{[^}]*\} (\S+)$', text, re.M))
    return {"served": int(served), "monitored": seen, "share": seen / served if served else None,
            "handoff": handoff}


def rows_monitored_line(res: dict[str, Any]) -> str:
    rm = res.get("rows_monitored")
    if not rm:
        return f"monitor rows seen {res.get('monitor_rows_seen')}, hand-off {res.get('monitor_handoff')}"
    share = rm["share"]
    verdict = "-" if share is None else ("met" if share >= 0.99 else "NOT met")
    return (f"rows served (monitored deployment, warm-ups included) {rm['served']}, rows monitored {rm['monitored']}"
            f" ({'-' if share is None else f'{share * 100:.2f} %'}); target >= 99 %: {verdict}; hand-off "
            f"{rm['handoff']}; serve.monitor_budget {res.get('monitor_budget')}")


def spread(cell_system: dict[str, Any]) -> float | None:
    """(max - min) / median of the requests/s of one system's repeats (None with one run)."""
    rps = [r["rps"] for r in cell_system.get("runs", [])]
    if len(rps) < 2 or not statistics.median(rps):
        return None
    return (max(rps) - min(rps)) / statistics.median(rps)


def pct_ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "-"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per measurement (default 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of load before each measurement (default 1)")
    p.add_argument("--repeat", type=int, default=1,
                   help="measurements per system and cell, in alternating order; the table shows medians (default 1)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--rows", type=int, nargs="+", default=[1, 100], help="rows per request")
    p.add_argument("--ingress", choices=("haproxy", "default", "both"), default="haproxy",
                   help="Serve's HAProxy ingress (raymlops' default where it starts Ray), its Python proxy "
                   "(serve.high_throughput: false), or both: one private Ray each, in one run, with the plain "
                   "app measured beside each")
    p.add_argument("--batch-size", type=int, default=32, help="serve.max_batch_size (default 32)")
    p.add_argument("--batch-wait", type=float, default=0.0, help="serve.batch_wait_timeout_s (default 0)")
    p.add_argument("--no-access-log", action="store_true", help="serve.access_log: false (Serve's per-request log)")
    p.add_argument("--client", choices=("auto", "wrk", "python"), default="auto")
    p.add_argument("--ray-niceness", type=int, default=0,
                   help="RAY_worker_niceness for the private Ray (default 0, the baseline's; Ray's own default is 15, "
                   "which loses every CPU contest on a shared machine)")
    p.add_argument("--no-cold-start", action="store_true", help="skip the scale-to-zero cold start measurement")
    p.add_argument("--monitor-cost", action="store_true",
                   help="only monitor on vs off, in --rounds alternating rounds (see the docstring)")
    p.add_argument("--rounds", type=int, default=5, help="rounds of --monitor-cost (default 5)")
    p.add_argument("--toggle", action="store_true",
                   help="--monitor-cost on one replica: monitor sample rate 1 vs 0, set live (see the docstring)")
    p.add_argument("--monitor-budget", type=float, default=None,
                   help="serve.monitor_budget of the monitored deployment (default: ServeConfig's)")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--timeout", type=int, default=900, help="stop after this many seconds (default 900)")
    p.add_argument("--report", metavar="JSON", help="print the tables of an earlier run's JSON and exit")
    p.add_argument("--baseline-server", nargs=3, metavar=("PORT", "MODEL", "FEATURES"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.report:
        earlier = json.loads(Path(args.report).read_text())
        if earlier.get("cells"):
            report(earlier)
        if earlier.get("monitor_cost"):
            report_monitor_cost(earlier)
        return 0
    if args.baseline_server:
        port, model_path, features_path = args.baseline_server
        run_baseline_server(int(port), model_path, features_path)
        return 0
    if args.ingress == "both":
        return compare_ingress(list(sys.argv[1:] if argv is None else argv), args)

    def on_alarm(signum: int, frame: Any) -> None:
        raise BenchmarkTimeout(f"{NAME} ran past --timeout {args.timeout} s")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(args.timeout)
    os.environ.pop("RAY_ADDRESS", None)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ["RAY_worker_niceness"] = str(args.ray_niceness)  # noqa: SIM112 - Ray spells it so
    tool = args.client if args.client != "auto" else ("wrk" if shutil.which("wrk") else "python")
    res: dict[str, Any] = {"benchmark": NAME, "machine": machine_facts(), "args": vars(args), "client": tool,
                           "status": "running"}
    tmp = tempfile.mkdtemp(prefix="raymlops-bench-serve-")
    baseline: subprocess.Popen[bytes] | None = None
    ray_started = False
    ha_env: dict[str, str] = {}
    ha_dirs: list[Path] = []
    ha_folder: str | None = None
    routes: list[str] = []
    code = 1
    try:
        store, version, X, features = build_model(str(Path(tmp) / "home"))
        model_path = Path(tmp) / "model.joblib"
        import joblib

        joblib.dump(joblib.load(store.artifacts.path(version.artifact_key)), model_path)
        features_path = Path(tmp) / "features.json"
        features_path.write_text(json.dumps(features))
        bodies = {}
        for n in args.rows:
            rows = [{f: float(v) for f, v in zip(features, X[i % len(X)], strict=True)} for i in range(n)]
            path = Path(tmp) / f"body-{n}.json"
            path.write_text(json.dumps({"instances": rows}))
            bodies[n] = str(path)

        # 3. the baseline server, before Ray (its own process, like a user's)
        base_port = free_port()
        baseline = subprocess.Popen(
            [sys.executable, __file__, "--baseline-server", str(base_port), str(model_path), str(features_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_http(f"http://127.0.0.1:{base_port}/health", 60)

        # 1 + 2. the raymlops deployments, on a private Ray
        import ray

        from raymlops.config import AutoscalingConfig, ServeConfig
        from raymlops.monitor.lifecycle import start_monitor
        from raymlops.monitor.names import monitor_name
        from raymlops.monitor.reference import build_reference
        from raymlops.ray_session import NAMESPACE, quiet_ray_logs
        from raymlops.serve.deploy import deploy
        from raymlops.serve.traffic import model_spec_of

        if args.ingress == "haproxy":
            from raymlops.serve.throughput import prepare_high_throughput

            ha_env = prepare_high_throughput()  # a short private folder of its own in /tmp
            ha_dirs.append(Path(ha_env["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"]))
            ha_folder = str(ha_dirs[-1])
        quiet_ray_logs()
        t = time.perf_counter()
        ray.init(address="local", include_dashboard=False, namespace=NAMESPACE, log_to_driver=False,
                 logging_level=logging.ERROR)
        ray_started = True
        res["ray_init_s"] = round(time.perf_counter() - t, 2)
        serve_port = free_port()
        cfg = ServeConfig(port=serve_port, high_throughput=args.ingress == "haproxy", max_batch_size=args.batch_size,
                          batch_wait_timeout_s=args.batch_wait, max_ongoing_requests=max(64, 2 * args.batch_size),
                          access_log=not args.no_access_log)
        if args.monitor_budget is not None:
            cfg = cfg.model_copy(update={"monitor_budget": args.monitor_budget})
        res["monitor_budget"] = cfg.monitor_budget
        model = model_spec_of(store, version.id)
        reference = build_reference({n: X[:, j] for j, n in enumerate(features)}, n_bins=10)
        start_monitor("bench-on", reference, {"alpha": 0.05, "seed": 0}, NAMESPACE, detached=False)
        deploy_s = {}
        for route, monitor in (("bench-on", monitor_name("bench-on")), ("bench-off", None)):
            t = time.perf_counter()
            deploy(model, route, cfg, monitor_actor=monitor, namespace=NAMESPACE, sample_rate=1.0)
            deploy_s[route] = round(time.perf_counter() - t, 2)
            routes.append(route)
        res["deploy_s"] = deploy_s
        urls = {"raymlops+monitor": f"http://127.0.0.1:{serve_port}/bench-on/predict",
                "raymlops": f"http://127.0.0.1:{serve_port}/bench-off/predict",
                "uvicorn": f"http://127.0.0.1:{base_port}/predict"}
        if args.ingress == "haproxy":
            res["listening"] = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True,
                                              check=False).stdout.splitlines() if shutil.which("ss") else []

        cells = []
        print(f"{NAME}: client {tool}, {args.duration:g} s per cell, ingress {args.ingress}, "
              f"load {os.getloadavg()[0]:.2f}", file=sys.stderr, flush=True)
        if args.monitor_cost:
            set_rate = None
            if args.toggle:
                from raymlops.serve.traffic import update_traffic

                urls["raymlops"] = urls["raymlops+monitor"]

                def set_rate(rate: float) -> None:
                    update_traffic("bench-on", lambda t: t.with_sample_rate(rate))

            res["monitor_cost"] = monitor_cost_rounds(args, tool, urls, bodies[args.rows[0]], tmp, ha_folder,
                                                      set_rate)
        for n in ([] if args.monitor_cost else args.rows):
            for c in args.concurrency:
                cell: dict[str, Any] = {"rows": n, "concurrency": c, "load_1m": round(os.getloadavg()[0], 2)}
                runs: dict[str, list[dict[str, Any]]] = {system: [] for system in SYSTEMS}
                for rep in range(args.repeat):  # ABC, CBA, ...: slow drifts of the machine cancel
                    for system in (SYSTEMS if rep % 2 == 0 else SYSTEMS[::-1]):
                        if args.warmup > 0:
                            run_load(tool, urls[system], bodies[n], c, args.warmup, tmp)
                        pids = {baseline.pid} if system == "uvicorn" else ray_pids(_proc_table(), ha_folder)
                        r = run_load(tool, urls[system], bodies[n], c, args.duration, tmp, pids)
                        runs[system].append(r)
                        print(f"  rows {n:>3} c {c:>2} {system:<17} {r['rps']:8.0f} req/s  p50 {r['p50_ms']:7.2f} "
                              f"ms  p99 {r['p99_ms']:7.2f} ms  non-2xx {r['non2xx']}", file=sys.stderr, flush=True)
                for system, rs in runs.items():
                    cell[system] = median_run(rs) | {"runs": rs}
                    cell[system]["rows_per_s"] = cell[system]["rps"] * n
                cells.append(cell)
        res["cells"] = cells

        # monitor: what reached it, what the replicas dropped, against the rows served
        res["rows_monitored"] = rows_monitored(ray, monitor_name("bench-on"), NAMESPACE,
                                               f"http://127.0.0.1:{serve_port}/bench-on/metrics")
        res["monitor_rows_seen"] = res["rows_monitored"]["monitored"]
        res["monitor_handoff"] = res["rows_monitored"]["handoff"]

        # scale to zero, then one cold request
        if not args.no_cold_start and not args.monitor_cost:
            auto = ServeConfig(port=serve_port, high_throughput=args.ingress == "haproxy",
                               autoscaling=AutoscalingConfig(min_replicas=0, max_replicas=1, initial_replicas=0,
                                                             target_ongoing_requests=1, downscale_delay_s=2,
                                                             downscale_to_zero_delay_s=2))
            from ray import serve

            deploy(model, "bench-zero", auto, namespace=NAMESPACE, wait_s=180)
            routes.append("bench-zero")
            t = time.perf_counter()
            while time.perf_counter() - t < 240:  # no replica in any state
                app = serve.status().applications.get("bench-zero")
                alive = sum(sum(d.replica_states.values()) for d in app.deployments.values()) if app else -1
                if alive == 0:
                    break
                time.sleep(0.5)
            res["scale_to_zero_s"] = round(time.perf_counter() - t, 1)
            body = Path(bodies[args.rows[0]]).read_bytes()
            req = urllib.request.Request(f"http://127.0.0.1:{serve_port}/bench-zero/predict", data=body,
                                         headers={"Content-Type": "application/json"})
            t = time.perf_counter()
            with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310 - loopback
                status = resp.status
            res["cold_start"] = {"seconds": round(time.perf_counter() - t, 2), "status": status}
            t = time.perf_counter()
            with urllib.request.urlopen(req, timeout=120) as resp:  # noqa: S310 - loopback
                resp.read()
            res["cold_start"]["warm_request_s"] = round(time.perf_counter() - t, 4)

        res["handoff_cost"] = handoff_cost(args.rows, len(features))
        res["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        res["status"] = "ok"
        code = 0
    except Exception as exc:  # recorded in the JSON; the cleanup below still runs
        res["status"] = "timeout" if isinstance(exc, BenchmarkTimeout) else "error"
        res["error"] = f"{type(exc).__name__}: {exc}"
        print(f"error: {res['error']}", file=sys.stderr)
    finally:
        signal.alarm(0)
        if ray_started:
            import ray
            from ray import serve

            from raymlops.monitor.lifecycle import stop_monitor

            t = time.perf_counter()
            with contextlib.suppress(Exception):
                stop_monitor("bench-on", "raymlops")
            with contextlib.suppress(Exception):
                serve.shutdown()  # every app, and HAProxy (which ray.shutdown alone can leave running)
            ray.shutdown()
            res["shutdown_s"] = round(time.perf_counter() - t, 1)
        for folder in ha_dirs:  # an HAProxy of ours that outlived Ray (a killed run): stop it
            stop_haproxy_under(folder)
        if baseline is not None:
            baseline.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                baseline.wait(10)
            if baseline.poll() is None:
                baseline.kill()
        for name in ha_env:
            os.environ.pop(name, None)
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in ha_dirs:
            shutil.rmtree(folder, ignore_errors=True)

    if res.get("cells"):
        report(res)
    if res.get("monitor_cost"):
        report_monitor_cost(res)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2, default=str))
    print(f"wrote {out}", file=sys.stderr)
    return code


def monitor_cost_rounds(args: argparse.Namespace, tool: str, urls: dict[str, str], body: str, tmp: str,
                        ha_folder: str | None, set_rate: Any = None) -> dict[str, Any]:
    """``--rounds`` rounds of monitor on / off (alternating which goes first), one Ray session;
    with ``set_rate`` one deployment whose monitor sample rate is set to 1 / 0 before each."""
    c = args.concurrency[0]
    systems = ("raymlops+monitor", "raymlops")
    rounds = []
    for rnd in range(args.rounds):
        order = systems if rnd % 2 == 0 else systems[::-1]
        one: dict[str, Any] = {"round": rnd, "order": list(order), "load_1m": round(os.getloadavg()[0], 2)}
        for system in order:
            if set_rate is not None:
                set_rate(1.0 if system == "raymlops+monitor" else 0.0)
            if args.warmup > 0:
                run_load(tool, urls[system], body, c, args.warmup, tmp)
            before = _proc_table()
            pids = ray_pids(before, ha_folder)
            r = run_load(tool, urls[system], body, c, args.duration, tmp, pids)
            r["cpu_ms_per_request_by_process"] = cpu_by_group(pids, before, _proc_table(), r["requests"])
            one[system] = r
            print(f"  round {rnd} {system:<17} {r['rps']:8.0f} req/s  p50 {r['p50_ms']:6.2f} ms  p99 "
                  f"{r['p99_ms']:7.2f} ms  non-2xx {r['non2xx'] + r['socket_errors']}  load {one['load_1m']}",
                  file=sys.stderr, flush=True)
        rounds.append(one)
    return {"rows": args.rows[0], "concurrency": c, "duration_s": args.duration, "rounds": rounds,
            "toggle": set_rate is not None}


CPU_GROUPS = (("monitor actor", "DriftMonitor"), ("replica bench-on", "bench-on"), ("replica bench-off", "bench-off"),
              ("haproxy", "haproxy"), ("Serve controller", "ServeController"), ("Serve proxy", "ProxyActor"),
              ("raylet", "raylet"), ("GCS", "gcs_server"), ("log monitor", "log_monitor"),
              ("dashboard", "dashboard"))


def cpu_by_group(pids: set[int], before: dict[int, tuple[int, float, str]], after: dict[int, tuple[int, float, str]],
                 requests: int) -> dict[str, float]:
    """CPU ms per request of the monitor actor, each deployment's replica, HAProxy and the rest
    of Ray (by process title: Ray names its workers ``ray::<actor class or Serve replica>``)."""
    out: dict[str, float] = {}
    for pid in pids:
        if pid not in before or pid not in after:
            continue
        cmd = after[pid][2]
        group = next((name for name, needle in CPU_GROUPS if needle in cmd), "rest of Ray")
        out[group] = out.get(group, 0.0) + (after[pid][1] - before[pid][1])
    return {k: v / requests * 1000.0 for k, v in sorted(out.items())} if requests else {}


def _mmm(values: list[float]) -> tuple[float, float, float]:
    return statistics.median(values), min(values), max(values)


def report_monitor_cost(res: dict[str, Any]) -> None:
    mc = res["monitor_cost"]
    m = res["machine"]
    print(f"{NAME} --monitor-cost: {m['usable_cpus']} CPUs ({m['cpu_model']}), Python {m['python']}, Ray "
          f"{m['ray']}, {m['date']}; client {res['client']}, {mc['rows']}-row requests, concurrency "
          f"{mc['concurrency']}, {len(mc['rounds'])} rounds x {mc['duration_s']:g} s per system, ingress "
          f"{res['args']['ingress']}, monitor_budget {res.get('monitor_budget')}, load average at start "
          f"{m['loadavg_at_start']}, at end {m.get('loadavg_at_end')}"
          + ("; --toggle: one replica, 'raymlops' = monitor sample rate 0 set live" if mc.get("toggle") else ""))
    on, off = "raymlops+monitor", "raymlops"
    rows = []
    for r in mc["rounds"]:
        for system in r["order"]:
            x = r[system]
            cpu = "-" if x.get("cpu_ms_per_request") is None else f"{x['cpu_ms_per_request']:.3f}"
            rows.append([str(r["round"]), system, f"{x['rps']:.0f}", f"{x['p50_ms']:.2f}", f"{x['p99_ms']:.2f}",
                         str(x["non2xx"] + x["socket_errors"]), cpu, f"{r['load_1m']:.1f}"])
        rows.append([str(r["round"]), "cost (on vs off)", f"{(1 - r[on]['rps'] / r[off]['rps']) * 100:+.1f} %",
                     f"{r[on]['p50_ms'] - r[off]['p50_ms']:+.2f}", "", "", "", ""])
    print(format_table(["round", "system", "req/s", "p50 ms", "p99 ms", "errors", "CPU ms/req", "load 1m"], rows))
    table = []
    for system in (on, off):
        rps = _mmm([r[system]["rps"] for r in mc["rounds"]])
        p50 = _mmm([r[system]["p50_ms"] for r in mc["rounds"]])
        table.append([system, f"{rps[0]:.0f}", f"{rps[1]:.0f} - {rps[2]:.0f}", f"{p50[0]:.2f}",
                      f"{p50[1]:.2f} - {p50[2]:.2f}"])
    print()
    print(format_table(["system", "req/s median", "req/s min - max", "p50 ms median", "p50 ms min - max"], table))
    med_on = statistics.median(r[on]["rps"] for r in mc["rounds"])
    med_off = statistics.median(r[off]["rps"] for r in mc["rounds"])
    pair = [1 - r[on]["rps"] / r[off]["rps"] for r in mc["rounds"]]
    dp50 = [r[on]["p50_ms"] - r[off]["p50_ms"] for r in mc["rounds"]]
    p50_gap = statistics.median(r[on]["p50_ms"] for r in mc["rounds"]) - \
        statistics.median(r[off]["p50_ms"] for r in mc["rounds"])
    cost = 1 - med_on / med_off
    print(f"\nthroughput ratio on/off (medians): {med_on / med_off:.3f} -> cost {cost * 100:+.1f} %; per round: "
          f"median {statistics.median(pair) * 100:+.1f} %, min {min(pair) * 100:+.1f} %, max {max(pair) * 100:+.1f} %")
    print(f"p50 difference (medians): {p50_gap:+.2f} ms; per round: median {statistics.median(dp50):+.2f} ms, "
          f"min {min(dp50):+.2f}, max {max(dp50):+.2f}")
    if max(pair) <= 0.05 and max(dp50) <= 1.0:
        verdict = "met in every round"
    elif statistics.median(pair) <= 0.05 and statistics.median(dp50) <= 1.0:
        verdict = "met at the median, not in every round"
    elif min(pair) > 0.05 or min(dp50) > 1.0:
        verdict = "NOT met in any round"
    else:
        verdict = "NOT met at the median"
    print(f"target monitoring <= 5 % of throughput and <= 1 ms p50: {verdict}")
    groups = sorted({g for r in mc["rounds"] for s in (on, off) for g in r[s].get("cpu_ms_per_request_by_process", {})})
    if groups:
        cpu_rows = []
        for g in groups:
            vals = {s: [r[s].get("cpu_ms_per_request_by_process", {}).get(g, 0.0) for r in mc["rounds"]]
                    for s in (on, off)}
            m_on, m_off = statistics.median(vals[on]), statistics.median(vals[off])
            cpu_rows.append([g, f"{m_on * 1000:.1f}", f"{m_off * 1000:.1f}", f"{(m_on - m_off) * 1000:+.1f}"])
        tot = {s: statistics.median(r[s]["cpu_ms_per_request"] for r in mc["rounds"]) for s in (on, off)}
        cpu_rows.append(["all serving processes", f"{tot[on] * 1000:.1f}", f"{tot[off] * 1000:.1f}",
                         f"{(tot[on] - tot[off]) * 1000:+.1f} ({(tot[on] / tot[off] - 1) * 100:+.1f} %)"])
        print("\nCPU per request by process (us, medians over rounds; the idle deployment's replica included):")
        print(format_table(["process", "monitor on", "monitor off", "on - off"], cpu_rows))
        mon = [(r[on].get("cpu_ms_per_request_by_process", {}).get("monitor actor", 0.0)
                - r[off].get("cpu_ms_per_request_by_process", {}).get("monitor actor", 0.0)) * 1000
               for r in mc["rounds"]]
        print(f"monitor actor CPU per monitored request (on - off), per round: median {statistics.median(mon):.1f} us, "
              f"min {min(mon):.1f}, max {max(mon):.1f}")
        cpu_pair = [r[on]["cpu_ms_per_request"] / r[off]["cpu_ms_per_request"] - 1 for r in mc["rounds"]]
        print(f"CPU per request on vs off, per round: median {statistics.median(cpu_pair) * 100:+.1f} %, "
              f"min {min(cpu_pair) * 100:+.1f} %, max {max(cpu_pair) * 100:+.1f} %")
    if "monitor_rows_seen" in res:
        print(rows_monitored_line(res))


def _without(argv: list[str], *options: str) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in options:
            skip = True
            continue
        if any(a.startswith(o + "=") for o in options):
            continue
        out.append(a)
    return out


def compare_ingress(argv: list[str], args: argparse.Namespace) -> int:
    """``--ingress both``: the whole benchmark once per ingress (each needs its own Ray: the mode
    is read when Ray starts), in child processes one after the other, each with the plain app
    measured beside it; one table and one JSON of both."""
    out = Path(args.out)
    tmp = Path(tempfile.mkdtemp(prefix="raymlops-bench-ingress-"))
    merged: dict[str, Any] = {"benchmark": NAME, "mode": "compare_ingress", "by_ingress": {},
                              "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}
    code = 0
    try:
        for ingress in ("haproxy", "default"):
            child_out = tmp / f"{ingress}.json"
            cmd = [sys.executable, __file__, *_without(argv, "--ingress", "--out"), "--ingress", ingress,
                   "--out", str(child_out)]
            rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, check=False).returncode
            code = code or rc
            if child_out.exists():
                merged["by_ingress"][ingress] = json.loads(child_out.read_text())
    finally:
        merged["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        shutil.rmtree(tmp, ignore_errors=True)
    report_ingress(merged)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(merged, indent=2, default=str))
    print(f"wrote {out}", file=sys.stderr)
    return code


def report_ingress(merged: dict[str, Any]) -> None:
    names = {"haproxy": "HAProxy (default)", "default": "Python proxy (opt-in)"}
    rows = []
    for ingress, res in merged["by_ingress"].items():
        for cell in res.get("cells") or []:
            base = cell["uvicorn"]
            for system in SYSTEMS:
                r = cell[system]
                label = "plain FastAPI app" if system == "uvicorn" else f"{system}, {names[ingress]}"
                rows.append([str(cell["rows"]), str(cell["concurrency"]), label, f"{r['rps']:.0f}",
                             f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", pct_ratio(r["rps"], base["rps"]),
                             "-" if r.get("cpu_ms_per_request") is None else f"{r['cpu_ms_per_request']:.3f}",
                             str(cell["load_1m"])])
    print(f"{NAME} --ingress both: load average at start {merged['loadavg_at_start']}, at end "
          f"{merged['loadavg_at_end']} (each ingress's rows are measured beside the plain app of the same run)")
    print(format_table(["rows", "conc", "system", "req/s", "p50 ms", "p99 ms", "vs plain app", "CPU ms/req",
                        "load 1m"], rows))
    for ingress, res in merged["by_ingress"].items():
        if res.get("status") != "ok":
            print(f"{ingress}: {res.get('status')} {res.get('error', '')}")


def report(res: dict[str, Any]) -> None:
    m = res["machine"]
    print(f"{NAME}: {m['usable_cpus']} CPUs ({m['cpu_model']}), {m['mem_gib']} GiB, Python {m['python']}, "
          f"Ray {m['ray']}, scikit-learn {m['scikit-learn']}, {m['date']}; load average at start "
          f"{m['loadavg_at_start']}, at end {m.get('loadavg_at_end')}; client {res['client']}, "
          f"{res['args']['duration']:g} s x {res['args']['repeat']} per system and cell (medians); ingress "
          f"{res['args']['ingress']}, max_batch_size {res['args']['batch_size']}, batch_wait_timeout_s "
          f"{res['args']['batch_wait']:g}, access log "
          f"{'off' if res['args']['no_access_log'] else 'on'}, Ray worker niceness {res['args']['ray_niceness']}")
    headers = ["rows", "conc", "system", "req/s", "rows/s", "p50 ms", "p99 ms", "non-2xx", "vs uvicorn",
               "CPU ms/req"]
    rows = []

    def cpu(r: dict[str, Any]) -> str:
        return "-" if r.get("cpu_ms_per_request") is None else f"{r['cpu_ms_per_request']:.3f}"

    for cell in res["cells"]:
        base = cell["uvicorn"]["rps"]
        for system in SYSTEMS:
            r = cell[system]
            rows.append([str(cell["rows"]), str(cell["concurrency"]), system, f"{r['rps']:.0f}",
                         f"{r['rows_per_s']:.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
                         str(r["non2xx"] + r["socket_errors"]), pct_ratio(r["rps"], base), cpu(r)])
    print(format_table(headers, rows))
    print("(CPU ms/req: CPU time of the serving processes per request, the load generator excluded: for\n"
          " raymlops every process of its private Ray plus HAProxy, for uvicorn its one process)")
    print()
    checks = []
    for cell in res["cells"]:
        on, off, base = cell["raymlops+monitor"], cell["raymlops"], cell["uvicorn"]
        cost = 1.0 - on["rps"] / off["rps"] if off["rps"] else float("nan")
        cpu_cost = (on["cpu_ms_per_request"] / off["cpu_ms_per_request"] - 1.0) * 100 \
            if on.get("cpu_ms_per_request") and off.get("cpu_ms_per_request") else None
        cpu_ratio = base["cpu_ms_per_request"] / on["cpu_ms_per_request"] \
            if on.get("cpu_ms_per_request") and base.get("cpu_ms_per_request") else None
        checks.append([str(cell["rows"]), str(cell["concurrency"]), pct_ratio(on["rps"], base["rps"]),
                       "-" if cpu_ratio is None else f"{cpu_ratio:.2f}x", f"{cost * 100:+.1f} %",
                       "-" if cpu_cost is None else f"{cpu_cost:+.1f} %", f"{on['p50_ms'] - off['p50_ms']:+.2f}"])
    print(format_table(["rows", "conc", "(1)/(3) req/s", "(3)/(1) CPU per req", "monitor cost req/s",
                        "monitor cost CPU/req", "monitor cost p50 ms"], checks))
    c16 = [c for c in res["cells"] if c["concurrency"] == 16]
    if c16:
        ratios = [c["raymlops+monitor"]["rps"] / c["uvicorn"]["rps"] for c in c16]
        costs = [1.0 - c["raymlops+monitor"]["rps"] / c["raymlops"]["rps"] for c in c16]
        p50s = [c["raymlops+monitor"]["p50_ms"] - c["raymlops"]["p50_ms"] for c in c16]
        print(f"\ntarget (1) >= 0.8 x (3) req/s at concurrency 16: "
              f"{', '.join(f'{r:.2f}x' for r in ratios)} -> {'met' if min(ratios) >= 0.8 else 'NOT met'}")
        noise = [x for c in c16 for s in ("raymlops", "raymlops+monitor") if (x := spread(c[s])) is not None]
        verdict = "met" if max(costs) <= 0.05 and max(p50s) <= 1.0 else "NOT met"
        if noise and max(noise) > 0.05:
            verdict = (f"inconclusive: repeats of one system differ by up to "
                       f"{max(noise) * 100:.0f} %, more than the 5 % to be shown")
        print(f"target monitoring <= 5 % throughput and <= 1 ms p50 (concurrency 16): "
              f"{', '.join(f'{c * 100:+.1f} %' for c in costs)}; {', '.join(f'{d:+.2f} ms' for d in p50s)} -> "
              f"{verdict}")
        cpu_costs = [c["raymlops+monitor"]["cpu_ms_per_request"] / c["raymlops"]["cpu_ms_per_request"] - 1.0
                     for c in c16 if c["raymlops+monitor"].get("cpu_ms_per_request")
                     and c["raymlops"].get("cpu_ms_per_request")]
        if cpu_costs:
            print(f"monitoring cost in serving CPU per request (concurrency 16): "
                  f"{', '.join(f'{c * 100:+.1f} %' for c in cpu_costs)}")
        every = [1.0 - c["raymlops+monitor"]["rps"] / c["raymlops"]["rps"] for c in res["cells"]]
        print(f"monitoring cost over all cells: median {statistics.median(every) * 100:+.1f} %")
        spreads = [x for c in res["cells"] for s in SYSTEMS if (x := spread(c[s])) is not None]
        if spreads:
            print(f"noise: the repeats of one system in one cell differ by {statistics.median(spreads) * 100:.0f} % "
                  f"(median), up to {max(spreads) * 100:.0f} %")
    print(rows_monitored_line(res))
    for n, c in (res.get("handoff_cost") or {}).items():
        print(f"hand-off cost per {n}-row request, in process: offer (request path) {c['offer_us']:.1f} us, "
              f"background flush {c['flush_us']:.1f} us")
    if "cold_start" in res:
        print(f"scale to zero: replica gone after {res['scale_to_zero_s']} s; cold request "
              f"{res['cold_start']['seconds']} s (status {res['cold_start']['status']}), next request "
              f"{res['cold_start']['warm_request_s']} s")
    print(f"ray.init {res.get('ray_init_s')} s, deploy {res.get('deploy_s')}, shutdown {res.get('shutdown_s')} s")


if __name__ == "__main__":
    raise SystemExit(main())
