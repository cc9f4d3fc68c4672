"""strategy: distributed on a three-node Ray: the two Ray Train workers run on the two worker
nodes; one node is removed mid-training, the run resumes from its last checkpoint on a node that
joins, and the model is registered. The cluster needs its own Ray, so the run happens in
``train_node_loss_driver.py``, a separate process (as test_multinode.py does)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import free_port

pytestmark = pytest.mark.integration

DRIVER = Path(__file__).with_name("train_node_loss_driver.py")


def test_worker_node_lost_mid_training_resumes_and_registers(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAYMLOPS_HOME", "RAYMLOPS_ARTIFACT_ROOT")}
    proc = subprocess.run([sys.executable, str(DRIVER), str(tmp_path), str(free_port())],
                          capture_output=True, text=True, env=env, timeout=540)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "error" not in out, out
    assert out["status"] == "succeeded" and out["model"] == "breast-cancer:v1"
    # training used both worker nodes (the head has no CPU), and one of them was lost mid-run
    assert out["train_nodes_before_kill"] == sorted(out["worker_nodes"]), out
    assert out["checkpoints_before_kill"] >= 3
    training = out["training"]
    # the registered model comes from a worker group that resumed from a checkpoint, not from round 0
    assert 0 < training["resumed_from"] < training["rounds"] == 60, training
