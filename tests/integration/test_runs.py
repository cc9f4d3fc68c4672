"""Run history and error reporting on real Ray: a failure inside a Ray Data transform, a Tune
trial and a Serve replica's start-up is recorded with the user's exception and traceback, the
terminal gets one paragraph, and a fixed run resumes from the step cache. The commands run in
this process (test_cli_run.py has the subprocess smoke test)."""

from __future__ import annotations

import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from raymlops import StepFailed, Store, parse_config, run_pipeline, stop_serving
from raymlops.cli import main
from raymlops.data.snapshot import list_snapshots
from raymlops.pipeline.history import get_run, list_runs
from raymlops.registry import list_models

from .conftest import ROOT, free_port

pytestmark = pytest.mark.integration

USERFNS = "tests.integration.userfns"
RAY_DUMP = ("Traceback", "ray::", "RayTaskError", "UserCodeException", 'File "')


def config_dict(**data: Any) -> dict[str, Any]:
    """The quickstart with one quick candidate, serving off (tests turn on what they need)."""
    cfg = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    cfg["data"].update(data)
    cfg["serve"].update({"enabled": False, "port": free_port()})
    cfg["train"]["candidates"] = [{"estimator": "sklearn.linear_model.LogisticRegression", "scale": True,
                                   "params": {"C": 1.0, "max_iter": 2000}}]
    return cfg


