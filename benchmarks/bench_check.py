#!/usr/bin/env python
"""``raymlops monitor check`` on two Parquet files, end to end from process start, vs a stand-in.

Claim measured: the whole CLI (``python -m raymlops.cli monitor check --reference a.parquet
--current b.parquet --json``: interpreter start, imports, reading both files, exact tests of
every column, the JSON line) in seconds, on two files of ``--rows`` rows x ``--columns`` float
columns; the baseline, in the same run and interleaved with it, is a stand-in script that reads
both files with pyarrow and runs ``scipy.stats.ks_2samp`` on every column (also from process
start). Both are run ``--repeat`` times; the table shows the median (and best) wall time, the
ratio of the medians, each process's peak RSS, and how far our KS statistics and p-values are
from scipy's (they should agree to rounding).

The current file is drawn independently of the reference (another seed); ``--drifted``
columns are shifted by ``--shift`` reference standard deviations. Note on p-values: for about
a million rows, ``scipy.stats.kstwo.sf`` (which both sides use, through ``ks_2samp`` or directly)
takes 0.1-0.6 s per column when the p-value lies between about 1e-150 and 0.02 (a mild shift);
both sides pay it, we on the thread pool.

``--wide`` also runs the check alone on a wide pair (``--wide-rows`` x ``--wide-columns``
reference vs a tenth as many current rows; the issue's case is 3 M x 1,000 vs 300 k) and
reports wall time and peak RSS; the default is scaled down to fit this machine's memory (the
full case holds 24 GB of float64 in the reference alone).

    python benchmarks/bench_check.py [--rows 1000000] [--columns 30] [--repeat 3] [--wide] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import facts  # noqa: E402

NAME = Path(__file__).stem
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / f"{NAME}.json"
ROOT = Path(__file__).resolve().parent.parent

STAND_IN = """
import json, sys
import pyarrow.parquet as pq
from scipy.stats import ks_2samp
a, b = pq.read_table(sys.argv[1]), pq.read_table(sys.argv[2])
out = {}
for name in a.column_names:
    r = ks_2samp(a.column(name).to_numpy(), b.column(name).to_numpy())
    out[name] = [float(r.statistic), float(r.pvalue)]
print(json.dumps(out))
"""


def write_pair(folder: Path, rows: int, columns: int, drifted: int, shift: float, current_rows: int | None = None,
               block_rows: int | None = None) -> tuple[Path, Path]:
    """Two Parquet files of float columns. Small pairs: built whole (each column drawn in turn).
    With ``block_rows``: written a row group of that many rows at a time (bounded memory: the
    3 M x 1,000 reference is 24 GB of float64), each block drawn from its own seed, without
    dictionary encoding (random floats have no repeats). An existing file of the right shape in
    ``folder`` is reused."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    paths = []
    for seed, n, is_current in ((1, rows, False), (2, current_rows or rows, True)):
        path = folder / ("current.parquet" if is_current else "reference.parquet")
        paths.append(path)
        if path.exists():
            md = pq.ParquetFile(path).metadata
            if md.num_rows == n and md.num_columns == columns:
                continue
        names = [f"f{j:04d}" for j in range(columns)]
        locs = [shift if (is_current and j < drifted) else 0.0 for j in range(columns)]
        sds = [1.0 + 0.01 * (j % 7) for j in range(columns)]
        if block_rows is None:
            rng = np.random.default_rng(seed)
            cols = {name: rng.normal(loc, sd, n) for name, loc, sd in zip(names, locs, sds, strict=True)}
            pq.write_table(pa.table(cols), path, row_group_size=1 << 20)
            del cols
            continue
        schema = pa.schema([(name, pa.float64()) for name in names])
        tmp = path.with_suffix(".partial")
        with pq.ParquetWriter(tmp, schema, use_dictionary=False) as writer:
            for k, start in enumerate(range(0, n, block_rows)):
                rng = np.random.default_rng([seed, k])
                size = min(block_rows, n - start)
                block = [pa.array(rng.normal(loc, sd, size)) for loc, sd in zip(locs, sds, strict=True)]
                writer.write_table(pa.Table.from_arrays(block, schema=schema))
                del block
        tmp.rename(path)
    return paths[0], paths[1]


