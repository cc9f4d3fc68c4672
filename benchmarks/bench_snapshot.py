#!/usr/bin/env python
"""Snapshot throughput and driver memory, against pyarrow.parquet.write_table in one process.

Claim measured: ``raymlops.data.snapshot.create_snapshot`` of a synthetic table (default 5
million rows, 20 columns: an id, 14 floats, 3 integers, 2 strings) — content id over every
row, profile (computed in the tasks that write), Parquet files, sha256 of every file, atomic
commit — in rows/s and MB/s of in-memory Arrow data; the same against ``pyarrow.parquet.write_table`` of the same table
in one process (the baseline: it only writes, it hashes and profiles nothing); the driver's
peak RSS against the data's size; and a second snapshot of the unchanged data (content hashing
only; nothing stored) against the first.

The table is generated inside Ray Data (``ray.data.range(rows).map_batches(make_columns)``),
never on the driver; every value is a hash of its row id, so any process can regenerate it. The
baseline runs in a subprocess (``--baseline-only``) that builds the same table in memory and
times ``write_table`` alone, so its memory never counts against the driver. A private local
Ray is started (``RAY_ADDRESS`` is ignored); temp folders are removed; ``--timeout`` stops it.

    python benchmarks/bench_snapshot.py [--rows 5000000] [--blocks 40] [--out PATH] [--timeout 1500]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from machine import facts as machine_facts  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NAME = Path(__file__).stem
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / f"{NAME}.json"
N_FLOAT, N_INT, N_STR = 14, 3, 2
LABELS_A = np.array([f"segment-{i}" for i in range(5)])
LABELS_B = np.array([f"city-{i:02d}" for i in range(50)])


class BenchmarkTimeout(Exception):
    """The watchdog alarm: the benchmark ran past ``--timeout``."""


# -- the synthetic table: every value a hash of (row id, column) ------------------------------
def _mix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _unit(ids: np.ndarray, salt: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = _mix(ids * np.uint64(0x100000001B3) + np.uint64((salt * 0x632BE59BD9B4E019 + 1) % 2**64))
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)


COLUMNS = ["id", *[f"f{j:02d}" for j in range(N_FLOAT)], *[f"i{j}" for j in range(N_INT)], "s0", "s1"]


def column_values(name: str, ids: np.ndarray, seed: int = 0, shift: float = 0.0) -> np.ndarray:
    """One column for the rows ``ids``: ``f00``-``f13`` normal (mean j, std 1 + j/10; ``shift``
    moves f00-f02 by that many standard deviations), ``i0``-``i2`` uniform integers below 10,
    1,000 and 1,000,000, ``s0``/``s1`` one of 5 / 50 labels."""
    u = np.asarray(ids, dtype=np.int64).astype(np.uint64)
    if name == "id":
        return np.asarray(ids, dtype=np.int64)
    if name.startswith("f"):
        j = int(name[1:])
        r = np.sqrt(-2.0 * np.log(_unit(u, 1000 * seed + 2 * j)))
        z = r * np.cos(2.0 * np.pi * _unit(u, 1000 * seed + 2 * j + 1))
        return np.asarray(j + (1.0 + j / 10.0) * (z + (shift if j < 3 else 0.0)))
    if name.startswith("i"):
        j = int(name[1:])
        return (_unit(u, 1000 * seed + 100 + j) * (10, 1000, 1_000_000)[j]).astype(np.int64)
    labels = LABELS_A if name == "s0" else LABELS_B
    return np.asarray(labels[(_unit(u, 1000 * seed + 200 + int(name[1:])) * labels.size).astype(np.int64)])


def make_columns(batch: Any, seed: int = 0, shift: float = 0.0) -> pa.Table:
    """The 20 columns (:data:`COLUMNS`) for the rows ``batch['id']``."""
    ids = np.asarray(batch["id"], dtype=np.int64)
    return pa.table({name: pa.array(column_values(name, ids, seed, shift), type=pa.string())
                     if name.startswith("s") else column_values(name, ids, seed, shift) for name in COLUMNS})


def local_table(rows: int, chunk: int = 500_000, seed: int = 0, shift: float = 0.0) -> pa.Table:
    parts = [make_columns({"id": np.arange(a, min(a + chunk, rows))}, seed, shift) for a in range(0, rows, chunk)]
    return pa.concat_tables(parts)


# -- machine facts ----------------------------------------------------------------------------


def machine_line(m: dict[str, Any]) -> str:
    return (f"{m['usable_cpus']} CPUs ({m['cpu_model']}), {m['mem_gib']} GiB, load at start {m['loadavg_at_start']}, "
            f"Python {m['python']}, Ray {m['ray']}, pyarrow {m['pyarrow']}, scikit-learn {m['scikit-learn']}, "
            f"{m['date']}")


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    for r in rows:
        lines.append("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths, strict=True))))
    return "\n".join(lines)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# -- the baseline, in its own process ---------------------------------------------------------
def baseline_only(rows: int, out: str) -> None:
    import pyarrow.parquet as pq

    table = local_table(rows)
    folder = tempfile.mkdtemp(prefix="raymlops-bench-pq-")
    try:
        path = os.path.join(folder, "table.parquet")
        t = time.perf_counter()
        pq.write_table(table, path)
        seconds = time.perf_counter() - t
        Path(out).write_text(json.dumps({"seconds": seconds, "file_bytes": os.path.getsize(path),
                                         "arrow_bytes": table.nbytes, "rows": table.num_rows,
                                         "peak_rss_mib": peak_rss_mib()}))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_baseline(rows: int, timeout: float) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    try:
        subprocess.run([sys.executable, __file__, "--baseline-only", "--rows", str(rows), "--baseline-out", out],
                       check=True, timeout=timeout, cwd=ROOT)
        result: dict[str, Any] = json.loads(Path(out).read_text())
        return result
    finally:
        os.unlink(out)


# -- our side ---------------------------------------------------------------------------------
class Phases:
    """Wall time spent in the snapshot's phases (wraps the functions it calls)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def wrap(self, owner: Any, attr: str, label: str) -> None:
        fn = getattr(owner, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[label] = self.seconds.get(label, 0.0) + time.perf_counter() - t

        setattr(owner, attr, timed)

    def take(self) -> dict[str, float]:
        out, self.seconds = self.seconds, {}
        return out


def run_ours(rows: int, blocks: int, home: str) -> dict[str, Any]:
    import ray
    import ray.data

    import raymlops.data.snapshot_write as snapshot_write_mod
    from raymlops import Store
    from raymlops.data.snapshot import create_snapshot
    from raymlops.ray_session import ensure_ray
    from raymlops.store.artifacts import ArtifactStore

    t = time.perf_counter()
    ensure_ray()
    init_s = time.perf_counter() - t
    rss_after_init = peak_rss_mib()

    # warm-up, untimed: Ray workers start and import raymlops, pandas, pyarrow (the baseline process
    # also imports outside its timer)
    warm = Store.open(os.path.join(home, "warm-up"))
    create_snapshot(warm, ray.data.range(20_000, override_num_blocks=2).map_batches(make_columns, batch_format="numpy"),
                    "bench://warm-up")
    rss_before = peak_rss_mib()

    phases = Phases()
    phases.wrap(snapshot_write_mod, "scan", "pass 1: content id + bins sample")
    phases.wrap(snapshot_write_mod, "write", "pass 2: Parquet write + profile + sha256")
    phases.wrap(ArtifactStore, "sha256", "sha256 of files read back")

    t = time.perf_counter()
    ds = ray.data.range(rows, override_num_blocks=blocks).map_batches(make_columns, batch_format="numpy")
    ds = ds.materialize()
    gen_s = time.perf_counter() - t
    arrow_bytes = ds.size_bytes()
    store = Store.open(home)

    t = time.perf_counter()
    first = create_snapshot(store, ds, "bench://synthetic", reason="bench_snapshot")
    first_s = time.perf_counter() - t
    first_phases = phases.take()
    written = sum(size for _, size in store.artifacts.list_files(f"snapshots/{first.id}/data"))

    t = time.perf_counter()
    again = create_snapshot(store, ds, "bench://synthetic", reason="bench_snapshot (unchanged)")
    again_s = time.perf_counter() - t
    again_phases = phases.take()
    stored_again = sorted(store.artifacts.list_files("snapshots")) and again.id == first.id and not again.new

    ds = None  # noqa: F841 - release the blocks before shutdown
    return {
        "ray_init_seconds": init_s, "generate_seconds": gen_s, "arrow_bytes": arrow_bytes, "blocks": blocks,
        "snapshot_id": first.id, "rows": first.rows, "new_first": first.new, "parquet_bytes": written,
        "first_seconds": first_s, "first_phases": first_phases,
        "again_seconds": again_s, "again_phases": again_phases, "again_new": again.new,
        "again_same_id": again.id == first.id, "again_stored_nothing": bool(stored_again),
        "driver_peak_rss_mib": peak_rss_mib(), "driver_rss_after_init_mib": rss_after_init,
        "driver_peak_rss_before_mib": rss_before,
    }


def build_report(res: dict[str, Any]) -> str:
    ours, base = res["ours"], res["baseline"]
    mb = ours["arrow_bytes"] / 1e6
    rows = ours["rows"]
    out = [f"{NAME}: create_snapshot of {rows:,} rows x 20 columns ({mb:,.0f} MB in Arrow, {ours['blocks']} blocks) "
           "vs pyarrow.parquet.write_table in one process",
           f"machine: {machine_line(res['machine'])}",
           f"load average at end: {res['machine'].get('loadavg_at_end')}", ""]
    heads = ["", "seconds", "rows/s", "MB/s", "ratio to write_table"]
    b_s = base["seconds"]
    table = [
        ["pq.write_table, one process (baseline)", f"{b_s:.2f}", f"{rows / b_s:,.0f}", f"{mb / b_s:,.0f}", "1.00x"],
        ["create_snapshot, new data", f"{ours['first_seconds']:.2f}", f"{rows / ours['first_seconds']:,.0f}",
         f"{mb / ours['first_seconds']:,.0f}", f"{ours['first_seconds'] / b_s:.2f}x time"],
        ["create_snapshot, unchanged data", f"{ours['again_seconds']:.2f}", f"{rows / ours['again_seconds']:,.0f}",
         f"{mb / ours['again_seconds']:,.0f}", f"{ours['again_seconds'] / b_s:.2f}x time"],
    ]
    out += [format_table(heads, table), ""]
    heads = ["phase of the first snapshot", "seconds"]
    phases = dict(ours["first_phases"])
    rest = ours["first_seconds"] - sum(phases.values())
    table = [[k, f"{v:.2f}"] for k, v in phases.items()]
    table.append(["Parquet write, manifest, commit (rest)", f"{rest:.2f}"])
    out += [format_table(heads, table), ""]
    out.append(f"unchanged data: {ours['again_seconds']:.2f} s = {ours['again_seconds'] / ours['first_seconds']:.2f}x"
               f" the first snapshot; same id: {ours['again_same_id']}; new: {ours['again_new']}; nothing stored: "
               f"{ours['again_stored_nothing']}")
    grew = ours["driver_peak_rss_mib"] - ours["driver_peak_rss_before_mib"]
    out.append(f"driver peak RSS: {ours['driver_peak_rss_mib']:,.0f} MiB for {ours['arrow_bytes'] / 2**20:,.0f} MiB "
               f"of data ({ours['driver_peak_rss_mib'] / (ours['arrow_bytes'] / 2**20):.2f}x); "
               f"{ours['driver_rss_after_init_mib']:,.0f} MiB after ray.init, {ours['driver_peak_rss_before_mib']:,.0f}"
               f" MiB before the timed snapshots, +{grew:,.0f} MiB during them; the baseline process peaked at "
               f"{base['peak_rss_mib']:,.0f} MiB")
    out.append(f"Parquet bytes: ours {ours['parquet_bytes'] / 1e6:,.0f} MB, baseline "
               f"{base['file_bytes'] / 1e6:,.0f} MB; data generation inside Ray Data (not timed above): "
               f"{ours['generate_seconds']:.1f} s; ray.init {ours['ray_init_seconds']:.1f} s")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=5_000_000)
    p.add_argument("--blocks", type=int, default=0, help="Ray Data blocks (default: about 125,000 rows each)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"JSON output (default {DEFAULT_OUT.relative_to(ROOT)})")
    p.add_argument("--timeout", type=int, default=1500, help="stop after this many seconds (default 1500)")
    p.add_argument("--baseline-only", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--baseline-out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.baseline_only:
        baseline_only(args.rows, args.baseline_out)
        return 0
    blocks = args.blocks or max(2, args.rows // 125_000)

    def on_alarm(signum: int, frame: Any) -> None:
        raise BenchmarkTimeout(f"{NAME} ran past --timeout {args.timeout} s")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(args.timeout)
    os.environ.pop("RAY_ADDRESS", None)  # a private local Ray that ends with this process
    res: dict[str, Any] = {"benchmark": NAME, "machine": machine_facts(), "args": vars(args), "status": "running"}
    home = tempfile.mkdtemp(prefix="raymlops-bench-")
    code = 1
    try:
        res["baseline"] = run_baseline(args.rows, args.timeout)
        res["ours"] = run_ours(args.rows, blocks, home)
        res["status"] = "ok"
        code = 0
    except BenchmarkTimeout as exc:
        res["status"] = f"timeout: {exc}"
    finally:
        signal.alarm(0)
        import ray

        if ray.is_initialized():
            ray.shutdown()
        shutil.rmtree(home, ignore_errors=True)
        res["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=1, default=str))
    if code == 0:
        print(build_report(res))
    else:
        print(f"{NAME}: {res['status']}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
