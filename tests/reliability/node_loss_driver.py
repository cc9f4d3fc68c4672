"""Fault 1, run as its own process: a three-node Ray on this machine (``ray.cluster_utils.Cluster``,
head plus two one-CPU worker nodes), the quickstart pipeline over a four-file Parquet source with
serving off, and one worker node removed while a step runs. The Tune step trains
``slow_estimator.SlowClassifier`` (three trials of a few seconds, one per CPU) so that a trial is
running on the node when it goes.

Usage: ``python -m tests.reliability.node_loss_driver WORKDIR PHASE DELAY_S`` where PHASE is
``none`` (undisturbed), ``etl`` (the node goes DELAY_S after the ingest step starts) or ``tune``
(DELAY_S after the train step starts). Prints one JSON line: status, snapshot id, model, every
trial's failures and error, when the node went and which step was running.

``main`` builds the cluster (``tests.integration.cluster_driver.three_nodes``, as the other
multi-node tests do); ``run_with_node_loss`` is the scenario on it."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.reliability.slow_estimator import MARKERS_ENV

ROOT = Path(__file__).resolve().parents[2]
TRIGGER = {"etl": "] ingest ...", "tune": "] train ..."}


def run_with_node_loss(cluster: Any, workdir: Path, phase: str, delay: float) -> dict[str, Any]:
    """The pipeline on ``cluster`` (already joined by this process's ``ray.init``), with one of its
    worker nodes removed ``delay`` seconds after the ``phase`` step starts (``none``: undisturbed).
    Returns what the JSON line holds."""
    import ray

    from raymlops import load_config, run_pipeline
    from raymlops.config import Candidate
    from raymlops.registry import get_model
    from raymlops.store.home import Store
    from tests.integration.cluster_driver import make_source

    removed: dict[str, Any] = {}
    lines: list[tuple[float, str]] = []
    markers = Path(os.environ[MARKERS_ENV])  # set before the cluster started (:func:`main`)
    markers.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()

    def busy_worker() -> Any:
        """A worker node that is busy right now: in the train step, one where a trial is mid-fit
        (a ``SlowClassifier`` marker file names the node); in the ETL phase, any node holding a
        live actor. Only a trial counts in the train step: losing a node that holds another actor
        (Ray Data's, Tune's own) or an idle trial actor would retry no trial."""
        by_id = {w.node_id: w for w in cluster.worker_nodes}  # every live worker node, the head left out
        if phase == "tune":
            fitting = [m.name.split(".", 1)[0] for m in markers.iterdir()]
            victim = next((by_id[node] for node in fitting if node in by_id), None)
            if victim is None:
                removed["seen"] = [node[:8] for node in fitting]  # (reported when no victim is found)
            else:
                removed["actor"] = "a trial mid-fit"
            return victim
        from ray._private.state import actors

        seen = []
        for info in actors().values():
            node = (info.get("Address") or {}).get("NodeID")
            if info.get("State") == "ALIVE":
                seen.append(f"{info.get('ActorClassName')}@{str(node)[:8]}")
                if node in by_id:
                    removed["actor"] = str(info.get("ActorClassName"))
                    return by_id[node]
        removed["seen"] = seen[-8:]  # (reported when no victim is found: what was alive, and where)
        return None

    def remove_later() -> None:
        time.sleep(delay)
        deadline = time.monotonic() + (120.0 if phase == "tune" else 0.0)  # ETL runs tasks, not actors
        victim = busy_worker()
        while victim is None and time.monotonic() < deadline and "done" not in removed:  # kill it while it works
            time.sleep(0.02)
            victim = busy_worker()
        removed["busy"] = victim is not None
        victim = victim or next(iter(cluster.worker_nodes))
        removed["step"] = lines[-1][1] if lines else ""
        removed["at_s"] = round(time.monotonic() - t0, 2)
        try:
            cluster.remove_node(victim, allow_graceful=False)
        except Exception as exc:  # noqa: BLE001 - reported in the JSON line
            removed["error"] = repr(exc)
        removed["node"] = victim.node_id

    def progress(line: str) -> None:
        lines.append((time.monotonic() - t0, line))
        print(line, file=sys.stderr, flush=True)
        if phase in TRIGGER and TRIGGER[phase] in line and "started" not in removed:
            removed["started"] = True
            threading.Thread(target=remove_later, daemon=True).start()

    cfg = load_config(str(ROOT / "configs" / "quickstart.yaml"))
    cfg = cfg.model_copy(update={
        "data": cfg.data.model_copy(update={"source": make_source(workdir / "source", 4), "format": "parquet"}),
        "serve": cfg.serve.model_copy(update={"enabled": False}),
        # trials that last seconds (the quickstart's take a fraction of one), one per CPU of the cluster
        "train": cfg.train.model_copy(update={"max_failures": 2, "max_concurrent_trials": 3, "candidates": [
            Candidate(estimator="tests.reliability.slow_estimator.SlowClassifier", scale=True,
                      params={"C": [0.1, 1.0, 10.0], "delay_s": 2.0})]}),
    })
    home = workdir / "home"
    result = run_pipeline(cfg, home=str(home), progress=progress)
    removed["done"] = True
    trials: list[dict[str, Any]] = []
    if result.model:
        trials = get_model(Store.open(home), result.model).record["tune"]["trials"]
    return {
        "phase": phase, "status": result.status, "snapshot": result.snapshot, "model": result.model,
        "seconds": round(result.seconds, 1), "removed": removed,
        "alive_nodes": sum(1 for n in ray.nodes() if n["Alive"]),
        "trials": [{"failures": t.get("failures", 0), "error": t.get("error"), "node": t.get("node_id")}
                   for t in trials],
        "error": getattr(result, "error", None),
    }


def main() -> int:
    workdir, phase, delay = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    os.environ.pop("RAY_ADDRESS", None)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ[MARKERS_ENV] = str(workdir / "fitting")  # before the nodes start: their workers inherit it
    from tests.integration.cluster_driver import three_nodes

    with three_nodes(1) as (cluster, workers):
        names = [w.node_id for w in workers]
        out = run_with_node_loss(cluster, workdir, phase, delay) | {"workers": names}
    print(json.dumps(out, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