def timed(argv: list[str]) -> tuple[float, float, str, float]:
    """``(wall seconds, peak RSS in MiB, stdout, CPU seconds: user + system)`` of one child process
    (the CPU time includes the processes it waited for)."""
    t = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    out_chunks = []
    assert proc.stdout is not None
    for line in proc.stdout:
        out_chunks.append(line)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv[:4])}... failed ({proc.returncode}): {err[-2000:]}")
    return wall, usage.ru_maxrss / 1024, "".join(out_chunks), usage.ru_utime + usage.ru_stime


def ours_argv(ref: Path, cur: Path) -> list[str]:
    return [sys.executable, "-m", "raymlops.cli", "monitor", "check", "--reference", str(ref), "--current", str(cur),
            "--json"]


def run_pair(ref: Path, cur: Path, repeat: int) -> dict[str, Any]:
    script = ref.parent / "stand_in.py"
    script.write_text(STAND_IN)
    ours_t, base_t, ours_rss, base_rss, ours_cpu, base_cpu = [], [], [], [], [], []
    ours_out = base_out = ""
    for _ in range(repeat):  # interleaved, so load on the machine hits both alike
        w, rss, base_out, cpu = timed([sys.executable, str(script), str(ref), str(cur)])
        base_t.append(w)
        base_rss.append(rss)
        base_cpu.append(cpu)
        w, rss, ours_out, cpu = timed(ours_argv(ref, cur))
        ours_t.append(w)
        ours_rss.append(rss)
        ours_cpu.append(cpu)
    ours = json.loads(ours_out.strip().splitlines()[-1])
    base = json.loads(base_out.strip().splitlines()[-1])
    d_err = max(abs(ours["features"][n]["ks"] - base[n][0]) for n in base)
    p_err = max(abs(ours["features"][n]["p_value"] - base[n][1]) for n in base)
    return {"ours_s": ours_t, "stand_in_s": base_t, "ours_median_s": statistics.median(ours_t),
            "stand_in_median_s": statistics.median(base_t), "ours_best_s": min(ours_t), "stand_in_best_s": min(base_t),
            "ratio_median": statistics.median(base_t) / statistics.median(ours_t),
            "ratio_best": min(base_t) / min(ours_t),
            "ours_peak_rss_mib": max(ours_rss), "stand_in_peak_rss_mib": max(base_rss),
            "ours_cpu_median_s": statistics.median(ours_cpu), "stand_in_cpu_median_s": statistics.median(base_cpu),
            "max_abs_ks_statistic_diff": d_err, "max_abs_p_value_diff": p_err,
            "dataset_drift": ours["drift"], "drifted_features": len(ours["drifted_features"]),
            "stand_in_flagged_bonferroni": sum(p * len(base) < 0.05 for _, p in base.values())}