def write(tmp_path: Path, cfg: dict[str, Any], name: str = "pipeline.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def statuses(record: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in record["steps"]}


def paragraph(stderr: str) -> str:
    """The failure paragraph: from 'error: run' to the end."""
    assert "error: run " in stderr, stderr[-3000:]
    return stderr[stderr.index("error: run "):]


def run_id_of(text: str) -> str:
    m = re.search(r"raymlops runs show (\S+)", text)
    assert m, text
    return m.group(1)


def test_cli_failure_in_a_ray_data_transform_is_one_paragraph_and_a_full_record(
    ray_session: None, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's batch function raising on the Ray Data workers, through `raymlops run` (in this
    process, on the session's Ray: test_cli_run.py runs the command as a fresh process)."""
    home = tmp_path / "home"
    config = write(tmp_path, config_dict(transforms=[{"map_batches": f"{USERFNS}:add_ratio"},
                                                     {"map_batches": f"{USERFNS}:explode"}]))
    monkeypatch.setenv("RAYMLOPS_HOME", str(home))
    monkeypatch.chdir(tmp_path)
    capfd.readouterr()
    assert main(["run", config]) == 1
    out, err = capfd.readouterr()  # what reached the terminal, from this process and any it started
    text = paragraph(err)
    assert text.startswith("error: run ") and "failed at step 'ingest'" in text
    assert f"data.transforms[1].map_batches ({USERFNS}:explode) raised" in " ".join(text.split())
    assert "ValueError: negative radius in a batch of 569 rows" in " ".join(text.split())
    assert "userfns.py:" in text and "in explode" in text
    assert "Fix that function of data.transforms" in " ".join(text.split())
    assert not any(marker in err for marker in RAY_DUMP), err
    assert len(text.strip().splitlines()) <= 6 and "\n\n" not in text.strip()
    assert out == ""
    run_id = run_id_of(text)

    # the record, through `raymlops runs show --json` (no Ray needed to read it)
    assert main(["runs", "show", run_id, "--json", "--home", str(home)]) == 0
    record = json.loads(capfd.readouterr().out)
    assert record["run"] == run_id and record["status"] == "failed"
    error = record["error"]
    assert error["step"] == "ingest" and error["type"] == "ValueError" and error["remote"] is True
    assert "negative radius" in error["message"]
    assert "userfns.py" in error["traceback"] and "raise ValueError" in error["traceback"]
    assert "UserCodeException" not in error["traceback"]  # the user's part, not Ray's wrapper
    assert any("[1/12] ingest ..." in line for line in error["log_tail"])
    assert statuses(record) == {"ingest": "failed"} | {s: "skipped" for s in (
        "schema", "validate", "snapshot", "data_drift", "train", "evaluate", "gate", "register", "deploy", "smoke",
        "monitor")}
    ingest = record["steps"][0]
    assert ingest["cache_key"] and ingest["inputs"]["transforms"][1] == {"map_batches": f"{USERFNS}:explode"}
    assert record["who"]["user"] and record["who"]["host"] and record["who"]["pid"] == os.getpid()
    assert record["where"]["ray_address"] and record["where"]["job_id"]
    assert record["where"]["under_job_submit"] is False
    assert re.fullmatch(r"[0-9a-f]{64}", record["config_hash"])
    assert [t["map_batches"] for t in record["config"]["data"]["transforms"]] == [f"{USERFNS}:add_ratio",
                                                                                  f"{USERFNS}:explode"]
    assert record["code"]  # git commit or package version

    # the logs and the listing
    assert main(["runs", "logs", run_id, "--step", "ingest", "--home", str(home)]) == 0
    logs = capfd.readouterr().out
    assert f"== {run_id} ingest ==" in logs and "[1/12] ingest ..." in logs
    assert "ray.data" in logs  # Ray Data's own error lines went to the step log, not the terminal
    assert main(["runs", "list", "--status", "failed", "--json", "--home", str(home)]) == 0
    listed = json.loads(capfd.readouterr().out)
    assert [r["run"] for r in listed] == [run_id] and listed[0]["failed_step"] == "ingest"
    assert main(["runs", "list", "--status", "succeeded", "--json", "--home", str(home)]) == 0
    assert json.loads(capfd.readouterr().out) == []

    # nothing the failed run half-produced looks like a result
    store = Store.open(home)
    assert list_snapshots(store) == [] and list_models(store) == []
    assert list(store.artifacts.list_files("staging")) == []
    with store.metadata.read() as conn:
        assert conn.execute("SELECT COUNT(*) FROM step_cache").fetchone()[0] == 0


def test_unimportable_transform_is_a_config_error_exit_2(ray_session: None, tmp_path: Path, capsys) -> None:
    home = str(tmp_path / "home")
    config = write(tmp_path, config_dict(transforms=[{"map_batches": f"{USERFNS}:add_ratio"},
                                                     {"map_batches": "tests.integration.no_such_module:fn"}]))
    assert main(["run", config, "--home", home]) == 2
    err = capsys.readouterr().err
    text = " ".join(paragraph(err).split())
    assert "failed at step 'ingest'" in text and "ConfigError: data.transforms[1].map_batches" in text
    assert "no_such_module" in text and "importable" in text
    assert "Traceback" not in err
    record = get_run(Store.open(home).metadata, run_id_of(err))
    assert record["error"]["type"] == "ConfigError" and record["error"]["exit_code"] == 2

    config = write(tmp_path, config_dict(transforms=[{"map_batches": f"{USERFNS}:not_a_frame"}]), "frame.yaml")
    assert main(["run", config, "--home", home]) == 1
    text = " ".join(paragraph(capsys.readouterr().err).split())
    assert f"TypeError: data.transforms[0].map_batches: {USERFNS}:not_a_frame returned dict" in text


def test_tune_trial_failure_then_fixed_config_resumes_from_the_cache(
    ray_session: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the code version is the package's, not the developer's git state
    home = str(tmp_path / "home")
    good = config_dict(transforms=[{"map_batches": f"{USERFNS}:add_ratio"}])
    bad = json.loads(json.dumps(good))
    bad["train"]["candidates"] = [{"estimator": f"{USERFNS}.FitRaises", "params": {"C": [0.5, 1.0]}}]
    lines: list[str] = []
    with pytest.raises(StepFailed) as info:
        run_pipeline(parse_config(bad), home=home, progress=lines.append)
    exc = info.value
    failure = exc.failure  # type: ignore[attr-defined]
    assert exc.step == "train" and "ray::" not in str(exc) and len(str(exc)) < 300
    assert failure.type == f"{USERFNS}.TrialBoom" and failure.message == "fit exploded on purpose"
    assert failure.remote and failure.context.startswith("every Tune trial failed")
    assert "userfns.py" in failure.traceback and "raise TrialBoom" in failure.traceback
    assert failure.where is not None and "in fit" in failure.where
    store = Store.open(home)
    record = get_run(store.metadata, exc.run_id)  # type: ignore[attr-defined]
    assert record["status"] == "failed" and record["error"]["step"] == "train"
    assert statuses(record) == {"ingest": "ran", "schema": "ran", "validate": "ran", "snapshot": "ran",
                                "data_drift": "skipped", "train": "failed", "evaluate": "skipped", "gate": "skipped",
                                "register": "skipped",
                                "deploy": "skipped", "smoke": "skipped", "monitor": "skipped"}
    assert list_models(store) == []  # the failed run registered nothing
    snap = record["steps"][3]["outputs"]["snapshot"]
    assert record["steps"][0]["rows"] == 569 and record["steps"][3]["bytes"] > 0

    fixed = run_pipeline(parse_config(good), home=home, progress=lines.append).to_dict()
    assert [s["status"] for s in fixed["steps"]] == ["cached"] * 4 + ["skipped"] + ["ran"] * 4 + ["skipped"] * 3
    assert fixed["snapshot"] == snap and fixed["model"] == "breast-cancer:v1"
    assert fixed["steps"][0]["cache_key"] == record["steps"][0]["cache_key"]
    assert "radius_to_texture" in get_run(store.metadata, fixed["run"])["steps"][1]["outputs"]["features"]

    again = run_pipeline(parse_config(good), home=home, progress=lines.append).to_dict()
    assert [s["status"] for s in again["steps"]] == ["cached"] * 4 + ["skipped"] + ["cached"] * 4 + ["skipped"] * 3
    assert again["model"] == "breast-cancer:v1" and again["model_metrics"] == fixed["model_metrics"]
    assert [v.id for v in list_models(store)] == ["breast-cancer:v1"]  # reused, not registered again

    fresh = run_pipeline(parse_config(good), home=home, progress=lines.append, use_cache=False).to_dict()
    assert [s["status"] for s in fresh["steps"][:9]] == ["ran", "ran", "ran", "cached", "skipped", "ran", "ran",
                                                         "ran", "ran"]
    assert fresh["model"] == "breast-cancer:v2"  # the snapshot is content-addressed: same data, same id
    runs = list_runs(store.metadata)
    assert [r["status"] for r in runs] == ["succeeded", "succeeded", "succeeded", "failed"]
    assert "Traceback" not in "\n".join(lines)


def test_serve_replica_startup_failure_then_resume_and_port_in_use(
    ray_session: None, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ray import serve

    serve.shutdown()  # runs that start Serve themselves (the last one on a port another program holds)
    monkeypatch.chdir(tmp_path)
    home = str(tmp_path / "home")
    marker = tmp_path / "weights-corrupt"
    marker.write_text("the replica refuses to load the model while this file exists")
    cfg = config_dict()
    cfg["serve"]["enabled"] = True
    cfg["train"]["candidates"] = [{"estimator": f"{USERFNS}.FailsToLoad", "scale": True,
                                   "params": {"marker": str(marker)}}]
    config = write(tmp_path, cfg)
    try:
        assert main(["run", config, "--home", home]) == 1
        err = capsys.readouterr().err
        text = " ".join(paragraph(err).split())
        assert "failed at step 'deploy': the Serve replica failed to start: RuntimeError: cannot restore this " \
               "model: weights-corrupt says the weights are corrupt" in text
        assert "in __setstate__" in text and "Serve replica" in text and "reused from the cache" in text
        assert not any(marker_ in err for marker_ in RAY_DUMP), err
        store = Store.open(home)
        record = get_run(store.metadata, run_id_of(err))
        error = record["error"]
        assert error["step"] == "deploy" and error["type"] == "RuntimeError" and error["remote"]
        assert "__setstate__" in error["traceback"] and "raise RuntimeError" in error["traceback"]
        assert "The deployment failed to start" not in error["traceback"]  # the user's part only
        assert error["wrapper"].startswith("ServeError: deployment of breast-cancer:v1 failed")
        assert statuses(record) == {"ingest": "ran", "schema": "ran", "validate": "ran", "snapshot": "ran",
                                    "data_drift": "skipped", "train": "ran", "evaluate": "ran", "gate": "ran",
                                    "register": "ran", "deploy": "failed",
                                    "smoke": "skipped", "monitor": "skipped"}

        marker.unlink()  # the user fixed the cause
        assert main(["run", config, "--home", home]) == 0
        out = capsys.readouterr()
        assert "8 steps reused from the cache" in out.out
        record = get_run(store.metadata, "latest")
        assert statuses(record) == {"ingest": "cached", "schema": "cached", "validate": "cached",
                                    "snapshot": "cached", "data_drift": "skipped", "train": "cached",
                                    "evaluate": "cached", "gate": "cached",
                                    "register": "cached", "deploy": "ran", "smoke": "ran", "monitor": "ran"}
        assert record["model"] == "breast-cancer:v1" and [v.id for v in list_models(store)] == ["breast-cancer:v1"]
        smoke = record["steps"][10]
        assert smoke["rows"] == 117 and smoke["outputs"]["answered_by"] == "breast-cancer:v1"

        # a known cause: the port is taken by another program
        with socket.socket() as blocker:
            blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            deadline = time.monotonic() + 30
            while True:  # the proxy of the run before lets go of the port shortly after shutdown
                try:
                    blocker.bind(("127.0.0.1", cfg["serve"]["port"]))
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            blocker.listen()
            assert main(["run", config, "--home", home]) == 1
        captured = capsys.readouterr()
        text = " ".join(paragraph(captured.err).split())
        assert "failed at step 'deploy'" in text and "Set serve.port" in text
        # the second run's Serve shut down without Ray's "(raylet) Task ServeController.graceful_shutdown
        # failed. There are infinite retries remaining ..." (printed on the driver's stdout, a moment later)
        assert "graceful_shutdown" not in captured.out + out.out, captured.out
        assert "is in use" in text or "Failed to bind to address" in text  # raymlops' check, or Serve's proxy
    finally:
        stop_serving(parse_config(cfg))


def test_a_candidate_whose_trials_partly_fail_is_said_with_the_count_and_the_params(
        ray_session: None, tmp_path: Path) -> None:
    """The warning said "the LogisticRegression trials failed" when 1 of its 2 had, without the params
    that failed (penalty l1, which the lbfgs solver refuses)."""
    cfg = config_dict()
    cfg["train"]["max_concurrent_trials"] = 1
    cfg["train"]["max_failures"] = 0
    cfg["train"]["candidates"] = [{"estimator": "sklearn.linear_model.LogisticRegression", "scale": True,
                                   "params": {"penalty": ["l2", "l1"], "solver": "lbfgs", "max_iter": 2000}}]
    lines: list[str] = []
    result = run_pipeline(parse_config(cfg), home=str(tmp_path / "home"), progress=lines.append)
    assert result.status == "succeeded"
    (warning,) = [line for line in lines if line.startswith("warning: train:")]
    assert warning.startswith("warning: train: 1 of the 2 LogisticRegression trials failed (the first with params "
                              "{'max_iter': 2000, 'penalty': 'l1', 'solver': 'lbfgs'}): ValueError: "), warning
