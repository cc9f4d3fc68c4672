"""Driver for test_multinode.py, run as its own process (the cluster needs its own Ray, and the
test session already holds one): one three-node Ray on this machine (``ray.cluster_utils.Cluster``:
a head with no CPU that serves the dashboard, and two worker nodes of one CPU each) and two
pipeline runs on it, one after the other, each in its own home under WORKDIR:

1. ``train_node_loss``: ``strategy: distributed``, two XGBoost workers that must run one on each
   worker node (the head has no CPU). Once the run has written checkpoints, one worker node is
   removed and a fresh node joins; Ray Train's FailureConfig restarts the worker group, which
   resumes from the last checkpoint, and the pipeline registers the model.
2. ``tune_node_loss``: the node-loss fault of ``tests/reliability/node_loss_driver.py`` on this
   cluster: the quickstart over a four-file Parquet source with Tune trials of ``SlowClassifier``,
   and a worker node removed while a trial is mid-fit on it (the fit's marker file names the node;
   the head has no CPU, so every trial and ETL task runs on a worker node). The trial that died
   with its node is retried. The same run shows which nodes ran its Ray Data ETL tasks (Ray's
   task state API, which the head's dashboard serves) and its Tune trials (the registry record
   names each trial's node).

One cluster for both saves a cluster start and a driver process. A run that fails is reported in
its own part of the JSON line, and the next one still runs.

Usage: python -m tests.integration.cluster_driver WORKDIR DASHBOARD_PORT (from the repository root)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
#: boosting rounds of the node-loss training; Ray Train's controller collects a report every 0.5 s
#: here (RAY_TRAIN_HEALTH_CHECK_INTERVAL_S below), so a report per round paces the run at about
#: 6 s, leaving time to remove a node mid-training (the node goes at the third checkpoint, polled
#: every 0.2 s). Each round more is 0.5 s more after the resume too: 30 rounds took 9 s longer.
TRAIN_ROUNDS = 12


def make_source(folder: Path, parts: int) -> str:
    """The breast-cancer table as ``parts`` Parquet files, so Ray Data has several blocks."""
    import pyarrow.parquet as pq

    from raymlops.data.sources import sklearn_table

    folder.mkdir(parents=True, exist_ok=True)
    table = sklearn_table("breast_cancer")
    step = -(-table.num_rows // parts)
    for i in range(parts):
        pq.write_table(table.slice(i * step, step), folder / f"part-{i}.parquet")
    return str(folder)


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def job_tasks(job_id: str, dashboard_port: int) -> list[Any]:
    """The plain tasks of this driver's job, from Ray's task state API (the head's dashboard is
    named: other Rays may run on this machine)."""
    from ray.util.state import list_tasks

    return list_tasks(address=f"http://127.0.0.1:{dashboard_port}",
                      filters=[("job_id", "=", job_id), ("type", "=", "NORMAL_TASK")], limit=10_000,
                      raise_on_missing_output=False)


def data_task_nodes(job_id: str, dashboard_port: int, before: set[str], deadline_s: float = 30.0
                    ) -> dict[str, list[str]]:
    """``{task name: sorted node ids}`` of the finished ETL tasks of this driver's job, those in
    ``before`` (task ids) left out."""
    # Ray Data's ListFiles, ReadFilesParquetV2, MapBatches(...); the snapshot's SnapshotScan and SnapshotWrite
    wanted = ("ListFiles", "Read", "MapBatches", "Snapshot")
    found: dict[str, set[str]] = {}
    deadline = time.monotonic() + deadline_s
    while True:  # task events reach the state API asynchronously (about once a second)
        found = {}
        for task in job_tasks(job_id, dashboard_port):
            name = str(task.name)
            if task.state == "FINISHED" and task.node_id and task.task_id not in before \
                    and any(w in name for w in wanted):
                found.setdefault(name, set()).add(str(task.node_id))
        if any("Write" in n for n in found) or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    return {name: sorted(nodes) for name, nodes in sorted(found.items())}


def train_worker_nodes(dashboard_port: int) -> list[str]:
    """Node ids of the live Ray Train workers."""
    from ray.util.state import list_actors

    actors = list_actors(address=f"http://127.0.0.1:{dashboard_port}",
                         filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")],
                         raise_on_missing_output=False)
    return sorted(str(a.node_id) for a in actors)


def spread_and_tune_node_loss(cluster: Any, workers: list[Any], workdir: Path, dashboard_port: int
                              ) -> dict[str, Any]:
    """The node-loss fault of ``tests/reliability/node_loss_driver.py`` (a worker node removed while
    a Tune trial is mid-fit on it), and where that run's ETL tasks and trials ran: the cluster's
    nodes before the run, and the nodes of the ETL tasks (Ray's task state API, which the head's
    dashboard serves) that finished during it; each trial's node is in the run's own record."""
    import ray

    from tests.reliability.node_loss_driver import run_with_node_loss

    nodes = {"head": cluster.head_node.node_id, "workers": [w.node_id for w in workers],
             "alive": sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])}
    job = ray.get_runtime_context().get_job_id()
    before = {str(t.task_id) for t in job_tasks(job, dashboard_port)}  # the earlier run's
    out = run_with_node_loss(cluster, workdir, "tune", 0.0)
    return out | {"nodes": nodes, "data_tasks": data_task_nodes(job, dashboard_port, before)}


def train_node_loss(cluster: Any, workers: list[Any], workdir: Path, dashboard_port: int) -> dict[str, Any]:
    """Removes ``workers[1]`` mid-training and adds a node in its place (``workers`` is updated)."""
    from raymlops import load_config, run_pipeline
    from raymlops.registry import get_model
    from raymlops.store.home import Store

    cfg = load_config(str(ROOT / "configs" / "quickstart.yaml"))
    cfg = cfg.model_copy(update={
        "serve": cfg.serve.model_copy(update={"enabled": False}),
        "train": cfg.train.model_validate({
            "strategy": "distributed", "framework": "xgboost", "num_workers": 2, "cpus_per_worker": 1,
            "num_boost_round": TRAIN_ROUNDS, "checkpoint_every": 1, "max_failures": 3,
            "params": {"max_depth": 3, "eta": 0.1}}),
    })
    home = workdir / "home"
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = run_pipeline(cfg, home=str(home), progress=_progress)
        except BaseException as exc:  # reported below
            box["error"] = repr(exc)

    out: dict[str, Any] = {"worker_nodes": [w.node_id for w in workers]}
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and thread.is_alive():
        if len(list((home / "tune").glob("*/checkpoint_*"))) >= 3:
            break
        time.sleep(0.2)
    out["checkpoints_before_kill"] = len(list((home / "tune").glob("*/checkpoint_*")))
    out["train_nodes_before_kill"] = train_worker_nodes(dashboard_port)
    victim = workers[1]
    out["killed"] = victim.node_id
    cluster.remove_node(victim)
    workers.remove(victim)
    workers.append(cluster.add_node(num_cpus=1))
    out["added"] = workers[-1].node_id
    thread.join(timeout=300)
    if "error" in box or "result" not in box:
        out["error"] = box.get("error", "the pipeline did not finish")
        return out
    result = box["result"]
    version = get_model(Store.open(home), result.model or "")
    return out | {"status": result.status, "model": result.model, "training": version.record["lineage"]["training"]}


def _guarded(run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    try:
        return run()
    except Exception:  # noqa: BLE001 - reported in the JSON line; the next run still goes
        return {"error": traceback.format_exc()[-3000:]}


@contextlib.contextmanager
def three_nodes(head_cpus: int, dashboard_port: int | None = None) -> Iterator[tuple[Any, list[Any]]]:
    """``(cluster, worker nodes)``: a head with ``head_cpus`` CPUs (and the dashboard on
    ``dashboard_port``, if given) and two worker nodes of one CPU each, joined by this process's Ray;
    Ray and the cluster shut down on exit."""
    import ray
    from ray.cluster_utils import Cluster

    from raymlops.ray_session import NAMESPACE, PRIVATE_RAY_CONFIG, quiet_ray_logs

    quiet_ray_logs()
    dashboard = {"include_dashboard": dashboard_port is not None}
    if dashboard_port is not None:
        dashboard.update(dashboard_host="127.0.0.1", dashboard_port=dashboard_port)
    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": head_cpus, "_system_config": PRIVATE_RAY_CONFIG, **dashboard})
    try:
        workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.ERROR)
        yield cluster, workers
    finally:
        ray.shutdown()
        cluster.shutdown()


def main() -> int:
    from tests.reliability.slow_estimator import MARKERS_ENV

    workdir, dashboard_port = Path(sys.argv[1]), int(sys.argv[2])
    os.environ.pop("RAY_ADDRESS", None)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] = "0.5"  # see TRAIN_ROUNDS
    os.environ[MARKERS_ENV] = str(workdir / "fitting")  # before the nodes start: their workers inherit it
    t0 = time.perf_counter()
    out: dict[str, Any] = {}
    with three_nodes(0, dashboard_port) as (cluster, workers):
        out["cluster_start_seconds"] = round(time.perf_counter() - t0, 1)
        out["train_node_loss"] = _guarded(
            lambda: train_node_loss(cluster, workers, workdir / "train", dashboard_port))
        out["tune_node_loss"] = _guarded(
            lambda: spread_and_tune_node_loss(cluster, workers, workdir / "tune", dashboard_port))
    print(json.dumps(out, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
