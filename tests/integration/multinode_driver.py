"""Driver for test_multinode.py, run as its own process: a three-node Ray on this machine
(``ray.cluster_utils.Cluster``: head plus two worker nodes, one CPU each), the quickstart
pipeline over a multi-file Parquet source with serving off, and one JSON line on stdout
naming the nodes that did the work.

Usage: python multinode_driver.py WORKDIR DASHBOARD_PORT

Which node ran what:
- Tune trials report their node id (``raymlops.train.tune_runner``), so the registry record's
  tune summary names the node of every trial.
- Ray Data tasks (read, row hashing, Parquet write) are looked up in Ray's task state API,
  which the head's dashboard serves; that is why the head starts with a dashboard here.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


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


def data_task_nodes(job_id: str, dashboard_port: int, deadline_s: float = 30.0) -> dict[str, list[str]]:
    """``{task name: sorted node ids}`` of the finished ETL tasks of this driver's job (the head's
    dashboard is named: other Rays may run on this machine)."""
    from ray.util.state import list_tasks

    # Ray Data's ListFiles, ReadFilesParquetV2, MapBatches(...); the snapshot's SnapshotScan and SnapshotWrite
    wanted = ("ListFiles", "Read", "MapBatches", "Snapshot")
    found: dict[str, set[str]] = {}
    deadline = time.monotonic() + deadline_s
    while True:  # task events reach the state API asynchronously (about once a second)
        found = {}
        tasks = list_tasks(address=f"http://127.0.0.1:{dashboard_port}",
                           filters=[("job_id", "=", job_id), ("type", "=", "NORMAL_TASK")], limit=10_000,
                           raise_on_missing_output=False)
        for task in tasks:
            name = str(task.name)
            if task.state == "FINISHED" and task.node_id and any(w in name for w in wanted):
                found.setdefault(name, set()).add(str(task.node_id))
        if any("Write" in n for n in found) or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    return {name: sorted(nodes) for name, nodes in sorted(found.items())}


def main() -> int:
    workdir, dashboard_port = Path(sys.argv[1]), int(sys.argv[2])
    os.environ.pop("RAY_ADDRESS", None)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray
    from ray.cluster_utils import Cluster

    from raymlops import load_config, run_pipeline
    from raymlops.ray_session import NAMESPACE, quiet_ray_logs
    from raymlops.registry import get_model
    from raymlops.store.home import Store

    quiet_ray_logs()
    t0 = time.perf_counter()
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 1,
            "include_dashboard": True,
            "dashboard_host": "127.0.0.1",
            "dashboard_port": dashboard_port,
        },
    )
    try:
        workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.ERROR)
        started = time.perf_counter() - t0

        cfg = load_config(str(ROOT / "configs" / "quickstart.yaml"))
        cfg = cfg.model_copy(update={
            "data": cfg.data.model_copy(update={"source": make_source(workdir / "source", 4), "format": "parquet"}),
            "serve": cfg.serve.model_copy(update={"enabled": False}),
        })
        home = workdir / "home"
        result = run_pipeline(cfg, home=str(home), progress=lambda line: print(line, file=sys.stderr, flush=True))
        version = get_model(Store.open(home), result.model or "")
        trials = version.record["tune"]["trials"]
        out: dict[str, Any] = {
            "status": result.status,
            "model": result.model,
            "snapshot": result.snapshot,
            "seconds": round(result.seconds, 1),
            "cluster_start_seconds": round(started, 1),
            "nodes": {
                "head": cluster.head_node.node_id,
                "workers": [w.node_id for w in workers],
                "alive": sorted(n["NodeID"] for n in ray.nodes() if n["Alive"]),
            },
            "trial_nodes": [t["node_id"] for t in trials],
            "data_tasks": data_task_nodes(ray.get_runtime_context().get_job_id(), dashboard_port),
        }
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
