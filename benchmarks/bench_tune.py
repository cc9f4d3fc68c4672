#!/usr/bin/env python
"""What Ray Tune costs and buys, against plain scikit-learn loops.

Claims measured (issue 4, "Benchmarks"), each with its baseline in this same process and run:

1. ``search``: Ray Tune running 16 trials (a RandomForest grid) on a 50,000-row synthetic
   snapshot-like array, against a plain sequential loop of the same fits in one process. Both run
   the very same trial code (:func:`raymlops.train.objective.run_trial`) with the same seeds, so
   their per-trial validation metrics must match exactly. Reports the wall-time ratio and the
   parallel efficiency = (sum of trial times) / (wall time × CPUs) of each.
2. ``overhead``: Tune's cost per trial on a tiny model (GaussianNB, 200 rows): the wall time of an
   experiment with 1 trial (fixed cost) and with ``--tiny-trials`` trials; the marginal cost per
   trial = (T(n) - T(1)) / (n - 1), against the same fits in a loop.
(Distributed training on Ray Train is measured by ``bench_train.py``.)

A private local Ray is started (never ``RAY_ADDRESS``); trial results go to a temp folder that is
removed; the script stops by itself after ``--timeout`` seconds and ends with ``ray.shutdown()``.

    python benchmarks/bench_tune.py [--rows 50000] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from machine import facts as machine_facts  # noqa: E402

NAME = Path(__file__).stem
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / f"{NAME}.json"
RF = "sklearn.ensemble.RandomForestClassifier"


class BenchmarkTimeout(Exception):
    """Raised by the watchdog alarm: the benchmark ran past ``--timeout``."""


# -- machine facts ---------------------------------------------------------------------------


def format_table(headers: list[str], rows: list[list[Any]]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        cells = [str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("  ".join(cells))
    return "\n".join(lines)


# -- the claims ------------------------------------------------------------------------------
def snapshot_like(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A float64 feature matrix and 0/1 target, as ``table_columns`` gives from a snapshot."""
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=rows, n_features=20, n_informative=8, n_redundant=4, flip_y=0.03,
                               random_state=seed)
    return np.ascontiguousarray(X, dtype=np.float64), y.astype(np.int64)


def search_trials() -> list[dict[str, Any]]:
    from raymlops.config import Candidate
    from raymlops.train.search import expand

    grid = {"max_depth": [4, 8, 12, 16], "max_features": ["sqrt", 0.25], "n_estimators": [8, 16]}
    return expand([Candidate(estimator=RF, params=grid)])  # 16 trials


def run_loop(trials: list[dict[str, Any]], X: np.ndarray, y: np.ndarray, settings: Any) -> dict[str, Any]:
    from raymlops.train.objective import run_trial

    t0 = time.perf_counter()
    per_trial, metrics = [], []
    for trial in trials:
        s = time.perf_counter()
        last = list(run_trial(trial, X, y, settings))[-1]
        per_trial.append(time.perf_counter() - s)
        metrics.append(last[settings.metric])
    return {"wall_s": time.perf_counter() - t0, "trial_s": per_trial, "metrics": metrics}


def run_tune(trials: list[dict[str, Any]], X: np.ndarray, y: np.ndarray, settings: Any, storage: str,
             name: str, concurrent: int) -> dict[str, Any]:
    from raymlops.train.tune_runner import run_search

    t0 = time.perf_counter()
    summary = run_search(
        trials, X, y, metric=settings.metric, mode="max", seed=settings.seed,
        validation_fraction=settings.validation_fraction, max_concurrent=concurrent, cpus_per_trial=1.0,
        storage_path=storage, name=name, task=settings.task, epochs=settings.epochs,
    )
    wall = time.perf_counter() - t0
    by_config = {json.dumps(t.config, sort_keys=True): t for t in summary.trials}
    ordered = [by_config[json.dumps(t, sort_keys=True)] for t in trials]
    return {
        "wall_s": wall,
        "tuner_fit_s": summary.seconds,
        "trial_s": [t.seconds for t in ordered],
        "metrics": [t.metric for t in ordered],
        "errors": [t.error for t in ordered if t.error],
        "best": summary.best.config,
    }


def bench_search(args: argparse.Namespace, X: np.ndarray, y: np.ndarray, storage: str, cpus: int) -> dict[str, Any]:
    from raymlops.train.objective import TrialSettings

    trials = search_trials()
    settings = TrialSettings("classification", "roc_auc", args.seed, 1, 0.25, grow=False)
    loop = run_loop(trials, X, y, settings)
    tune = run_tune(trials, X, y, settings, storage, "search", concurrent=cpus)
    best_loop = trials[int(np.argmax(loop["metrics"]))]
    diff = max(abs(a - b) for a, b in zip(loop["metrics"], tune["metrics"], strict=True) if b is not None)
    return {
        "trials": len(trials),
        "rows": len(y),
        "loop": loop,
        "tune": tune,
        "ratio_tune_over_loop": tune["wall_s"] / loop["wall_s"],
        "efficiency_tune": sum(tune["trial_s"]) / (tune["wall_s"] * cpus),
        "efficiency_loop": sum(loop["trial_s"]) / (loop["wall_s"] * cpus),
        "max_metric_diff": diff,
        "same_best": best_loop == tune["best"],
    }


