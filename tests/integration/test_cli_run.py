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
from typing import Any

import pytest
import yaml

from raymlops.serve.deploy import http_json

from .conftest import ROOT, free_port, quickstart_data

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
        # Ctrl-C while clients wait for answers: every request sent before it is answered
        load = _Clients(f"{endpoint}/predict", meta["input_example"])
        load.wait_for(20)
    finally:
        stopped_at = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            rest, err = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        finally:
            if "load" in locals():
                load.stop()
    assert proc.returncode == 0, err[-2000:]
    before = [outcome for started, outcome in load.outcomes if started < stopped_at]
    assert len(before) >= 20 and set(before) == {"200"}, [o for o in before if o != "200"][:5]
    # and after it, until the port closed: answered (200, or 404 once the app is gone), or refused;
    # never dropped after the server read it without closing (RemoteDisconnected). A reset is counted
    # with the refusals: a connection the kernel queued in the instant the listener closed, or one
    # HAProxy held as it exited, is reset (2 runs in about 12); the requests sent before Ctrl-C are
    # all answered (above), and the README's shutdown figures are about those
    after = {outcome for started, outcome in load.outcomes if started >= stopped_at}
    assert after <= {"200", "404", "ConnectionRefusedError", "ConnectionResetError"}, after
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
    # the audit log says the route is gone (it ended at deployment.created: still deployed, by the log)
    from raymlops.audit import records
    from raymlops.store.home import Store

    last = [r for r in records(Store.open(tmp_path / "home").metadata) if r.action.startswith("deployment.")][-1]
    assert last.action == "deployment.deleted" and last.record["ids"]["deployment"] == "breast-cancer", last
    assert "--serve was stopped" in last.record["reason"]


class _Clients:
    """Four threads sending /predict requests, a new connection each (as a browser or curl would),
    until stopped; each request's start time and outcome (its status, or the connection error)."""

    def __init__(self, url: str, body: object) -> None:
        import threading

        self.url, self.body, self.outcomes = url, body, []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(4)]
        for t in self._threads:
            t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                status, _ = http_json("POST", self.url, self.body, timeout=30)
                outcome = str(status)
            except OSError as exc:  # urllib's URLError wraps what the socket said (refused, reset, ...)
                reason = getattr(exc, "reason", None)
                outcome = type(reason if isinstance(reason, BaseException) else exc).__name__
            self.outcomes.append((started, outcome))
            if outcome != "200":  # refused once the server stops: no need to hammer it
                time.sleep(0.2)

    def wait_for(self, n: int, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.outcomes) < n and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=40)


@pytest.mark.parametrize(("key", "value", "named"), [
    ("estimator", "sklearn.linear_model.NoSuchModel", ["NoSuchModel", "train.candidates[0].estimator"]),
    ("params", {"Cc": [0.1, 1.0], "max_iter": 2000}, ["train.candidates[0].params", "did you mean 'C' (not 'Cc')"]),
    ("source", "sklearn://breast_cancr", ["data.source", "sklearn://breast_cancr", "breast_cancer"]),
])
def test_cli_bad_config_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], key: str,
                                               value: Any, named: list[str]) -> None:
    """Found before any step runs (before ingest and snapshot: nothing stored), not when the step
    that uses it comes (a misspelled hyperparameter or dataset name was found after ingest)."""
    from raymlops.cli import main

    config = tmp_path / "bad.yaml"
    cfg = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    if key == "source":
        cfg["data"]["source"] = value
    else:
        cfg["train"]["candidates"][0][key] = value
    config.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(config), "--json", "--home", str(tmp_path / "home")]) == 2
    err = capsys.readouterr().err
    assert all(n in " ".join(err.split()) for n in named), err  # (the message is wrapped)
    assert "Traceback" not in err and "[1/" not in err
    assert not (tmp_path / "home" / "artifacts").exists() or not any((tmp_path / "home" / "artifacts").iterdir())


def test_cli_run_progress_shows_ray_data_and_tune_on_stderr_only(ray_session: None, tmp_path: Path) -> None:
    """On a running cluster (``RAY_ADDRESS``: the session's Ray) as a user's after ``ray start``."""
    import ray

    cfg = quickstart_data()
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
