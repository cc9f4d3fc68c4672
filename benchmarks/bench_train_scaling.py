"""How XGBoost's data-parallel training scales with cores: the measured basis of bench_train's projection.

Ray Train's ``XGBoostTrainer`` runs one XGBoost worker per Ray Train worker, each on its shard,
joined by XGBoost's own collective (a Rabit tracker and an allreduce of the histograms every
round). This script runs exactly that engine without Ray (Ray is not needed to measure it, and
a machine with many cores may not have it): ``W`` worker processes, each on ``rows / W`` rows
with ``T`` threads, started through ``xgboost.tracker.RabitTracker`` and
``xgboost.collective.CommunicatorContext`` as Ray Train starts them. For each layout it reports
the seconds per boosting round and the holdout AUC; ``1 x T`` is single-process ``xgboost.train``.
What Ray adds on top (starting workers, Ray Data reading and shuffling shards) is measured by
``bench_train.py`` on the real stack; this script gives the per-round part at 16 cores.

    python benchmarks/bench_train_scaling.py                       # 2 M x 30, layouts up to the CPU count
    python benchmarks/bench_train_scaling.py --rows 200000 --rounds 10   # quick
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

NAME = "bench_train_scaling"
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / f"{NAME}.json"
SEED, HOLDOUT = 0, 0.2


def make_data(rows: int, features: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=rows, n_features=features, n_informative=features // 2,
                               n_redundant=4, flip_y=0.05, random_state=SEED)
    return X.astype(np.float32), y.astype(np.float32)


def _params(args: argparse.Namespace, threads: int) -> dict[str, Any]:
    return {"objective": "binary:logistic", "tree_method": "hist", "max_depth": args.max_depth, "eta": args.eta,
            "max_bin": 256, "seed": SEED, "nthread": threads}


def _worker(rank: int, world: int, threads: int, env: dict[str, Any], args: argparse.Namespace,
            X: np.ndarray, y: np.ndarray, out: Any) -> None:
    import xgboost
    from xgboost import collective

    with collective.CommunicatorContext(**env):
        t0 = time.perf_counter()
        dtrain = xgboost.QuantileDMatrix(X, label=y, nthread=threads, max_bin=256)
        build = time.perf_counter() - t0
        times = []

        class Clock(xgboost.callback.TrainingCallback):
            def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
                times.append(time.perf_counter())
                return False

        t1 = time.perf_counter()
        bst = xgboost.train(_params(args, threads), dtrain, num_boost_round=args.rounds, callbacks=[Clock()])
        if rank == 0:
            out.put({"build_s": build, "train_s": time.perf_counter() - t1, "round_ends": [t - t1 for t in times],
                     "model": bytes(bst.save_raw("ubj"))})


def run_layout(args: argparse.Namespace, workers: int, threads: int, X: np.ndarray, y: np.ndarray,
               Xho: np.ndarray, yho: np.ndarray) -> dict[str, Any]:
    import xgboost
    from sklearn.metrics import roc_auc_score
    from xgboost.tracker import RabitTracker

    # spawn, not fork: the parent's OpenMP pool (it predicts) would deadlock a forked child
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    tracker = RabitTracker(host_ip="127.0.0.1", n_workers=workers)
    tracker.start()
    env = tracker.worker_args()
    t0 = time.perf_counter()
    # each worker gets its shard only: row index mod workers, as raymlops' distributed strategy shards
    procs = [ctx.Process(target=_worker, args=(r, workers, threads, env, args, X[r::workers], y[r::workers], out))
             for r in range(workers)]
    for p in procs:
        p.start()
    result = out.get(timeout=3600)
    for p in procs:
        p.join()
    tracker.wait_for()
    wall = time.perf_counter() - t0
    bst = xgboost.Booster(model_file=bytearray(result.pop("model")))
    auc = float(roc_auc_score(yho, bst.inplace_predict(Xho)))
    ends = result.pop("round_ends")
    # steady state: the first round also builds the histogram cuts' caches
    steady = (ends[-1] - ends[0]) / max(len(ends) - 1, 1)
    return {"workers": workers, "threads": threads, "cores": workers * threads, "wall_s": wall, **result,
            "first_round_s": ends[0], "per_round_s": steady, "auc": auc}


def layouts(cpus: int) -> list[tuple[int, int]]:
    out, c = [], 1
    while c <= cpus:
        out.append((1, c))            # one process, c threads (xgboost.train)
        if c > 1:
            out.append((c, 1))        # c workers of one thread (Ray Train, cpus_per_worker 1)
        c *= 2
    if cpus >= 8:
        out.append((cpus // 4, 4))    # fewer, fatter workers
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--max-depth", type=int, default=6)
    parser.add_argument("--eta", type=float, default=0.1)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    import platform

    import xgboost

    t0 = time.perf_counter()
    X, y = make_data(args.rows, args.features)
    rng = np.random.default_rng(SEED)
    ho = rng.random(len(y)) < HOLDOUT
    Xho, yho = X[ho], y[ho]
    X, y = np.ascontiguousarray(X[~ho]), np.ascontiguousarray(y[~ho])
    print(f"data: {len(y)} training rows x {args.features}, {len(yho)} holdout ({time.perf_counter() - t0:.1f} s); "
          f"{args.cpus} CPUs, xgboost {xgboost.__version__}, {platform.processor() or platform.machine()}",
          flush=True)
    results = []
    for workers, threads in layouts(args.cpus):
        r = run_layout(args, workers, threads, X, y, Xho, yho)
        results.append(r)
        print(f"{workers:>3} worker(s) x {threads:>2} thread(s): {r['per_round_s'] * 1000:8.1f} ms/round "
              f"(first {r['first_round_s']:.2f} s, matrix {r['build_s']:.2f} s), AUC {r['auc']:.4f}", flush=True)
    single = {r["threads"]: r["per_round_s"] for r in results if r["workers"] == 1}
    base = single[1]
    print("\ncores | 1 process s/round | speed-up | W workers x 1 thread s/round | speed-up | overhead vs 1 process")
    for c in sorted(single):
        dp = next((r for r in results if r["workers"] == c and r["threads"] == 1), None)
        dps = f"{dp['per_round_s']:.4f} | {base / dp['per_round_s']:5.2f}x | {dp['per_round_s'] / single[c]:.2f}x" \
            if dp else "- | - | -"
        print(f"{c:>5} | {single[c]:.4f} | {base / single[c]:5.2f}x | {dps}")
    out = {"machine": {"cpus": args.cpus, "python": sys.version.split()[0], "xgboost": xgboost.__version__,
                       "platform": platform.platform()},
           "args": {k: str(v) for k, v in vars(args).items()}, "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
