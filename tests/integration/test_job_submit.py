"""``ray job submit -- raymlops run`` against a ``ray start --head`` cluster with token auth on, its
artifacts in object storage (an S3-compatible server, moto, on loopback) as a cluster keeps them:
the nodes get the credentials from their own environment, the job the artifact root.

How the cluster is stopped, and why not with ``ray stop``: in Ray 2.60 ``ray stop`` takes no
address or temp dir; it kills every Ray process of this user on the machine, matched by process
name. That would also kill this test session's own Ray (``ray_session``) and anybody else's.
So the head is started with ``--block`` and its own ``--temp-dir``: ``ray start --block`` stays
in the foreground, and on SIGTERM its shutdown hook kills exactly the processes that node
started (GCS, raylet, dashboard, agents; workers, Serve replicas and the job driver exit with
their raylet). ``RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S=0`` skips the 30 s Serve drain. Anything
still running afterwards is found by the unique temp dir in its command line and killed by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from raymlops import IntegrityError, Store
from raymlops.cli import main
from raymlops.serve.deploy import http_json
from tests.ports import free_ports

from .conftest import ROOT, quickstart_data
from .moto_s3 import BUCKET, bucket_keys, root_uri, s3_bucket

pytestmark = pytest.mark.integration

EXCLUDES = [".git", ".raymlops", "benchmarks/out", "*.egg-info", "__pycache__", ".mypy_cache", ".ruff_cache",
            ".pytest_cache", ".venv"]


def ray_cli() -> str:
    beside = Path(sys.executable).with_name("ray")
    found = str(beside) if beside.exists() else shutil.which("ray")
    assert found, "the `ray` command is not installed"
    return found


def processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains ``text`` (Linux /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(entry.name))
    return pids


def last_json_line(text: str) -> dict[str, Any]:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                parsed: dict[str, Any] = json.loads(line)
                return parsed
            except ValueError:
                continue
    raise AssertionError(f"no JSON line in the job output:\n{text[-3000:]}")


def stop_head(head: subprocess.Popen[bytes], temp_dir: str) -> list[int]:
    """SIGTERM the blocking `ray start`; returns the pids that had to be killed afterwards."""
    if head.poll() is None:
        head.send_signal(signal.SIGTERM)
        try:
            head.wait(timeout=90)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait(timeout=10)
    deadline = time.monotonic() + 15
    left = processes_mentioning(temp_dir)
    while left and time.monotonic() < deadline:  # workers notice their raylet is gone within seconds
        time.sleep(0.5)
        left = processes_mentioning(temp_dir)
    for pid in left:  # ours: the unique temp dir is in their command line
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


@pytest.fixture()
def s3() -> Iterator[dict[str, Any]]:
    """A moto S3 server with one bucket; its credentials are in this process's environment meanwhile."""
    with s3_bucket() as bucket:
        yield bucket


