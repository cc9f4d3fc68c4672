"""The pipeline on a three-node Ray (a head and two worker nodes on this machine): ETL and trials
spread over the nodes; a worker node lost mid-training (Ray Train resumes from a checkpoint); a
worker node lost mid-Tune (the trial that died with it is retried).

The cluster needs its own Ray, and this test session already holds one (``ray_session``), so the
runs happen in one separate process on one cluster: ``cluster_driver.py`` builds it with
``ray.cluster_utils.Cluster``, runs the pipeline twice (Ray Train with a node lost, then Tune with
a node lost, whose run also shows where its ETL tasks and trials ran) and prints what it saw;
each test reads its part. The node lost mid-Tune is a fault-injection test, so it is also in the
reliability tier (``pytest -m reliability``).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.faults import ROOT, clean_env

from .conftest import free_port

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    workdir = tmp_path_factory.mktemp("cluster")
    proc = subprocess.run([sys.executable, "-m", "tests.integration.cluster_driver", str(workdir), str(free_port())],
                          capture_output=True, text=True, env=clean_env(), cwd=ROOT, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), workdir


def test_pipeline_spreads_etl_and_trials_over_nodes(cluster_runs: tuple[dict[str, Any], Path]) -> None:
    """The run of ``test_worker_node_lost_mid_tune`` (a four-file Parquet source, three trials):
    which nodes its ETL tasks and trials ran on."""
    out = cluster_runs[0]["tune_node_loss"]
    assert out.get("error") is None, out["error"]
    assert out["status"] == "succeeded" and out["model"] == "breast-cancer:v1"
    nodes = out["nodes"]  # before the run
    cluster_nodes = {nodes["head"], *nodes["workers"]}
    assert len(cluster_nodes) == 3 and set(nodes["alive"]) == cluster_nodes

    # every trial says where it ran (Tune reuses trial actors, so on a busy machine all trials may
    # land on one node; the spread over nodes is asserted over ETL and trials together below)
    trial_nodes = [t["node"] for t in out["trials"]]
    assert len(trial_nodes) == 3 and set(trial_nodes) <= cluster_nodes

    # the ETL tasks (Ray Data's list and read, the snapshot's row hashing and Parquet write) ran, on more
    # than one node
    tasks = out["data_tasks"]
    assert any("Read" in name for name in tasks) and any("Write" in name for name in tasks), tasks
    etl_nodes = {node for names in tasks.values() for node in names}
    assert etl_nodes <= cluster_nodes
    assert len(etl_nodes) > 1, tasks


def test_worker_node_lost_mid_training_resumes_and_registers(cluster_runs: tuple[dict[str, Any], Path]) -> None:
    """strategy: distributed: the two Ray Train workers run on the two worker nodes; one node is
    removed mid-training, the run resumes from its last checkpoint on a node that joins, and the
    model is registered."""
    from tests.integration.cluster_driver import TRAIN_ROUNDS

    out = cluster_runs[0]["train_node_loss"]
    assert "error" not in out, out["error"]
    assert out["status"] == "succeeded" and out["model"] == "breast-cancer:v1"
    # training used both worker nodes (the head has no CPU), and one of them was lost mid-run
    assert out["train_nodes_before_kill"] == sorted(out["worker_nodes"]), out
    assert out["checkpoints_before_kill"] >= 3
    training = out["training"]
    # the registered model comes from a worker group that resumed from a checkpoint, not from round 0
    assert 0 < training["resumed_from"] < training["rounds"] == TRAIN_ROUNDS, training


@pytest.mark.reliability
def test_worker_node_lost_mid_tune(cluster_runs: tuple[dict[str, Any], Path], ray_session: None) -> None:
    """A worker node is removed while a Tune trial is mid-fit on it. The pipeline completes, the
    trial that died with its node was retried, and the snapshot id is the one an undisturbed
    snapshot of the same data gets."""
    out, workdir = cluster_runs[0]["tune_node_loss"], cluster_runs[1] / "tune"
    assert "error" not in out or out["error"] is None, out["error"]
    assert out["status"] == "succeeded" and out["model"] == "breast-cancer:v1", out
    assert out["removed"]["step"].endswith("train ...") and out["removed"]["busy"] is True, out["removed"]
    # (ray.nodes() may still list the removed node as alive until the GCS health check notices:
    # the retried trial below is the evidence that its work was lost)
    assert all(t["error"] is None for t in out["trials"]), out["trials"]
    assert sum(t["failures"] for t in out["trials"]) >= 1, out["trials"]  # the trial on the lost node was retried

    # the same data snapshotted undisturbed (on this session's Ray) gets the same content id
    from raymlops.data.snapshot import create_snapshot
    from raymlops.data.sources import read_source
    from raymlops.store.home import Store

    undisturbed = create_snapshot(Store.open(workdir / "clean"), read_source(str(workdir / "source"), "parquet"),
                                  str(workdir / "source"))
    assert undisturbed.id == out["snapshot"]
