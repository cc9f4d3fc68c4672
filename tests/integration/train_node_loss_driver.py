"""Driver for test_train_node_loss.py, run as its own process (the cluster needs its own Ray).

A three-node Ray on this machine (``ray.cluster_utils.Cluster``): a head with no CPUs (it runs the
driver, Ray Train's controller and the zero-CPU Ray Data read tasks) and two worker nodes of one
CPU each, so the two Ray Train workers of ``strategy: distributed`` must run one on each worker
node. Once the run has written checkpoints, one worker node is removed (its worker dies) and a
fresh node joins; Ray Train's FailureConfig restarts the worker group, which resumes from the last
checkpoint, and the pipeline registers the model. Prints one JSON line.

Usage: python train_node_loss_driver.py WORKDIR DASHBOARD_PORT
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def train_worker_nodes(dashboard_port: int) -> list[str]:
    """Node ids of the live Ray Train workers (the head's dashboard serves the state API; named,
    since other Rays may run on this machine)."""
    from ray.util.state import list_actors

    actors = list_actors(address=f"http://127.0.0.1:{dashboard_port}",
                         filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")],
                         raise_on_missing_output=False)
    return sorted(str(a.node_id) for a in actors)


def main() -> int:
    workdir, dashboard_port = Path(sys.argv[1]), int(sys.argv[2])
    os.environ.pop("RAY_ADDRESS", None)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    # Ray Train's controller collects reports every 0.5 s: a report every round paces the run
    # (tens of seconds), leaving time to remove a node mid-training
    os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = "0.5"
    import ray
    from ray.cluster_utils import Cluster

    from raymlops import load_config, run_pipeline
    from raymlops.ray_session import NAMESPACE, quiet_ray_logs
    from raymlops.registry import get_model
    from raymlops.store.home import Store

    quiet_ray_logs()
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": dashboard_port})
    out: dict[str, Any] = {}
    try:
        workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.ERROR)

        cfg = load_config(str(ROOT / "configs" / "quickstart.yaml"))
        cfg = cfg.model_copy(update={
            "serve": cfg.serve.model_copy(update={"enabled": False}),
            "train": cfg.train.model_validate({
                "strategy": "distributed", "framework": "xgboost", "num_workers": 2, "cpus_per_worker": 1,
                "num_boost_round": 60, "checkpoint_every": 1, "max_failures": 3,
                "params": {"max_depth": 3, "eta": 0.1}}),
        })
        home = workdir / "home"
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["result"] = run_pipeline(cfg, home=str(home),
                                             progress=lambda line: print(line, file=sys.stderr, flush=True))
            except BaseException as exc:  # reported below
                box["error"] = repr(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and thread.is_alive():
            if len(list((home / "tune").glob("*/checkpoint_*"))) >= 3:
                break
            time.sleep(0.2)
        out["checkpoints_before_kill"] = len(list((home / "tune").glob("*/checkpoint_*")))
        out["train_nodes_before_kill"] = train_worker_nodes(dashboard_port)
        out["killed"] = workers[1].node_id
        cluster.remove_node(workers[1])
        out["added"] = cluster.add_node(num_cpus=1).node_id
        thread.join(timeout=300)
        if "error" in box or "result" not in box:
            out["error"] = box.get("error", "the pipeline did not finish")
        else:
            result = box["result"]
            version = get_model(Store.open(home), result.model or "")
            out.update({"status": result.status, "model": result.model,
                        "training": version.record["lineage"]["training"],
                        "worker_nodes": [w.node_id for w in workers]})
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
