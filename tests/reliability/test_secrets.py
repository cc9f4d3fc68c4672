"""Secrets from the config (``data.options`` credentials, literal or ``${ENV}``) and from the
environment never appear in what raymlops prints, stores (SQLite, its WAL, artifacts) or audits,
also when the run fails on them (the source is an S3 endpoint on a closed loopback port)."""

from __future__ import annotations

import secrets
import sqlite3
import subprocess
import sys
from pathlib import Path

import yaml

from tests.reliability.conftest import free_port
from tests.reliability.faults import ROOT, clean_env


def test_credentials_from_config_and_environment_are_never_kept_or_printed(tmp_path: Path) -> None:
    literal = "LITERAL" + secrets.token_hex(12)
    from_env = "FROMENV" + secrets.token_hex(12)
    aws_env = "AWSENV" + secrets.token_hex(12)
    cfg = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    cfg["data"]["source"] = f"s3://bucket/data.parquet?endpoint_override=127.0.0.1:{free_port()}&scheme=http"
    cfg["data"]["options"] = {"access_key": "AKIA" + literal[:8], "secret_key": literal,
                              "session_token": "${REL_TOKEN}", "region": "us-east-1"}
    cfg["serve"]["enabled"] = False
    config = tmp_path / "secret.yaml"
    config.write_text(yaml.safe_dump(cfg))
    home = tmp_path / "home"
    env = clean_env(REL_TOKEN=from_env, AWS_SECRET_ACCESS_KEY=aws_env, AWS_ACCESS_KEY_ID="AKIA" + aws_env[:8],
                    AWS_EC2_METADATA_DISABLED="true")
    proc = subprocess.run([sys.executable, "-m", "raymlops.cli", "run", str(config), "--home", str(home), "--json"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode in (1, 2), (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "127.0.0.1" in proc.stdout + proc.stderr  # the error names the endpoint it could not reach
    kept = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.name == "metadata.db" for p in kept)
    with sqlite3.connect(home / "metadata.db") as conn:
        runs = [r[0] for r in conn.execute("SELECT record_json FROM runs")]
        assert runs, "the failed run is recorded"
    for secret in (literal, from_env, aws_env):
        assert secret not in proc.stdout and secret not in proc.stderr
        for path in kept:  # metadata.db and its WAL (runs, steps, logs, audit), any artifact
            assert secret.encode() not in path.read_bytes(), path
