#!/usr/bin/env python
"""Where the quickstart pipeline's time goes, against the same work in plain scikit-learn.

Claim measured: the wall time of each step of ``configs/quickstart.yaml`` run through
``raymlops.run_pipeline`` (Ray Data, Ray Tune, Ray Serve), and how it compares with a plain
scikit-learn script doing the same learning work without Ray: load the same data, the same
deterministic holdout split, fit every candidate configuration sequentially on the same
validation split as ``raymlops.train.tune_runner._trial``, refit the best, evaluate on the holdout.

Both run in this one process. The baseline runs first, before Ray starts, ``--baseline-repeat``
times (sklearn imports warmed outside the timers); ratios use its median. The pipeline runs
``--repeat`` times in one fresh temp home: the first run writes a new snapshot, later runs reuse
it. ``ray.init`` (``ensure_ray()``) is timed once, on its own. A private local Ray is always
started (``RAY_ADDRESS`` and clusters left by ``ray start`` are not used); Serve binds 127.0.0.1
on ``--port`` or, if that is busy, a free port; the script stops by itself after ``--timeout``
seconds and always ends with ``ray.shutdown()``.

    python benchmarks/quickstart_steps.py [--repeat 2] [--port 8000] [--out PATH] [--verbose]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from machine import facts as machine_facts  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NAME = Path(__file__).stem
DEFAULT_CONFIG = ROOT / "configs" / "quickstart.yaml"
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / f"{NAME}.json"


class BenchmarkTimeout(Exception):
    """Raised by the watchdog alarm: the benchmark ran past ``--timeout``."""


# -- machine facts ---------------------------------------------------------------------------


def machine_line(m: dict[str, Any]) -> str:
    return (
        f"{m['usable_cpus']} CPUs ({m['cpu_model']}), {m['mem_gib']} GiB, load at start {m['loadavg_at_start']}, "
        f"Python {m['python']}, Ray {m['ray']}, scikit-learn {m['scikit-learn']}, {m['date']}"
    )


# -- helpers ---------------------------------------------------------------------------------
def pick_port(host: str, wanted: int) -> int:
    """``wanted`` if nothing listens there, else a free loopback port."""
    from raymlops.serve.deploy import port_free

    if port_free(host, wanted):
        return wanted
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def trial_key(trial: dict[str, Any]) -> str:
    return json.dumps({k: trial[k] for k in ("candidate", "estimator", "scale", "params")}, sort_keys=True)


def describe_trial(trial: dict[str, Any]) -> str:
    return f"{trial['estimator'].rsplit('.', 1)[-1]} {trial['params']}"


def format_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        cells = [str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(cells))
    return "\n".join(lines)


def fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


# -- the baseline: plain scikit-learn, no Ray ------------------------------------------------
def run_baseline(cfg: Any) -> dict[str, Any]:
    from sklearn.datasets import load_breast_cancer

    from raymlops.data.split import holdout_mask
    from raymlops.train.evaluate import classification_metrics
    from raymlops.train.search import build_estimator, expand

    if cfg.data.source != "sklearn://breast_cancer":
        raise SystemExit(f"the baseline loads sklearn's breast_cancer; the config reads {cfg.data.source}")
    seconds: dict[str, float] = {}
    t = time.perf_counter()
    X, y = load_breast_cancer(return_X_y=True)
    seconds["load"] = time.perf_counter() - t

    t = time.perf_counter()
    holdout = holdout_mask(len(y), cfg.data.holdout_fraction, cfg.seed)
    Xtr, ytr, Xho, yho = X[~holdout], y[~holdout], X[holdout], y[holdout]
    seconds["split"] = time.perf_counter() - t

    t = time.perf_counter()
    trials = expand(cfg.train.candidates)
    val = holdout_mask(len(ytr), cfg.train.validation_fraction, cfg.seed + 1)  # as tune_runner._trial
    scores, fit_seconds = [], []
    for trial in trials:
        t_fit = time.perf_counter()
        model = build_estimator(trial, cfg.seed).fit(Xtr[~val], ytr[~val])
        scores.append(classification_metrics(model, Xtr[val], ytr[val])[cfg.train.metric])
        fit_seconds.append(time.perf_counter() - t_fit)
    seconds["search"] = time.perf_counter() - t

    t = time.perf_counter()
    sign = -1.0 if cfg.train.mode == "max" else 1.0
    best_i = min(range(len(trials)), key=lambda i: (sign * scores[i], i))  # ties: grid order, as run_search
    model = build_estimator(trials[best_i], cfg.seed).fit(Xtr, ytr)
    seconds["refit"] = time.perf_counter() - t

    t = time.perf_counter()
    metrics = classification_metrics(model, Xho, yho)
    seconds["evaluate"] = time.perf_counter() - t

    seconds["fit"] = seconds["search"] + seconds["refit"]
    seconds["total"] = sum(seconds[k] for k in ("load", "split", "search", "refit", "evaluate"))
    return {
        "seconds": seconds,
        "trials": [{"config": tr, "metric": s, "seconds": f}
                   for tr, s, f in zip(trials, scores, fit_seconds, strict=True)],
        "best": trials[best_i],
        "metrics": metrics,
        "X": X,
        "y": y,
    }


# -- the pipeline ----------------------------------------------------------------------------
def run_pipeline_once(cfg: Any, home: str, verbose: bool) -> dict[str, Any]:
    import raymlops
    from raymlops.registry.registry import get_model

    lines: list[str] = []

    def progress(line: str) -> None:
        lines.append(line)
        if verbose:
            print(line, file=sys.stderr, flush=True)

    t = time.perf_counter()
    result = raymlops.run_pipeline(cfg, home=home, progress=progress, keep_serving=False)
    wall = time.perf_counter() - t
    out = result.to_dict()
    tune = get_model(raymlops.Store.open(home), result.model).record["tune"] if result.model else {}
    return {
        "wall_seconds": wall,
        "result": out,
        "steps": {s["name"]: s for s in out["steps"]},
        "tune": tune,
        "progress": lines,
    }


def check_same_data(home: str, snapshot: str, target: str, X: np.ndarray, y: np.ndarray) -> bool:
    """The pipeline's snapshot holds exactly the baseline's arrays, in the same row order."""
    import raymlops
    from raymlops.data.schema import table_columns
    from raymlops.data.snapshot_read import read_snapshot

    _, table = read_snapshot(raymlops.Store.open(home), snapshot)
    features = [n for n in table.column_names if n != target]
    Xs = table_columns(table, features)
    ys = table.column(target).to_numpy(zero_copy_only=False)
    return bool(Xs.shape == X.shape and np.array_equal(Xs, X) and np.array_equal(ys, y))


def existing_local_cluster() -> str | None:
    """The address a plain ``ray.init()`` would attach to: a cluster left by ``ray start`` on this
    machine (``/tmp/ray/ray_current_cluster``), or None when it would start a new one."""
    try:
        from ray._private import services

        return services.canonicalize_bootstrap_address(None)
    except Exception:  # private API moved: skip the check
        return None


def start_private_ray() -> str:
    """``ensure_ray()``, checked to have started a private local Ray, not attached to a cluster
    that ``ray start`` left on this machine (``run_pipeline`` would shut down that cluster's Serve)."""
    import ray

    from raymlops.ray_session import ensure_ray

    found = existing_local_cluster()
    ensure_ray()
    if found is not None and ray.get_runtime_context().gcs_address == found:
        ray.shutdown()
        raise RuntimeError(f"ensure_ray() attached to the existing cluster at {found} instead of a private Ray")
    return "ensure_ray()" if found is None else f"ensure_ray(), private although a cluster runs at {found}"


# -- report ----------------------------------------------------------------------------------
def build_report(res: dict[str, Any]) -> str:
    runs, base = res["pipeline"], res["baseline"]
    n = len(runs)
    out = [f"{NAME}: quickstart pipeline steps vs plain scikit-learn", f"machine: {machine_line(res['machine'])}",
           f"load average (1, 5, 15 min) at end: {res['machine'].get('loadavg_at_end')}", ""]

    from raymlops.pipeline.runner import STEPS

    heads = ["pipeline step", *[f"run {i + 1} (s)" for i in range(n)], "status"]
    rows = [["ray.init (once, before run 1)", fmt_s(res["ray_init_seconds"]), *["" for _ in range(n - 1)], ""]]
    if res["ray_init_mode"] != "ensure_ray()":
        out.insert(-1, f"ray started by {res['ray_init_mode']}")
    for name in STEPS:
        cells = [fmt_s(r["steps"][name]["seconds"]) if name in r["steps"] else "-" for r in runs]
        status = "/".join(r["steps"][name]["status"] if name in r["steps"] else "-" for r in runs)
        rows.append([name, *cells, status])
    rows.append(["  of train: tuner.fit", *[fmt_s(r["tune"].get("seconds")) for r in runs], ""])
    rows.append(["  of tuner.fit: trials' own time (sum)",
                 *[fmt_s(sum(t.get("seconds") or 0.0 for t in r["tune"].get("trials", []))) for r in runs], ""])
    step_sums = [sum(s["seconds"] for s in r["steps"].values()) for r in runs]
    rows.append(["sum of steps", *[fmt_s(x) for x in step_sums], ""])
    rows.append(["outside steps (stop_serving, records)", *[fmt_s(r["wall_seconds"] - x)
                                                            for r, x in zip(runs, step_sums, strict=True)], ""])
    rows.append(["run_pipeline wall", *[fmt_s(r["wall_seconds"]) for r in runs], ""])
    rows.append(["ray.shutdown (once, at the end)", *["" for _ in range(n - 1)], fmt_s(res.get("ray_shutdown_seconds")),
                 ""])
    out += [format_table(heads, rows), ""]

    b = base["runs"]
    heads = ["baseline (sklearn, no Ray)", *[f"run {i + 1} (s)" for i in range(len(b))], "median (s)"]
    rows = []
    for part in ("load", "split", "search", "refit", "evaluate", "fit", "total"):
        label = {"search": f"search ({len(base['trials'])} fits)", "fit": "fit = search + refit"}.get(part, part)
        rows.append([label, *[f"{r[part]:.3f}" for r in b], f"{base['median'][part]:.3f}"])
    out += [format_table(heads, rows), ""]

    heads = ["ratio pipeline / baseline median", *[f"run {i + 1}" for i in range(n)]]
    rows = [
        ["train step / baseline fit", *[f"{r['ratios']['train_vs_fit']:.1f}x" for r in runs]],
        ["run_pipeline wall / baseline total", *[f"{r['ratios']['wall_vs_total']:.1f}x" for r in runs]],
        ["  incl. ray.init (run 1)", f"{runs[0]['ratios']['wall_with_init_vs_total']:.1f}x",
         *["" for _ in range(n - 1)]],
    ]
    out += [format_table(heads, rows), ""]

    heads = ["holdout metric", *[f"pipeline run {i + 1}" for i in range(n)], "baseline", "max |diff|"]
    rows = []
    for k in sorted(base["metrics"]):
        vals = [r["result"]["model_metrics"].get(k) for r in runs]
        known = [v for v in vals if v is not None]
        diff = max(abs(v - base["metrics"][k]) for v in known) if known else None
        fmt = "{:.0f}" if k == "rows" else "{:.6f}"
        rows.append([k, *["-" if v is None else fmt.format(v) for v in vals], fmt.format(base["metrics"][k]),
                     "-" if diff is None else f"{diff:.1e}"])
    out += [format_table(heads, rows), ""]

    agree = res["agreement"]
    out.append(f"chosen candidate: pipeline {agree['pipeline_best']}; baseline {agree['baseline_best']}"
               f" -> {'match' if agree['same_candidate'] else 'DIFFERENT'}")
    out.append(f"validation {res['config']['metric']} per trial, max |pipeline - baseline|: "
               f"{agree['max_trial_metric_diff']:.1e}" if agree["max_trial_metric_diff"] is not None
               else "validation metric per trial: not comparable")
    gates = ", ".join(str(r["result"]["gate"]) for r in runs)
    out.append(f"roc_auc: {'match' if agree['same_roc_auc'] else 'DIFFERENT'}; same data and row order in the"
               f" snapshot: {'yes' if agree['same_data'] else 'NO'}; gate: {gates}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="pipeline YAML (default: configs/quickstart.yaml)")
    p.add_argument("--repeat", type=int, default=2, help="pipeline runs in the same home (default 2)")
    p.add_argument("--baseline-repeat", type=int, default=3, help="baseline runs; ratios use the median (default 3)")
    p.add_argument("--port", type=int, default=8000, help="serve.port; a free one is used if busy (default 8000)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"JSON output (default {DEFAULT_OUT.relative_to(ROOT)})")
    p.add_argument("--timeout", type=int, default=900, help="stop after this many seconds (default 900)")
    p.add_argument("--keep-home", action="store_true", help="keep the temp raymlops home and print its path")
    p.add_argument("--verbose", action="store_true", help="echo the pipeline's progress lines to stderr")
    args = p.parse_args(argv)
    if args.repeat < 1 or args.baseline_repeat < 1:
        p.error("--repeat and --baseline-repeat must be at least 1")

    fired: list[bool] = []

    def on_alarm(signum: int, frame: Any) -> None:
        fired.append(True)
        raise BenchmarkTimeout(f"{NAME} ran past --timeout {args.timeout} s")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(args.timeout)
    os.environ.pop("RAY_ADDRESS", None)  # always a private local Ray that ends with this process

    import raymlops

    cfg = raymlops.load_config(args.config)
    port = pick_port(cfg.serve.host, args.port)
    cfg = cfg.model_copy(update={"serve": cfg.serve.model_copy(update={"port": port})})
    res: dict[str, Any] = {
        "benchmark": NAME,
        "machine": machine_facts(),
        "args": vars(args),
        "config": {"path": args.config, "name": cfg.name, "seed": cfg.seed, "metric": cfg.train.metric,
                   "holdout_fraction": cfg.data.holdout_fraction, "port": port, "port_requested": args.port},
        "status": "running",
    }

    home_dir = tempfile.mkdtemp(prefix="raymlops-bench-")
    ray_started = False
    code = 1
    try:
        # warm the sklearn imports outside every timer, so neither side pays them in its numbers
        from raymlops.train.search import expand

        expand(cfg.train.candidates)

        # 1. the baseline, before Ray exists
        baseline_runs = [run_baseline(cfg) for _ in range(args.baseline_repeat)]
        first = baseline_runs[0]
        median = {k: statistics.median(r["seconds"][k] for r in baseline_runs) for k in first["seconds"]}
        res["baseline"] = {
            "runs": [r["seconds"] for r in baseline_runs],
            "median": median,
            "trials": first["trials"],
            "best": first["best"],
            "metrics": first["metrics"],
            "trial_seconds": [[t["seconds"] for t in r["trials"]] for r in baseline_runs],
            "same_result_every_run": all(r["metrics"] == first["metrics"] for r in baseline_runs),
        }

        # 2. ray.init, timed on its own (always a private local Ray, see start_private_ray)
        t = time.perf_counter()
        ray_started = True
        res["ray_init_mode"] = start_private_ray()
        res["ray_init_seconds"] = time.perf_counter() - t

        # 3. the pipeline, --repeat times in one home
        runs = []
        for _ in range(args.repeat):
            run = run_pipeline_once(cfg, home_dir, args.verbose)
            train = run["steps"]["train"]["seconds"]
            run["ratios"] = {
                "train_vs_fit": train / median["fit"],
                "wall_vs_total": run["wall_seconds"] / median["total"],
                "wall_with_init_vs_total": (run["wall_seconds"] + res["ray_init_seconds"]) / median["total"],
            }
            runs.append(run)
        res["pipeline"] = runs

        # 4. do both sides agree?
        best = [r["tune"].get("best", {}).get("config", {}) for r in runs]
        by_key = {trial_key(t["config"]): t["metric"] for t in first["trials"]}
        diffs = [abs(t["metric"] - by_key[trial_key(t["config"])]) for r in runs for t in r["tune"].get("trials", [])
                 if t.get("metric") is not None and trial_key(t["config"]) in by_key]
        res["agreement"] = {
            "pipeline_best": "; ".join(sorted({describe_trial(b) for b in best if b})) or "-",
            "baseline_best": describe_trial(first["best"]),
            "same_candidate": all(b and trial_key(b) == trial_key(first["best"]) for b in best),
            "max_trial_metric_diff": max(diffs) if diffs else None,
            "same_roc_auc": all(
                abs(r["result"]["model_metrics"].get("roc_auc", float("nan")) - first["metrics"]["roc_auc"]) <= 1e-12
                for r in runs
            ),
            "max_holdout_metric_diff": max(abs(r["result"]["model_metrics"][k] - v) for r in runs
                                           for k, v in first["metrics"].items() if k in r["result"]["model_metrics"]),
            "same_data": check_same_data(home_dir, runs[0]["result"]["snapshot"], cfg.data.target,
                                         first["X"], first["y"]),
        }
        res["status"] = "ok"
        code = 0
    except (Exception, KeyboardInterrupt) as exc:
        res["status"] = "failed"
        res["error"] = f"{type(exc).__name__}: {exc}"
        if fired:  # the alarm can surface wrapped in Ray's or the pipeline's errors
            res["error"] = f"timed out after --timeout {args.timeout} s ({res['error']})"
        print(f"{NAME}: failed: {res['error']}", file=sys.stderr)
    finally:
        signal.alarm(0)
        if ray_started:
            import ray

            t = time.perf_counter()
            ray.shutdown()
            res["ray_shutdown_seconds"] = time.perf_counter() - t
        res["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
        if args.keep_home:
            print(f"raymlops home kept at {home_dir}", file=sys.stderr)
        else:
            import shutil

            shutil.rmtree(home_dir, ignore_errors=True)

    if res["status"] == "ok":
        print(build_report(res))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=lambda o: None if isinstance(o, np.ndarray) else str(o)))
    print(f"\nwrote {out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
