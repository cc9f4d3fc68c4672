"""Secrets from the config (``data.options`` credentials, literal or ``${ENV}``) and from the
environment never appear in what raymlops prints, stores (SQLite, its WAL, artifacts) or audits,
also when the run fails on them (the source is an S3 endpoint on a closed loopback port)."""

from __future__ import annotations

import secrets
import sqlite3
from pathlib import Path

import pytest
import yaml

from raymlops.cli import main
from tests.reliability.conftest import free_port
from tests.reliability.faults import ROOT


def test_credentials_from_config_and_environment_are_never_kept_or_printed(
    tmp_path: Path, ray_local: str, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str],
) -> None:
    """``raymlops run`` in process on the session's Ray (what the ``raymlops`` command calls), the
    secrets in its environment, its output captured at the file descriptors."""
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
    for name, value in {"REL_TOKEN": from_env, "AWS_SECRET_ACCESS_KEY": aws_env,
                        "AWS_ACCESS_KEY_ID": "AKIA" + aws_env[:8], "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(name, value)
    code = main(["run", str(config), "--home", str(home), "--json"])
    out, err = capfd.readouterr()
    assert code in (1, 2), (code, out[-2000:], err[-2000:])
    assert "Traceback" not in err, err[-3000:]
    assert "127.0.0.1" in out + err  # the error names the endpoint it could not reach
    kept = [p for p in home.rglob("*") if p.is_file()]
    assert any(p.name == "metadata.db" for p in kept)
    with sqlite3.connect(home / "metadata.db") as conn:
        runs = [r[0] for r in conn.execute("SELECT record_json FROM runs")]
        assert runs, "the failed run is recorded"
    for secret in (literal, from_env, aws_env):
        assert secret not in out and secret not in err
        for path in kept:  # metadata.db and its WAL (runs, steps, logs, audit), any artifact
            assert secret.encode() not in path.read_bytes(), path
