"""`raymlops run` as a user runs it: a subprocess with its own Ray, real HTTP, Ctrl-C to stop (the
subprocess smoke tests), and a bad config in process (exit 2 before any step runs, nothing stored)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from raymlops.serve.deploy import http_json

from .conftest import ROOT, free_port

pytestmark = pytest.mark.integration


def test_cli_run_json_serve_then_interrupt(tmp_path: Path) -> None:
    port = free_port()
    cfg = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    cfg["serve"]["port"] = port
    config = tmp_path / "quickstart.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAYMLOPS_HOME"] = str(tmp_path / "home")
    proc = subprocess.Popen(
        [sys.executable, "-m", "raymlops.cli", "run", str(config), "--json", "--serve"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # --json --serve: the JSON line comes once the endpoint answers
        result = json.loads(line)
        assert result["gate"] == "passed" and result["model"] == "breast-cancer:v1"
        assert {s["status"] for s in result["steps"] if s["name"] != "data_drift"} == {"ran"}
        assert len(result["snapshot"]) == 64
        endpoint = result["endpoint"]
        assert endpoint == f"http://127.0.0.1:{port}/breast-cancer"
        status, meta = http_json("GET", f"{endpoint}/metadata")
        assert status == 200
        status, body = http_json("POST", f"{endpoint}/predict", meta["input_example"])
        assert status == 200 and body["predictions"][0] in (0, 1)
        status, _ = http_json("POST", f"{endpoint}/predict", {"instances": [{"nope": 1}]})
        assert status == 422
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            rest, err = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, err[-2000:]
    # the JSON line stays the last line on stdout: what Ray prints as Serve shuts down goes to stderr
    assert rest == "", rest[-2000:]
    assert "[12/12] monitor ran" in err
    assert "Traceback" not in err
    assert "== Status ==" not in err and "Running Dataset" not in err  # not a terminal: no Ray progress
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the port is released after Ctrl-C
        try:
            http_json("GET", f"{endpoint}/health", timeout=1)
        except OSError:
            break
        time.sleep(0.5)
    else:
        pytest.fail("the endpoint still answers after Ctrl-C")


def test_cli_bad_config_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from raymlops.cli import main

    config = tmp_path / "bad.yaml"
    cfg = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    cfg["train"]["candidates"][0]["estimator"] = "sklearn.linear_model.NoSuchModel"
    config.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(config), "--json", "--home", str(tmp_path / "home")]) == 2
    err = capsys.readouterr().err
    assert "NoSuchModel" in err and "train.candidates" in err
    assert "Traceback" not in err and "train.candidates[0].estimator" in err
    assert not (tmp_path / "home" / "artifacts").exists() or not any((tmp_path / "home" / "artifacts").iterdir())


def test_cli_run_progress_shows_ray_data_and_tune_on_stderr_only(ray_session: None, tmp_path: Path) -> None:
    """On a running cluster (``RAY_ADDRESS``: the session's Ray) as a user's after ``ray start``."""
    import ray

    cfg = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    cfg["serve"]["enabled"] = False
    config = tmp_path / "quickstart.yaml"
    config.write_text(yaml.safe_dump(cfg))
    env = dict(os.environ, RAY_ADDRESS=ray.get_runtime_context().gcs_address, RAYMLOPS_HOME=str(tmp_path / "home"))
    proc = subprocess.run(
        [sys.executable, "-m", "raymlops.cli", "run", str(config), "--json", "--progress"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["model"] == "breast-cancer:v1" and result["metrics"] is None  # no monitor.metrics_port
    assert all(line.startswith("{") for line in proc.stdout.strip().splitlines())  # stdout: the JSON only
    err = proc.stderr
    # Ray Data's own progress (logged off a terminal) during the data steps (the dataset runs when
    # the schema step first reads it), Tune's table during train
    data_steps = err[err.index("[1/12] ingest ..."):err.index("[4/12] snapshot ran")]
    assert "Running Dataset" in data_steps and "execution finished" in data_steps
    train = err[err.index("[6/12] train ..."):err.index("[6/12] train ran")]
    assert "== Status ==" in train and "4 TERMINATED" in train
