"""Gradient-boosted trees: one process vs Ray Train's XGBoost trainer (``strategy: distributed``).

Data: ``make_classification`` (default 2,000,000 rows x 30 features), written as a raymlops
snapshot; every approach uses the snapshot's holdout split (20 %, by row-index hash) and reports
the holdout ROC AUC. Each approach runs in its own process, so "peak driver RSS" is that
process's own peak (``ru_maxrss``), Ray's worker processes not included:

- ``xgboost.train`` in one process (``nthread`` = all CPUs, ``hist``), on every training row;
- scikit-learn's ``HistGradientBoostingClassifier`` (same rounds, depth, rate; no early stop);
- raymlops ``strategy: distributed`` (Ray Train ``XGBoostTrainer``, ``num_workers`` workers of
  one CPU): the driver never reads the training rows; the workers train on the rows outside a
  ``--validation`` split (5 % by default) and evaluate it every round.

The Ray Train run is done (after a warm-up run) with 1 round and with ``--rounds`` rounds: the difference gives
the cost per round, the 1-round run the fixed cost (workers, Ray Data read and shuffle of the
shards into each worker, one round). From those and the single-process per-round cost the table
projects 16 and 64 cores (see ``projection``: the assumptions are printed with it).

    python benchmarks/bench_train.py                      # the full 2 M x 30
    python benchmarks/bench_train.py --rows 200000 --rounds 50   # a quick run on a busy machine
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import facts as machine_facts  # noqa: E402

NAME = "bench_train"
DEFAULT_OUT = Path(__file__).resolve().parent / "out" / f"{NAME}.json"
SEED, HOLDOUT = 0, 0.2


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# -- phases, each run in its own process -------------------------------------------------------
def phase_prepare(args: argparse.Namespace) -> dict[str, Any]:
    """Generate the data, write it as Parquet parts and snapshot it into a raymlops store."""
    import logging

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import ray
    from sklearn.datasets import make_classification

    from raymlops.data.snapshot import create_snapshot
    from raymlops.store.home import Store

    work = Path(args.work)
    src = work / "source"
    src.mkdir(parents=True, exist_ok=True)
    X, y = make_classification(n_samples=args.rows, n_features=args.features, n_informative=args.features // 2,
                               n_redundant=4, flip_y=0.05, random_state=SEED)
    step = -(-args.rows // args.parts)
    for i in range(args.parts):
        sl = slice(i * step, (i + 1) * step)
        cols = {f"x{j}": X[sl, j] for j in range(args.features)} | {"target": y[sl].astype(np.int64)}
        pq.write_table(pa.table(cols), src / f"part-{i:03d}.parquet")
    del X, y
    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    store = Store.open(work / "home")
    t0 = time.perf_counter()
    info = create_snapshot(store, ray.data.read_parquet(str(src)), str(src))
    ray.shutdown()
    return {"snapshot": info.id, "rows": info.rows, "snapshot_seconds": time.perf_counter() - t0}


def _split(args: argparse.Namespace) -> tuple[Any, ...]:
    from raymlops.store.home import Store
    from raymlops.train.prepare import split_snapshot

    cfg = _config(args)
    store = Store.open(Path(args.work) / "home")
    return split_snapshot(store, args.snapshot, [f"x{j}" for j in range(args.features)], cfg)


def _config(args: argparse.Namespace, rounds: int | None = None) -> Any:
    from raymlops.config import parse_config

    return parse_config({
        "name": "bench", "seed": SEED,
        "data": {"source": "unused", "target": "target", "holdout_fraction": HOLDOUT},
        "train": {"strategy": "distributed", "framework": "xgboost", "num_workers": args.workers,
                  "cpus_per_worker": 1, "num_boost_round": rounds or args.rounds,
                  "validation_fraction": args.validation,
                  "checkpoint_every": max(1, (rounds or args.rounds) // 4), "max_failures": 0,
                  "params": {"max_depth": args.max_depth, "eta": args.eta, "max_bin": 256}},
    }, "bench")


def phase_xgboost(args: argparse.Namespace) -> dict[str, Any]:
    import xgboost
    from sklearn.metrics import roc_auc_score

    t0 = time.perf_counter()
    Xtr, ytr, Xho, yho = _split(args)
    read = time.perf_counter() - t0
    t1 = time.perf_counter()
    dtrain = xgboost.QuantileDMatrix(Xtr, label=ytr, nthread=args.cpus, max_bin=256)
    build = time.perf_counter() - t1
    t2 = time.perf_counter()
    bst = xgboost.train({"objective": "binary:logistic", "tree_method": "hist", "max_depth": args.max_depth,
                         "eta": args.eta, "seed": SEED, "nthread": args.cpus, "max_bin": 256}, dtrain,
                        num_boost_round=args.rounds)
    train = time.perf_counter() - t2
    auc = float(roc_auc_score(yho, bst.inplace_predict(Xho)))
    return {"wall_s": time.perf_counter() - t0, "read_s": read, "matrix_s": build, "train_s": train,
            "per_round_s": train / args.rounds, "auc": auc, "rss_mib": _rss_mib()}


def phase_hgb(args: argparse.Namespace) -> dict[str, Any]:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    t0 = time.perf_counter()
    Xtr, ytr, Xho, yho = _split(args)
    t1 = time.perf_counter()
    model = HistGradientBoostingClassifier(max_iter=args.rounds, max_depth=args.max_depth, learning_rate=args.eta,
                                           early_stopping=False, random_state=SEED).fit(Xtr, ytr)
    train = time.perf_counter() - t1
    auc = float(roc_auc_score(yho, model.predict_proba(Xho)[:, 1]))
    return {"wall_s": time.perf_counter() - t0, "train_s": train, "per_round_s": train / args.rounds, "auc": auc,
            "rss_mib": _rss_mib()}


def phase_ray(args: argparse.Namespace) -> dict[str, Any]:
    import logging

    import ray
    from sklearn.metrics import roc_auc_score

    from raymlops.ray_session import quiet_ray_logs
    from raymlops.store.home import Store
    from raymlops.train.boost_data import SnapshotSource, holdout_rows
    from raymlops.train.distributed import fit_distributed

    quiet_ray_logs()
    ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    store = Store.open(Path(args.work) / "home")
    features = tuple(f"x{j}" for j in range(args.features))
    source = SnapshotSource(store, args.snapshot, features, "target", HOLDOUT, SEED)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as storage:
        # a first 1-round run warms Ray up (worker processes, imports); it is not counted
        for i, rounds in enumerate((1, 1, args.rounds)):
            cfg = _config(args, rounds)
            t0 = time.perf_counter()
            model, summary = fit_distributed(cfg.train, source, seed=SEED, storage_path=storage, name=f"r{i}")
            out[f"fit_{rounds}_s"] = time.perf_counter() - t0
            out[f"train_{rounds}_s"] = summary.best.seconds
    t1 = time.perf_counter()
    Xho, yho, _ = holdout_rows(source)
    out["holdout_read_s"] = time.perf_counter() - t1
    out["auc"] = float(roc_auc_score(yho, model.predict_proba(Xho)[:, 1]))
    out["rss_mib"] = _rss_mib()
    out["per_round_s"] = (out[f"fit_{args.rounds}_s"] - out["fit_1_s"]) / max(args.rounds - 1, 1)
    out["fixed_s"] = out["fit_1_s"] - out["per_round_s"]
    out["wall_s"] = out[f"fit_{args.rounds}_s"] + out["holdout_read_s"]
    out["train_rows"] = model.info_["train_rows"]
    ray.shutdown()
    return out


PHASES = {"prepare": phase_prepare, "xgboost": phase_xgboost, "hgb": phase_hgb, "ray": phase_ray}


def _child(args: argparse.Namespace, phase: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--phase", phase, *sys.argv[1:]]
    if args.snapshot:
        cmd += ["--snapshot", args.snapshot]
    cmd += ["--work", args.work]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ | {"RAY_USAGE_STATS_ENABLED": "0"})
    if proc.returncode != 0:
        print(f"phase {phase} failed:\n{proc.stderr[-3000:]}", file=sys.stderr, flush=True)
        raise SystemExit(1)
    result = dict(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"phase {phase}: {json.dumps(result)}", file=sys.stderr, flush=True)  # kept if a later phase fails
    return result


def projection(single: dict[str, Any], ray_: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """16 and 64 cores, on paper: per round, the histogram work (measured single-process, on
    ``cpus`` threads) divides over the cores; Ray Train's extra cost per round (allreduce of the
    histograms, reports: measured as Ray's per-round minus single-process per-round) stays as
    measured (the allreduce grows with log2(workers) but its payload is features x bins x nodes,
    independent of rows); the fixed cost's read and shuffle part divides over the workers."""
    compute = single["per_round_s"] * args.cpus  # core-seconds per round
    overhead = max(ray_["per_round_s"] - single["per_round_s"], 0.0)
    out = {}
    for cores in (16, 64):
        per_round = compute / cores + overhead * (1 + 0.25 * max(0.0, (cores.bit_length() - 1) - 1))
        fixed = ray_["fixed_s"] * args.cpus / cores + 10.0  # + ~10 s to start workers and stop the run
        out[str(cores)] = {"per_round_s": per_round, "fit_s": fixed + per_round * args.rounds,
                           "rows_per_worker": ray_["train_rows"] // cores}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--features", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--max-depth", type=int, default=6)
    parser.add_argument("--eta", type=float, default=0.1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--parts", type=int, default=8)
    parser.add_argument("--validation", type=float, default=0.05)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--phase", choices=sorted(PHASES), help=argparse.SUPPRESS)
    parser.add_argument("--snapshot", default="", help=argparse.SUPPRESS)
    parser.add_argument("--work", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(PHASES[args.phase](args)), flush=True)
        return 0
    facts = machine_facts()
    with tempfile.TemporaryDirectory() as work:
        args.work = work
        prep = _child(args, "prepare")
        args.snapshot = prep["snapshot"]
        results = {name: _child(args, name) for name in ("xgboost", "hgb", "ray")}
    proj = projection(results["xgboost"], results["ray"], args)
    out = {"machine": facts, "args": {k: str(v) for k, v in vars(args).items() if k not in ("phase", "work")},
           "prepare": prep, "results": results, "projection": proj}
    rows = [("approach", "wall s", "train s", "s/round", "peak driver RSS MiB", "holdout AUC")]
    x, h, r = results["xgboost"], results["hgb"], results["ray"]
    rows.append(("xgboost.train, 1 process", f"{x['wall_s']:.1f}", f"{x['train_s']:.1f}", f"{x['per_round_s']:.3f}",
                 f"{x['rss_mib']:.0f}", f"{x['auc']:.4f}"))
    rows.append(("HistGradientBoosting, 1 process", f"{h['wall_s']:.1f}", f"{h['train_s']:.1f}",
                 f"{h['per_round_s']:.3f}", f"{h['rss_mib']:.0f}", f"{h['auc']:.4f}"))
    rows.append((f"Ray Train XGBoost, {args.workers} workers", f"{r['wall_s']:.1f}",
                 f"{r[f'train_{args.rounds}_s']:.1f}", f"{r['per_round_s']:.3f}", f"{r['rss_mib']:.0f}",
                 f"{r['auc']:.4f}"))
    print(f"machine: {facts.get('cpus', args.cpus)} CPUs, {args.rows} rows x {args.features}, {args.rounds} rounds")
    for row in rows:
        print(" | ".join(f"{c:>12}" if i else f"{c:<34}" for i, c in enumerate(row)))
    print(f"Ray Train fixed cost (workers, read + shuffle, 1 round): {r['fixed_s']:.1f} s; "
          f"AUC gap vs xgboost.train: {r['auc'] - x['auc']:+.4f}")
    for cores, p in proj.items():
        print(f"projection {cores} cores: {p['per_round_s']:.3f} s/round, fit {p['fit_s']:.1f} s "
              f"({p['rows_per_worker']} rows per worker)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
