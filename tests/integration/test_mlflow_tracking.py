"""``tracking:`` against a real MLflow server (a subprocess on loopback, SQLite backend): the Tune
trials' params and metrics, the parent run with the snapshot id, the champion in MLflow's model
registry with its raymlops version; and an unreachable server that warns without losing the run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from raymlops import parse_config, run_pipeline
from raymlops.store import Store
from tests.integration.conftest import free_port, quickstart_data

pytestmark = pytest.mark.integration
mlflow = pytest.importorskip("mlflow")


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` on a free 127.0.0.1 port for the session; stopped (its process group) at the end."""
    if shutil.which("mlflow") is None:
        pytest.skip("the mlflow command is not installed")
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--default-artifact-root", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as resp:  # noqa: S310
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mlflow server did not start:\n"
                                   + (root / "server.log").read_text(errors="replace")[-3000:])
            time.sleep(0.5)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        log.close()


def _config(tracking: dict[str, Any], name: str) -> Any:
    data = quickstart_data()
    data["name"] = name
    data["train"]["candidates"] = [{"estimator": "sklearn.linear_model.LogisticRegression", "scale": True,
                                    "params": {"C": [0.1, 1.0], "max_iter": 2000}}]
    data["serve"] = {"enabled": False}
    data["monitor"] = {"enabled": False}
    data["tracking"] = tracking
    return parse_config(data, "test")


def test_trials_parent_run_and_registered_champion_reach_mlflow(
        ray_session: None, mlflow_server: str, tmp_path: Path) -> None:
    from mlflow import MlflowClient

    cfg = _config({"mlflow_uri": mlflow_server, "experiment": "raymlops-it", "register_model": True}, "bc-tracked")
    result = run_pipeline(cfg, home=tmp_path, progress=lambda line: None)
    rec = result.to_dict()
    assert rec["status"] == "succeeded"
    tracking = rec["tracking"]
    assert tracking["status"] == "logged" and tracking["errors"] == [], tracking

    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    exp = client.get_experiment_by_name("raymlops-it")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    parent = client.get_run(tracking["parent_run_id"])
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(trials) == 2  # C in [0.1, 1.0]
    for t in trials:
        assert t.data.params["trial/estimator"] == "sklearn.linear_model.LogisticRegression"
        assert t.data.params["trial/params/C"] in {"0.1", "1.0"}
        assert 0.9 < t.data.metrics["roc_auc"] <= 1.0
        assert t.data.tags["raymlops.run"] == result.run_id
    assert parent.data.params["snapshot_id"] == result.snapshot
    assert parent.data.tags["raymlops.snapshot"] == result.snapshot
    assert parent.data.tags["raymlops.version"] == result.model
    assert parent.data.metrics["roc_auc"] == pytest.approx(result.metrics["roc_auc"])
    assert parent.info.status == "FINISHED"

    registered = tracking["registered_model"]
    assert registered["name"] == "bc-tracked" and registered["raymlops_version"] == result.model
    mv = client.get_model_version("bc-tracked", registered["version"])
    assert mv.tags["raymlops.version"] == result.model
    assert mv.run_id == parent.info.run_id
    names = [a.path for a in client.list_artifacts(parent.info.run_id, "model")]
    assert names == ["model/model.joblib"]
    stored = Store.open(tmp_path)
    from raymlops.registry.registry import get_model

    version = get_model(stored, result.model)
    local = Path(client.download_artifacts(parent.info.run_id, "model/model.joblib", str(tmp_path / "dl")))
    assert local.read_bytes() == stored.artifacts.read_bytes(version.artifact_key)


def test_an_unreachable_server_warns_and_the_run_keeps_its_results(ray_session: None, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    cfg = _config({"mlflow_uri": dead, "register_model": True, "request_timeout_s": 2.0}, "bc-untracked")
    lines: list[str] = []
    t0 = time.perf_counter()
    result = run_pipeline(cfg, home=tmp_path, progress=lines.append)
    rec = result.to_dict()
    assert rec["status"] == "succeeded" and rec["model"] and rec["gate"] == "passed"
    assert rec["tracking"]["status"] == "unavailable"
    assert "could not start the MLflow run" in rec["tracking"]["errors"][0]
    assert any(f"tracking.mlflow_uri {dead}" in line and "training goes on" in line for line in lines)
    from raymlops.pipeline.history import get_run

    stored = get_run(Store.open(tmp_path).metadata, result.run_id)
    assert stored["tracking"]["status"] == "unavailable"
    assert time.perf_counter() - t0 < 300