def bench_overhead(args: argparse.Namespace, storage: str, cpus: int) -> dict[str, Any]:
    from raymlops.config import Candidate
    from raymlops.train.objective import TrialSettings
    from raymlops.train.search import expand

    X, y = snapshot_like(200, args.seed)
    settings = TrialSettings("classification", "roc_auc", args.seed, 1, 0.25)
    n = args.tiny_trials
    trials = expand([Candidate(estimator="sklearn.naive_bayes.GaussianNB",
                               params={"var_smoothing": [10.0 ** -k for k in range(1, n + 1)]})])
    loop = run_loop(trials, X, y, settings)
    one = run_tune(trials[:1], X, y, settings, storage, "tiny-1", concurrent=cpus)
    many = run_tune(trials, X, y, settings, storage, f"tiny-{n}", concurrent=cpus)
    return {
        "trials": n,
        "loop_wall_s": loop["wall_s"],
        "loop_per_trial_s": loop["wall_s"] / n,
        "tune_1_trial_wall_s": one["wall_s"],
        "tune_n_trials_wall_s": many["wall_s"],
        "tune_marginal_per_trial_s": (many["wall_s"] - one["wall_s"]) / (n - 1),
        "tune_mean_per_trial_s": many["wall_s"] / n,
        "trials_own_time_mean_s": float(np.mean(many["trial_s"])),
    }


# -- report ----------------------------------------------------------------------------------
def report(facts: dict[str, Any], out: dict[str, Any]) -> str:
    cpus = facts["usable_cpus"]
    lines = [f"machine: {cpus} CPUs ({facts['cpu_model']}), {facts['mem_gib']} GiB, Python {facts['python']}, "
             f"Ray {facts['ray']}, scikit-learn {facts['scikit-learn']}, {facts['date']}, "
             f"load {facts['loadavg_at_start']} -> {facts.get('loadavg_at_end')}", ""]
    s = out["search"]
    lines.append(f"1. search: {s['trials']} RandomForest trials on {s['rows']:,} rows (holdout 25%), "
                 f"{cpus} trials at a time")
    lines.append(format_table(
        ["", "wall (s)", "sum of trial times (s)", "parallel efficiency", "ratio to loop"],
        [["sequential loop, one process", f"{s['loop']['wall_s']:.2f}", f"{sum(s['loop']['trial_s']):.2f}",
          f"{s['efficiency_loop']:.2f}", "1.00x"],
         ["Ray Tune (run_search)", f"{s['tune']['wall_s']:.2f}", f"{sum(s['tune']['trial_s']):.2f}",
          f"{s['efficiency_tune']:.2f}", f"{s['ratio_tune_over_loop']:.2f}x"]],
    ))
    lines.append(f"   tuner.fit alone {s['tune']['tuner_fit_s']:.2f} s; per-trial roc_auc max |tune - loop| "
                 f"{s['max_metric_diff']:.1e}; same best trial: {'yes' if s['same_best'] else 'NO'}; "
                 f"errors: {len(s['tune']['errors'])}")
    lines.append("")
    o = out["overhead"]
    lines.append(f"2. overhead: GaussianNB on 200 rows, {o['trials']} trials")
    lines.append(format_table(
        ["", "seconds"],
        [["loop: wall for all trials", f"{o['loop_wall_s']:.3f}"],
         ["loop: per trial", f"{o['loop_per_trial_s']:.4f}"],
         ["Tune: 1-trial experiment (fixed cost)", f"{o['tune_1_trial_wall_s']:.2f}"],
         [f"Tune: {o['trials']}-trial experiment", f"{o['tune_n_trials_wall_s']:.2f}"],
         ["Tune: marginal cost per extra trial", f"{o['tune_marginal_per_trial_s']:.3f}"],
         ["Tune: trial's own time (mean)", f"{o['trials_own_time_mean_s']:.4f}"]],
    ))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiny-trials", type=int, default=16)
    parser.add_argument("--timeout", type=int, default=900, help="give up after this many seconds")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    def on_alarm(signum: int, frame: Any) -> None:
        raise BenchmarkTimeout(f"ran past --timeout {args.timeout}s")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(args.timeout)
    facts = machine_facts()
    os.environ.pop("RAY_ADDRESS", None)
    import ray

    from raymlops.ray_session import _after_init, quiet_ray_logs

    quiet_ray_logs()
    cpus = int(facts["usable_cpus"] or 1)
    storage = tempfile.mkdtemp(prefix="bench_tune-")
    out: dict[str, Any] = {"machine": facts, "args": {k: str(v) for k, v in vars(args).items()}}
    try:
        X, y = snapshot_like(args.rows, args.seed)
        t0 = time.perf_counter()
        ray.init(address="local", include_dashboard=False, num_cpus=cpus, log_to_driver=False,
                 logging_level=logging.ERROR)
        _after_init()
        out["ray_init_s"] = time.perf_counter() - t0
        out["search"] = bench_search(args, X, y, storage, cpus)
        print("search done", file=sys.stderr, flush=True)
        out["overhead"] = bench_overhead(args, storage, cpus)
        print("overhead done", file=sys.stderr, flush=True)
    finally:
        signal.alarm(0)
        ray.shutdown()
        shutil.rmtree(storage, ignore_errors=True)
    facts["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    text = report(facts, out)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
