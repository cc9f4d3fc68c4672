#!/usr/bin/env python
"""Monitor ingest throughput, memory, detection delay and false alarms.

Claims measured (issue 6; targets of issue 13: Monitor.ingest >= 50 M feature-values/s with
1,000-row windows, >= 20 M with 10 slices):

1. Ingest throughput of one monitor core (``StreamState.update``: bucketing + counts + exact
   moments) and of the full windowed core (``Monitor.ingest``: windows, slices, verdicts at each
   window close; once with ``--window-rows`` windows, once with ``--large-window-rows`` ones,
   which shows the ingest cost apart from the verdicts) in feature-values/s and per CPU-second
   on a 30-feature stream, against the baseline: exact
   ``scipy.stats.ks_2samp`` of every feature of the same windows against the reference sample
   (same process, same run), and the wall time per closed window (ingest included). Target:
   >= 20 million feature-values/s for the core.
2. Memory flat as rows grow to ``--rows`` (10 million by default): process RSS and the state's
   own bytes after 1 %, 10 %, 50 % and 100 % of the stream.
3. One monitor actor (local private Ray, ``ingest.remote`` of 2-D batches, all awaited).
4. Detection on synthetic streams with known drift points: rows after the change until the
   first alert on a drifted feature (detection delay), and false alarms per 100 windows without
   drift, for small (KS) and large (Wasserstein) windows.

    python benchmarks/bench_monitor.py [--rows 10000000] [--batch 10000] [--no-actor] [--out PATH]

Reaches nothing beyond 127.0.0.1 (a private local Ray; RAY_ADDRESS is ignored) and stops by
itself after ``--timeout`` seconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from machine import cpu_model as _cpu_model  # noqa: E402
from machine import mem_gib as _mem_gib  # noqa: E402
from machine import package_version as _version  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
NAME = Path(__file__).stem
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / f"{NAME}.json"
FEATURES = 30


class BenchmarkTimeout(Exception):
    pass








def machine_facts() -> dict[str, Any]:
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "cpu_model": _cpu_model(), "mem_gib": _mem_gib(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(), "ray": _version("ray"), "scikit-learn": _version("scikit-learn"),
        "numpy": _version("numpy"), "scipy": _version("scipy"),
    }


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def format_table(headers: list[str], rows: list[list[Any]]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    return "\n".join(lines)


def columns_of(X: np.ndarray) -> dict[str, np.ndarray]:
    return {f"f{j}": X[:, j] for j in range(X.shape[1])}


# -- 1 + 2: core throughput and memory --------------------------------------------------------
def bench_core(args: argparse.Namespace, ref_X: np.ndarray, pool: list[np.ndarray]) -> dict[str, Any]:
    from raymlops.monitor import StreamState, build_reference

    reference = build_reference(columns_of(ref_X))
    state = StreamState(reference)
    batches = args.rows // args.batch
    marks = sorted({max(1, batches // 100), max(1, batches // 10), max(1, batches // 2), batches})
    cols = [columns_of(b) for b in pool]
    memory = []
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i in range(1, batches + 1):
        state.update(cols[i % len(cols)])
        if i in marks:
            memory.append({"rows": i * args.batch, "rss_mib": round(rss_mib(), 1), "state_bytes": state.nbytes()})
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    values = batches * args.batch * FEATURES
    return {"rows": batches * args.batch, "values": values, "wall_s": wall, "cpu_s": cpu,
            "values_per_s": values / wall, "values_per_cpu_s": values / cpu, "memory": memory}


def bench_monitor(args: argparse.Namespace, ref_X: np.ndarray, pool: list[np.ndarray], sliced: bool,
                  window_rows: int | None = None, rows: int | None = None) -> dict[str, Any]:
    from raymlops.config import MonitorConfig
    from raymlops.monitor import Monitor, build_reference

    rng = np.random.default_rng(5)
    extra = {"seg": rng.integers(0, 10, size=ref_X.shape[0]).astype(np.float64)} if sliced else {}
    reference = build_reference(columns_of(ref_X) | extra, slice_columns=list(extra))
    window_rows = window_rows or args.window_rows
    cfg = MonitorConfig(window_rows=window_rows, slice_columns=list(extra), alerts={"log": False})
    m = Monitor(reference, cfg)
    cols = []
    for b in pool:
        c = columns_of(b)
        if sliced:
            c["seg"] = rng.integers(0, 10, size=b.shape[0]).astype(np.float64)
        cols.append(c)
    rows = min(args.rows, rows or args.monitor_rows)
    batches = rows // args.batch
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i in range(batches):
        m.ingest(cols[i % len(cols)], np.zeros(args.batch))
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    values = batches * args.batch * FEATURES
    return {"rows": batches * args.batch, "windows_closed": m.window_index, "window_rows": window_rows,
            "wall_s": wall, "cpu_s": cpu, "values_per_s": values / wall, "values_per_cpu_s": values / cpu,
            "slices": reference.n_slices}


def bench_ks_baseline(args: argparse.Namespace, ref_X: np.ndarray, pool: list[np.ndarray]) -> dict[str, Any]:
    from scipy import stats

    windows = max(1, args.baseline_rows // args.window_rows)
    flat = np.concatenate(pool)
    t0 = time.perf_counter()
    for w in range(windows):
        start = (w * args.window_rows) % (flat.shape[0] - args.window_rows)
        win = flat[start:start + args.window_rows]
        for j in range(FEATURES):
            stats.ks_2samp(ref_X[:, j], win[:, j])
    wall = time.perf_counter() - t0
    values = windows * args.window_rows * FEATURES
    return {"rows": windows * args.window_rows, "windows": windows, "wall_s": wall, "values_per_s": values / wall}


# -- 3: one actor -----------------------------------------------------------------------------
def bench_actor(args: argparse.Namespace, ref_X: np.ndarray, pool: list[np.ndarray]) -> dict[str, Any]:
    import logging

    import ray

    from raymlops.monitor import build_reference
    from raymlops.monitor.lifecycle import start_monitor, stop_monitor

    os.environ.pop("RAY_ADDRESS", None)
    t_init = time.perf_counter()
    ray.init(address="local", include_dashboard=False, num_cpus=2, log_to_driver=False, logging_level=logging.ERROR,
             namespace="raymlops-bench")
    init_s = time.perf_counter() - t_init
    try:
        reference = build_reference(columns_of(ref_X))
        handle = start_monitor("bench", reference, {"window_rows": args.window_rows, "alerts": {"log": False}},
                               "raymlops-bench", detached=False)
        refs = [ray.put(b) for b in pool]
        batches = args.actor_rows // args.batch
        ray.get(handle.ingest.remote(refs[0], np.zeros(args.batch)))  # warm
        t0 = time.perf_counter()
        pending = [handle.ingest.remote(refs[i % len(refs)], np.zeros(args.batch)) for i in range(batches)]
        ray.get(pending)
        wall = time.perf_counter() - t0
        stop_monitor("bench", "raymlops-bench")
        values = batches * args.batch * FEATURES
        return {"rows": batches * args.batch, "wall_s": wall, "values_per_s": values / wall, "ray_init_s": init_s}
    finally:
        ray.shutdown()


# -- 4: detection ------------------------------------------------------------------------------
def bench_detection(args: argparse.Namespace, ref_X: np.ndarray) -> list[dict[str, Any]]:
    from raymlops.config import MonitorConfig
    from raymlops.monitor import Monitor, build_reference

    reference = build_reference(columns_of(ref_X))
    out = []
    for window_rows in (500, 5_000):
        for label, shift, scale in (("mean +0.3 sd, 3 features", 0.3, 1.0), ("std x1.3, 3 features", 0.0, 1.3)):
            rng = np.random.default_rng(window_rows)
            cfg = MonitorConfig(window_rows=window_rows, alerts={"log": False, "cooldown_s": 0.0})
            m = Monitor(reference, cfg)
            clean_windows = args.clean_windows
            batch = 500
            false_alarm_windows: set[int] = set()
            for _ in range(clean_windows * window_rows // batch):
                for a in m.ingest(columns_of(rng.normal(size=(batch, FEATURES)))):
                    if a.kind == "feature_drift":
                        false_alarm_windows.add(a.window)
            change_row = m.rows_total
            delay = None
            for _ in range(20 * window_rows // batch):
                X = rng.normal(size=(batch, FEATURES))
                X[:, :3] = X[:, :3] * scale + shift
                alerts = m.ingest(columns_of(X))
                if any(a.kind == "feature_drift" and a.key.split(":")[1] in ("f0", "f1", "f2") for a in alerts):
                    delay = m.rows_total - change_row
                    break
            out.append({"window_rows": window_rows, "change": label, "test": "ks" if window_rows <= 1000 else
                        "wasserstein", "detection_delay_rows": delay, "clean_windows": clean_windows,
                        "false_alarms_per_100_windows": 100.0 * len(false_alarm_windows) / clean_windows})
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=10_000_000, help="rows streamed through the core (memory check)")
    p.add_argument("--batch", type=int, default=10_000, help="rows per batch")
    p.add_argument("--window-rows", type=int, default=1_000, help="window length for the monitor and the baseline")
    p.add_argument("--monitor-rows", type=int, default=500_000, help="rows through Monitor.ingest")
    p.add_argument("--large-window-rows", type=int, default=100_000,
                   help="window length of the second Monitor.ingest run (ingest cost with few verdicts)")
    p.add_argument("--baseline-rows", type=int, default=100_000, help="rows through the ks_2samp baseline")
    p.add_argument("--actor-rows", type=int, default=1_000_000, help="rows through the actor")
    p.add_argument("--clean-windows", type=int, default=100, help="windows without drift per detection run")
    p.add_argument("--no-actor", action="store_true", help="skip the actor (no Ray)")
    p.add_argument("--timeout", type=float, default=1_200.0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args()

    def _alarm(*_: Any) -> None:
        raise BenchmarkTimeout(f"ran past --timeout {args.timeout:.0f}s")

    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(args.timeout))
    facts = machine_facts()
    rng = np.random.default_rng(0)
    ref_X = rng.normal(size=(10_000, FEATURES))
    pool = [rng.normal(size=(args.batch, FEATURES)) for _ in range(8)]
    results: dict[str, Any] = {"machine": facts, "args": {k: str(v) for k, v in vars(args).items()}}
    results["baseline_ks_2samp"] = bench_ks_baseline(args, ref_X, pool)
    results["core"] = bench_core(args, ref_X, pool)
    results["monitor"] = bench_monitor(args, ref_X, pool, sliced=False)
    results["monitor_sliced"] = bench_monitor(args, ref_X, pool, sliced=True)
    results["monitor_large_windows"] = bench_monitor(args, ref_X, pool, sliced=False,
                                                     window_rows=args.large_window_rows, rows=4 * args.monitor_rows)
    if not args.no_actor:
        results["actor"] = bench_actor(args, ref_X, pool)
    results["detection"] = bench_detection(args, ref_X)
    signal.alarm(0)
    results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]

    base = results["baseline_ks_2samp"]["values_per_s"]
    baseline = results["baseline_ks_2samp"]
    rows = [["exact scipy ks_2samp per window (baseline)", f"{baseline['rows']:,}", f"{base / 1e6:.2f}", "-",
             f"{1e3 * baseline['wall_s'] / baseline['windows']:.2f}", "1.0"]]
    for key, label in (("core", "core: StreamState.update"), ("monitor", "Monitor.ingest (windows, verdicts)"),
                       ("monitor_sliced", "Monitor.ingest, 10 slices + other"),
                       ("monitor_large_windows", f"Monitor.ingest, windows of {args.large_window_rows:,} rows"),
                       ("actor", "one actor, ingest.remote")):
        if key in results:
            r = results[key]
            per_cpu = f"{r['values_per_cpu_s'] / 1e6:.2f}" if "values_per_cpu_s" in r else "-"
            per_window = f"{1e3 * r['wall_s'] / r['windows_closed']:.2f}" if r.get("windows_closed") else "-"
            rows.append([label, f"{r['rows']:,}", f"{r['values_per_s'] / 1e6:.2f}", per_cpu, per_window,
                         f"{r['values_per_s'] / base:.1f}"])
    m = facts
    print(f"bench_monitor: {m['usable_cpus']} CPUs ({m['cpu_model']}), {m['mem_gib']} GiB, load "
          f"{m['loadavg_at_start']} -> {results['machine']['loadavg_at_end']}, Python {m['python']}, Ray {m['ray']}, "
          f"scikit-learn {m['scikit-learn']}, {m['date']}")
    print(f"\n{FEATURES} features, batches of {args.batch:,} rows, windows of {args.window_rows:,} rows")
    print(format_table(["ingest path", "rows", "M feature-values/s", "M per CPU-s", "ms per window", "x baseline"],
                       rows))
    core = results["core"]
    print(f"core CPU time: {core['values_per_cpu_s'] / 1e6:.2f} M feature-values per CPU-second")
    for key, target in (("monitor", 50e6), ("monitor_sliced", 20e6)):  # issue 13's targets
        r = results[key]
        results[key]["target_values_per_s"] = target
        print(f"target {key}: >= {target / 1e6:.0f} M/s: {r['values_per_s'] / 1e6:.1f} M/s wall, "
              f"{r['values_per_cpu_s'] / 1e6:.1f} M per CPU-s ({'met' if r['values_per_s'] >= target else 'NOT met'})")
    print()
    print(format_table(["rows streamed (core)", "RSS MiB", "state bytes"],
                       [[f"{x['rows']:,}", x["rss_mib"], f"{x['state_bytes']:,}"] for x in core["memory"]]))
    print()
    print(format_table(["window rows", "test", "change from a known row", "detection delay (rows)",
                        "false alarms / 100 clean windows"],
                       [[d["window_rows"], d["test"], d["change"], d["detection_delay_rows"],
                         f"{d['false_alarms_per_100_windows']:.1f}"] for d in results["detection"]]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
