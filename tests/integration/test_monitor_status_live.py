"""``raymlops monitor status`` against a running monitor actor on the session's Ray."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ROUTE = "status-live-test"


@pytest.fixture
def drifted_monitor(ray_session: None) -> Iterator[Any]:
    """A monitor that has closed two windows of drifted rows (feature ``b``) and holds 200 rows
    of a third one."""
    import ray

    from raymlops.monitor import build_reference
    from raymlops.monitor.lifecycle import start_monitor, stop_monitor
    from raymlops.ray_session import NAMESPACE

    rng = np.random.default_rng(21)
    reference = build_reference({n: rng.normal(size=5_000) for n in ("a", "b", "c")})
    handle = start_monitor(ROUTE, reference, {"window_rows": 500, "alerts": {"log": False}}, NAMESPACE,
                           detached=False)
    try:
        X = rng.normal(size=(1_200, 3))
        X[:, 1] += 2.0
        assert ray.get(handle.ingest.remote(X, (X[:, 0] > 0).astype(int))) == 1_200
        yield handle
    finally:
        stop_monitor(ROUTE, NAMESPACE)


def test_status_json_shows_the_window_scores_and_alerts(drifted_monitor: Any, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import ray

    from raymlops.cli import main

    monkeypatch.setenv("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    assert main(["monitor", "status", "--name", ROUTE, "--json"]) == 0
    st = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["monitors"][ROUTE]
    assert st["rows_total"] == 1_200 and st["windows_closed"] == 2
    w = st["window"]
    assert (w["index"], w["rows"], w["window_rows"]) == (2, 200, 500)
    cols = {c["column"]: c for c in w["verdict"]["overall"]["columns"]}
    assert set(cols) == {"a", "b", "c"}
    assert cols["b"]["drift"] is True and cols["b"]["test"] == "ks" and cols["b"]["statistic"] > 0.5
    assert cols["b"]["p_value"] < 1e-10 and cols["a"]["drift"] is False and cols["a"]["p_value"] > 1e-3
    last = st["last_window"]
    assert last["index"] == 1 and last["rows"] == 500 and "b" in last["overall"]["drifted"]
    kinds = {(a["kind"], a["key"]) for a in st["alerts"]["recent"]}
    assert ("feature_drift", "feature_drift:b:all") in kinds
    assert all(a["window"] in (0, 1) for a in st["alerts"]["recent"])
    assert st["alerts"]["totals"]["feature_drift"] >= 1


def test_status_text_from_another_process(drifted_monitor: Any) -> None:
    """The console script's path: a fresh driver joins the cluster through RAY_ADDRESS."""
    import ray

    env = {**os.environ, "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    done = subprocess.run([sys.executable, "-m", "raymlops.cli", "monitor", "status"], capture_output=True,
                          text=True, timeout=180, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith(f"{ROUTE}:"))
    assert lines[head] == f"{ROUTE}: 1200 rows, window #2 with 200 rows"
    rows = {line.split()[0]: line.split() for line in lines[head + 1: head + 4]}
    assert set(rows) == {"a", "b", "c"}
    assert rows["b"][1] == "ks" and rows["b"][-1] == "DRIFT" and rows["a"][-1] != "DRIFT"
    assert float(rows["b"][2]) > 0.5 and float(rows["b"][3].removeprefix("p=")) < 1e-10
    alerts = [line for line in lines[head:] if line.strip().startswith("alert [feature_drift]")]
    assert alerts and "b drifted in slice all" in alerts[0]
    assert "(window #" in alerts[0] and " UTC) " in alerts[0], alerts[0]  # which window, and when
    missing = subprocess.run([sys.executable, "-m", "raymlops.cli", "monitor", "status", "--name", "nope"],
                             capture_output=True, text=True, timeout=180, cwd=ROOT, env=env)
    assert missing.returncode == 2 and "no monitor for deployment 'nope'" in missing.stderr
