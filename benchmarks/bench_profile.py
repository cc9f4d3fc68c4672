#!/usr/bin/env python
"""Profile + statistical check of a table against a reference, vs scipy.stats.ks_2samp.

Claim measured: ``raymlops.data.profile.profile`` (two map_batches passes on Ray Data, merged
on the driver) of a reference table and of a current table counted on the reference's bins,
then ``raymlops.stats.check.check`` (KS, Wasserstein, PSI per numeric column; chi-square,
Jensen-Shannon per categorical one), in rows/s; the baseline is ``scipy.stats.ks_2samp`` on the
full columns (every value of both tables, one column at a time, in this process), timed; and
how well our KS, computed on binned data (exact counts on up to 1,000 fine bins placed at the
reference's quantiles), agrees with scipy's exact statistic and p-value.

The tables are bench_snapshot.py's synthetic ones (default 5 million rows, 20 columns), made
inside Ray Data; the current one is drawn independently (another seed), with columns f00-f02
shifted by ``--shift`` of their standard deviation. The baseline regenerates the same values
column by column in this process. A private local Ray is started; ``--timeout`` stops it.

    python benchmarks/bench_profile.py [--rows 5000000] [--shift 0.01] [--out PATH] [--timeout 1500]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_snapshot as synth  # noqa: E402 - the shared synthetic table

NAME = Path(__file__).stem
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / f"{NAME}.json"
ALPHA = 0.05


def _dataset(rows: int, blocks: int, seed: int, shift: float) -> Any:
    import ray.data

    def make(batch: Any) -> Any:
        return synth.make_columns(batch, seed, shift)

    return ray.data.range(rows, override_num_blocks=blocks).map_batches(make, batch_format="numpy").materialize()


def run_ours(rows: int, blocks: int, shift: float) -> dict[str, Any]:
    from ray import cloudpickle

    from raymlops.data.profile import profile
    from raymlops.ray_session import ensure_ray
    from raymlops.stats.check import DriftSettings, check

    cloudpickle.register_pickle_by_value(synth)  # workers cannot import the benchmarks folder
    t = time.perf_counter()
    ensure_ray()
    init_s = time.perf_counter() - t
    t = time.perf_counter()
    ref_ds = _dataset(rows, blocks, seed=0, shift=0.0)
    cur_ds = _dataset(rows, blocks, seed=1, shift=shift)
    gen_s = time.perf_counter() - t

    t = time.perf_counter()
    ref = profile(ref_ds)
    ref_s = time.perf_counter() - t
    t = time.perf_counter()
    cur = profile(cur_ds, reference=ref)
    cur_s = time.perf_counter() - t
    t = time.perf_counter()
    by_ks = check(cur, ref, DriftSettings(numeric_test="ks", categorical_test="chi2"))
    check_s = time.perf_counter() - t
    auto = check(cur, ref)  # the defaults: distances on large data
    return {
        "ray_init_seconds": init_s, "generate_seconds": gen_s, "blocks": blocks,
        "reference_profile_seconds": ref_s, "current_profile_seconds": cur_s, "check_seconds": check_s,
        "ks_report": by_ks.to_dict(), "auto_report": auto.to_dict(),
        "profile_bytes": len(json.dumps(ref.to_dict())),
    }


def run_scipy(rows: int, shift: float, columns: list[str]) -> dict[str, Any]:
    from scipy import stats

    ids = np.arange(rows)
    out: dict[str, Any] = {}
    total = 0.0
    for name in columns:
        a = synth.column_values(name, ids, 0, 0.0)
        b = synth.column_values(name, ids, 1, shift)
        t = time.perf_counter()
        res = stats.ks_2samp(a, b)
        seconds = time.perf_counter() - t
        total += seconds
        out[name] = {"statistic": float(res.statistic), "p_value": float(res.pvalue), "seconds": seconds}
    return {"columns": out, "seconds": total}


def _log10(p: float) -> float:
    return math.log10(max(p, 1e-300))


def build_report(res: dict[str, Any]) -> str:
    ours, base = res["ours"], res["scipy"]
    rows = res["args"]["rows"]
    ks = {c["column"]: c for c in ours["ks_report"]["columns"]}
    auto = {c["column"]: c for c in ours["auto_report"]["columns"]}
    out = [f"{NAME}: profile + drift check of {rows:,} rows x 20 columns against a reference of {rows:,} rows "
           f"({ours['blocks']} blocks each; f00-f02 shifted by {res['args']['shift']} std)",
           f"machine: {synth.machine_line(res['machine'])}",
           f"load average at end: {res['machine'].get('loadavg_at_end')}", ""]
    both = ours["current_profile_seconds"] + ours["check_seconds"]
    n_cols = len(base["columns"])
    heads = ["", "seconds", "rows/s", "ratio to scipy"]
    table = [
        [f"scipy.stats.ks_2samp, {n_cols} full columns (baseline)", f"{base['seconds']:.2f}",
         f"{rows / base['seconds']:,.0f}", "1.00x"],
        ["profile(reference)", f"{ours['reference_profile_seconds']:.2f}",
         f"{rows / ours['reference_profile_seconds']:,.0f}",
         f"{ours['reference_profile_seconds'] / base['seconds']:.2f}x"],
        ["profile(current, reference) + check", f"{both:.2f}", f"{rows / both:,.0f}",
         f"{both / base['seconds']:.2f}x"],
        ["  of which check (all 20 columns, all tests)", f"{ours['check_seconds']:.3f}", "", ""],
    ]
    out += [format_table(heads, table), ""]
    heads = ["column", "D ours", "D scipy", "p ours", "p scipy", "verdict", "W/std", "PSI", "auto test: drift"]
    table = []
    d_err, logp_err, disagree = 0.0, 0.0, 0
    for name, b in base["columns"].items():
        c = ks.get(name, {})
        s = c.get("scores", {})
        if "ks_statistic" not in s:
            continue
        d, p = s["ks_statistic"], s["ks_p_value"]
        d_err = max(d_err, abs(d - b["statistic"]))
        if p > 1e-300 or b["p_value"] > 1e-300:
            logp_err = max(logp_err, abs(_log10(p) - _log10(b["p_value"])))
        same = (p < ALPHA) == (b["p_value"] < ALPHA)
        disagree += not same
        a = auto[name]
        table.append([name, f"{d:.5f}", f"{b['statistic']:.5f}", f"{p:.3g}", f"{b['p_value']:.3g}",
                      "same" if same else "DIFFERENT", f"{s['wasserstein_normed']:.4f}", f"{s['psi']:.5f}",
                      f"{a['test']}: {'yes' if a['drifted'] else 'no'}"])
    out += [format_table(heads, table), ""]
    out.append(f"KS on binned data vs exact scipy over {len(table)} numeric columns: max |D ours - D scipy| = "
               f"{d_err:.2e}; max |log10 p ours - log10 p scipy| = {logp_err:.2f}; verdicts at p < {ALPHA} that "
               f"differ: {disagree}")
    kr, ar = ours["ks_report"], ours["auto_report"]
    out.append(f"KS/chi-square with Bonferroni: {len(kr['drifted_columns'])} of {kr['tested']} columns drifted "
               f"({', '.join(kr['drifted_columns']) or '-'}); defaults (Wasserstein/JS >= 0.1 on large data): "
               f"{len(ar['drifted_columns'])} drifted ({', '.join(ar['drifted_columns']) or '-'})")
    out.append(f"profile JSON {ours['profile_bytes'] / 1e3:,.0f} KB; tables generated inside Ray Data in "
               f"{ours['generate_seconds']:.1f} s (not timed above); ray.init {ours['ray_init_seconds']:.1f} s")
    return "\n".join(out)


format_table = synth.format_table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=5_000_000)
    p.add_argument("--blocks", type=int, default=0, help="Ray Data blocks per table (default: ~125,000 rows each)")
    p.add_argument("--shift", type=float, default=0.01, help="mean shift of f00-f02, in standard deviations")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--timeout", type=int, default=1500, help="stop after this many seconds (default 1500)")
    args = p.parse_args(argv)
    blocks = args.blocks or max(2, args.rows // 125_000)

    def on_alarm(signum: int, frame: Any) -> None:
        raise synth.BenchmarkTimeout(f"{NAME} ran past --timeout {args.timeout} s")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(args.timeout)
    os.environ.pop("RAY_ADDRESS", None)  # a private local Ray that ends with this process
    res: dict[str, Any] = {"benchmark": NAME, "machine": synth.machine_facts(), "args": vars(args),
                           "status": "running"}
    code = 1
    try:
        res["ours"] = run_ours(args.rows, blocks, args.shift)
        numeric = [c for c in synth.COLUMNS if not c.startswith("s")]
        import ray

        ray.shutdown()  # the baseline gets the machine to itself
        res["scipy"] = run_scipy(args.rows, args.shift, numeric)
        res["status"] = "ok"
        code = 0
    except synth.BenchmarkTimeout as exc:
        res["status"] = f"timeout: {exc}"
    finally:
        signal.alarm(0)
        import ray

        if ray.is_initialized():
            ray.shutdown()
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