def run_wide(folder: Path, rows: int, columns: int) -> dict[str, Any]:
    t = time.perf_counter()
    ref, cur = write_pair(folder, rows, columns, drifted=columns // 20, shift=0.05, current_rows=max(rows // 10, 1),
                          block_rows=1 << 18)
    written = time.perf_counter() - t
    wall, rss, out, cpu = timed(ours_argv(ref, cur))
    res = json.loads(out.strip().splitlines()[-1])
    return {"reference_rows": rows, "current_rows": max(rows // 10, 1), "columns": columns, "write_s": written,
            "ours_s": wall, "ours_cpu_s": cpu, "ours_peak_rss_mib": rss,
            "reference_file_mib": ref.stat().st_size / 2**20,
            "drifted_features": len(res["drifted_features"]), "dataset_drift": res["drift"],
            "values_per_s": (rows + max(rows // 10, 1)) * columns / wall}


def _pair_table(args: argparse.Namespace, folder: Path, res: dict[str, Any]) -> None:
    ref, cur = write_pair(folder, args.rows, args.columns, args.drifted, args.shift)
    pair = run_pair(ref, cur, args.repeat)
    res["pair"] = pair
    print(f"monitor check, {args.rows:,} x {args.columns} float columns per file ({args.drifted} shifted by "
          f"{args.shift} sd), end to end from process start, {args.repeat} interleaved runs each")
    print(f"{'':<34} {'median s':>9} {'best s':>8} {'CPU s':>7} {'peak RSS MiB':>13}")
    print(f"{'raymlops monitor check --json':<34} {pair['ours_median_s']:>9.2f} {pair['ours_best_s']:>8.2f} "
          f"{pair['ours_cpu_median_s']:>7.2f} {pair['ours_peak_rss_mib']:>13.0f}")
    print(f"{'stand-in: pyarrow + ks_2samp':<34} {pair['stand_in_median_s']:>9.2f} {pair['stand_in_best_s']:>8.2f} "
          f"{pair['stand_in_cpu_median_s']:>7.2f} {pair['stand_in_peak_rss_mib']:>13.0f}")
    print(f"ratio (stand-in / ours): {pair['ratio_median']:.2f}x median, {pair['ratio_best']:.2f}x best; CPU time "
          f"(user + system, medians) {pair['stand_in_cpu_median_s'] / pair['ours_cpu_median_s']:.2f}x less")
    print(f"agreement with ks_2samp: max |D diff| {pair['max_abs_ks_statistic_diff']:.1e}, max |p diff| "
          f"{pair['max_abs_p_value_diff']:.1e}; drifted features {pair['drifted_features']} (stand-in with "
          f"Bonferroni: {pair['stand_in_flagged_bonferroni']}), dataset drift {pair['dataset_drift']}")
    for p in (ref, cur):
        p.unlink()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--columns", type=int, default=30)
    ap.add_argument("--drifted", type=int, default=5, help="columns of the current file shifted by --shift")
    ap.add_argument("--shift", type=float, default=0.2, help="in reference standard deviations")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--wide", action="store_true", help="also the wide case (check alone)")
    ap.add_argument("--wide-rows", type=int, default=300_000)
    ap.add_argument("--wide-columns", type=int, default=1000)
    ap.add_argument("--wide-only", action="store_true", help="only the wide case")
    ap.add_argument("--wide-data", type=Path, default=None,
                    help="folder that keeps the wide pair between runs (reused when its shape matches)")
    ap.add_argument("--tmp", default=None, help="folder for the Parquet files (default: a temporary one)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    res: dict[str, Any] = {"benchmark": NAME, "machine": facts(), "args": {k: str(v) for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        folder = Path(tmp)
        if not args.wide_only:
            _pair_table(args, folder, res)
        if args.wide or args.wide_only:
            wide_folder = args.wide_data or folder
            wide_folder.mkdir(parents=True, exist_ok=True)
            wide = run_wide(wide_folder, args.wide_rows, args.wide_columns)
            res["wide"] = wide
            print(f"\nwide: {wide['reference_rows']:,} x {wide['columns']} reference "
                  f"({wide['reference_file_mib']:,.0f} MiB file) vs {wide['current_rows']:,} current: "
                  f"{wide['ours_s']:.1f} s end to end ({wide['ours_cpu_s']:.0f} s CPU), peak RSS "
                  f"{wide['ours_peak_rss_mib']:.0f} MiB, {wide['values_per_s'] / 1e6:.1f} M values/s "
                  f"({wide['ours_s'] / wide['columns'] * 1e3:.0f} ms per column); {wide['drifted_features']} drifted "
                  f"features; files written in {wide['write_s']:.0f} s (0 = reused)")
    res["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1, default=str))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