def test_job_submit_runs_quickstart_and_deployment_outlives_the_job(
        tmp_path: Path, s3: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    gcs, dash, client, agent_http, agent_grpc, metrics, env_agent, node_mgr, obj_mgr, serve_port = free_ports(10)
    # short: Ray's unix sockets live below it (108-byte limit)
    temp_dir = tempfile.mkdtemp(prefix="rmjob", dir="/tmp")
    token = secrets.token_hex(32)
    # the head's environment holds the bucket's credentials (``s3``), as a cluster node's would
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAYMLOPS_HOME", "RAYMLOPS_ARTIFACT_ROOT", "RAY_AUTH_TOKEN_PATH")}
    assert env["AWS_SECRET_ACCESS_KEY"] == s3["creds"]["AWS_SECRET_ACCESS_KEY"]
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token, RAY_USAGE_STATS_ENABLED="0",
               RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")

    cfg = quickstart_data()
    cfg["serve"]["port"] = serve_port
    config = tmp_path / "quickstart.yaml"
    config.write_text(yaml.safe_dump(cfg))
    home = tmp_path / "home"

    ray = ray_cli()
    head_log = open(tmp_path / "head.log", "wb")  # noqa: SIM115 - closed in finally
    head = subprocess.Popen(
        [ray, "start", "--head", "--block", f"--port={gcs}", f"--dashboard-port={dash}",
         "--dashboard-host=127.0.0.1", f"--ray-client-server-port={client}",
         f"--dashboard-agent-listen-port={agent_http}", f"--dashboard-agent-grpc-port={agent_grpc}",
         f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={env_agent}",
         f"--node-manager-port={node_mgr}", f"--object-manager-port={obj_mgr}",
         "--num-cpus=2", "--disable-usage-stats", f"--temp-dir={temp_dir}"],
        env=env, stdout=head_log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    killed: list[int] = []
    try:
        # token auth is on: the dashboard refuses a request without the token
        deadline = time.monotonic() + 90
        status: Any = None
        while time.monotonic() < deadline and head.poll() is None:
            try:
                status, _ = http_json("GET", f"http://127.0.0.1:{dash}/api/version", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        assert status == 401, f"dashboard answered {status}; head log:\n{(tmp_path / 'head.log').read_text()[-2000:]}"

        root = root_uri(s3, "pipeline")
        runtime_env = {"env_vars": {"RAYMLOPS_HOME": str(home), "RAYMLOPS_ARTIFACT_ROOT": root}, "excludes": EXCLUDES}
        job = subprocess.run(
            [ray, "job", "submit", "--address", f"http://127.0.0.1:{dash}", "--working-dir", str(ROOT),
             "--runtime-env-json", json.dumps(runtime_env), "--", "raymlops", "run", str(config), "--json"],
            env=env, capture_output=True, text=True, timeout=480,
        )
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        assert "succeeded" in job.stdout + job.stderr
        result = last_json_line(job.stdout)
        assert result["status"] == "succeeded" and result["gate"] == "passed"
        # every step ran (smoke: the replica answered, having loaded the model from the bucket with
        # its hash checked), but data_drift: a first run has no reference
        assert [s["status"] for s in result["steps"]] == ["ran"] * 4 + ["skipped"] + ["ran"] * 7
        endpoint = result["endpoint"]
        assert endpoint == f"http://127.0.0.1:{serve_port}/breast-cancer"

        # the job has ended; the deployment (and its detached monitor) keep going
        status, health = http_json("GET", f"{endpoint}/health")
        assert status == 200 and health["model_version"] == "breast-cancer:v1"
        status, meta = http_json("GET", f"{endpoint}/metadata")
        assert status == 200
        status, body = http_json("POST", f"{endpoint}/predict", meta["input_example"])
        assert status == 200 and body["predictions"][0] in (0, 1)
        assert (home / "metadata.db").is_file()  # the registry outlived the job's working dir

        # `raymlops status` against this cluster: version, replicas, the monitor's verdict
        st = subprocess.run(
            [sys.executable, "-m", "raymlops.cli", "status", "--address", f"127.0.0.1:{gcs}", "--json",
             "--home", str(home)],
            env=env, capture_output=True, text=True, timeout=120,
        )
        assert st.returncode == 0, st.stderr[-3000:]
        report = json.loads(st.stdout.strip().splitlines()[-1])
        assert report["cluster"]["connected"] and report["cluster"]["nodes_alive"] == 1
        (app,) = report["deployments"]
        assert app["app"] == "breast-cancer" and app["status"] == "RUNNING"
        assert app["version"] == "breast-cancer:v1" and app["traffic"] == {"breast-cancer:v1": 100}
        assert app["replicas_running"] == app["replicas_target"] == 1
        assert app["monitor"]["rows"] >= 117 and app["monitor"]["features"] == 30
        assert [a["model"] for a in report["aliases"]] == ["breast-cancer:v1"]
        assert report["audit"]["ok"] and report["audit"]["recent"][-1]["action"] == "deployment.created"

        # `raymlops retrain watch` joins the same cluster (token auth) and reads the live monitor
        cfg["retrain"] = {"enabled": True, "interval_s": 0.5}
        watch_config = tmp_path / "watch.yaml"
        watch_config.write_text(yaml.safe_dump(cfg))
        cli_env = dict(env, RAY_ADDRESS=f"127.0.0.1:{gcs}")
        watch = subprocess.run(
            [sys.executable, "-m", "raymlops.cli", "--home", str(home), "retrain", "watch", str(watch_config),
             "--duration", "2"], env=cli_env, capture_output=True, text=True, timeout=120,
        )
        assert watch.returncode == 0, watch.stdout[-2000:] + watch.stderr[-2000:]
        seen = re.search(r"watching the monitor of /breast-cancer \((\d+) rows seen", watch.stdout)
        assert seen and int(seen.group(1)) >= 117, watch.stdout[-2000:]
        cfg["name"] = "nobody-serves-this"
        watch_config.write_text(yaml.safe_dump(cfg))
        lost = subprocess.run(
            [sys.executable, "-m", "raymlops.cli", "--home", str(home), "retrain", "watch", str(watch_config),
             "--duration", "2"], env=cli_env, capture_output=True, text=True, timeout=120,
        )
        assert lost.returncode == 1 and "no monitor for /nobody-serves-this" in lost.stderr, lost.stderr[-2000:]

        _artifacts_in_the_bucket(s3, home, result["snapshot"], job.stdout + job.stderr, monkeypatch, capsys)
    finally:
        killed = stop_head(head, temp_dir)
        head_log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert head.returncode is not None
    with pytest.raises(OSError):  # the cluster is gone, and the deployment with it
        http_json("GET", f"http://127.0.0.1:{serve_port}/breast-cancer/health", timeout=2)
    assert killed == [], f"processes outlived `ray start --block`: {killed}"


def _artifacts_in_the_bucket(s3: dict[str, Any], home: Path, snap: str, printed: str,
                             monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Everything the job stored landed in the bucket (nothing in the home folder but metadata), reads
    back here with its hashes checked, and catches tampering; the credentials are nowhere raymlops
    kept or printed."""
    keys = bucket_keys(s3, "pipeline")
    assert f"snapshots/{snap}/manifest.json" in keys
    assert any(k.startswith(f"snapshots/{snap}/data/part-") for k in keys)
    assert any(k.startswith("models/breast-cancer/") and k.endswith("/model.joblib") for k in keys)
    assert not any(k.startswith("staging/") for k in keys)
    assert not (home / "artifacts").exists()

    # read back in this process: snapshot verify, model verify, and the model with its hash check
    monkeypatch.setenv("RAYMLOPS_ARTIFACT_ROOT", root_uri(s3, "pipeline"))
    assert main(["snapshot", "verify", "latest", "--home", str(home)]) == 0
    assert main(["models", "verify", "breast-cancer:v1", "--home", str(home)]) == 0
    from raymlops.registry import get_model, load_model

    store = Store.open(home)
    version = get_model(store, "breast-cancer@champion")
    assert version.artifact_key in keys
    assert load_model(store, version).predict(np.zeros((1, 30))).shape == (1,)

    creds = [s3["creds"]["AWS_SECRET_ACCESS_KEY"], s3["creds"]["AWS_ACCESS_KEY_ID"]]
    with store.metadata.read() as conn:
        kept = {table: [r[0] for r in conn.execute(f"SELECT record_json FROM {table}")]  # noqa: S608
                for table in ("runs", "audit", "models")}
    assert all(kept.values()), {table: len(rows) for table, rows in kept.items()}
    for secret in creds:
        for text in (*kept["runs"], *kept["audit"], *kept["models"], printed):
            assert secret not in text
        for path in home.rglob("*"):  # metadata.db, its WAL, Tune's folders
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path

    # tampering in the bucket is caught: snapshot verify names the file, the model refuses to load
    fs = s3["fs"]
    part = next(k for k in keys if k.startswith(f"snapshots/{snap}/data/part-"))
    with fs.open_output_stream(f"{BUCKET}/pipeline/{part}") as f:
        f.write(b"not parquet any more")
    capsys.readouterr()
    assert main(["snapshot", "verify", "latest", "--home", str(home)]) == 1
    assert f"{part.rsplit('/', 1)[-1]}: changed" in capsys.readouterr().out
    with fs.open_output_stream(f"{BUCKET}/pipeline/{version.artifact_key}") as f:
        f.write(b"swapped")
    with pytest.raises(IntegrityError, match="model.joblib"):
        load_model(store, version)
