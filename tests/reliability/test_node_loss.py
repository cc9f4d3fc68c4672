"""Fault 1: a worker node of a three-node Ray (``ray.cluster_utils.Cluster``) is removed while a
Tune trial runs on it. The pipeline completes, the snapshot id is the one an undisturbed
snapshot of the same data gets, and the trial that died with its node was retried.

The cluster needs its own Ray, so the run happens in ``node_loss_driver.py`` (a separate process);
``benchmarks/reliability.py`` also removes a node mid-ETL and compares with an undisturbed run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.reliability.faults import ROOT, clean_env


def test_worker_node_lost_mid_tune(tmp_path: Path, ray_local: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "tests.reliability.node_loss_driver", str(tmp_path), "tune", "2"],
                          capture_output=True, text=True, env=clean_env(), cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
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

    undisturbed = create_snapshot(Store.open(tmp_path / "clean"), read_source(str(tmp_path / "source"), "parquet"),
                                  str(tmp_path / "source"))
    assert undisturbed.id == out["snapshot"]
