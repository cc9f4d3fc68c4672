"""Artifacts in object storage: an S3-compatible server (moto, server mode) on loopback, reached
through pyarrow's S3 filesystem over HTTP. Credentials come from the environment only.

The pipeline runs in a ``raymlops run`` subprocess with its own local Ray: Ray workers and Serve
replicas inherit their environment from the process that starts Ray, and the session's Ray was
started without these credentials (as a cluster's nodes get theirs from their own environment).
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs
import pytest
import yaml

from raymlops import ConfigError, IntegrityError, Store
from raymlops.cli import main
from raymlops.store.artifacts import ArtifactStore, resolve_filesystem

from .conftest import ROOT, free_port

pytestmark = pytest.mark.integration

BUCKET = "raymlops-test"


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, Any]]:
    """A moto S3 server on 127.0.0.1 with one bucket; yields the endpoint and the credentials."""
    port = free_port()
    log = open(os.devnull, "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=log)
    creds = {
        "AWS_ACCESS_KEY_ID": "AKIA" + secrets.token_hex(8).upper(),
        "AWS_SECRET_ACCESS_KEY": secrets.token_hex(20),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",  # never look for an instance role off loopback
    }
    saved = {k: os.environ.get(k) for k in creds}
    os.environ.update(creds)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("moto server did not start") from None
                time.sleep(0.2)
        fs = pafs.S3FileSystem(endpoint_override=f"127.0.0.1:{port}", scheme="http", allow_bucket_creation=True)
        fs.create_dir(BUCKET)
        yield {"endpoint": f"127.0.0.1:{port}", "creds": creds, "fs": fs}
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def root_uri(s3: dict[str, Any], prefix: str) -> str:
    return f"s3://{BUCKET}/{prefix}?endpoint_override={s3['endpoint']}&scheme=http"


# ------------------------------------------------------------------ the artifact store on S3


def test_artifact_store_contract_on_s3(s3: dict[str, Any]) -> None:
    arts = ArtifactStore(root_uri(s3, "contract"))
    assert not arts.is_local and arts.root == f"{BUCKET}/contract"
    sha = arts.write_bytes("k/a.bin", b"payload")
    assert arts.exists("k/a.bin") and not arts.exists("k/b.bin")
    assert arts.read_bytes("k/a.bin") == b"payload" and arts.sha256("k/a.bin") == sha
    arts.verify("k/a.bin", sha)
    arts.write_bytes("k/a.bin", b"changed")
    with pytest.raises(IntegrityError, match="k/a.bin"):
        arts.verify("k/a.bin", sha)
    arts.write_bytes("k/sub/c.bin", b"ccc")
    assert list(arts.list_files("k")) == [("k/a.bin", 7), ("k/sub/c.bin", 3)]

    # a URI for one key reopens from anywhere (Ray workers, Serve replicas): the endpoint travels
    uri = arts.uri("k/a.bin")
    assert uri == f"s3://{BUCKET}/contract/k/a.bin?endpoint_override={s3['endpoint']}&scheme=http"
    fs, path = resolve_filesystem(uri)
    with fs.open_input_stream(path) as f:
        assert f.read() == b"changed"

    arts.delete("k/sub")
    arts.delete("k/a.bin")
    assert list(arts.list_files("k")) == []


def test_promote_copies_manifest_last_and_completes_a_half_copy(s3: dict[str, Any]) -> None:
    arts = ArtifactStore(root_uri(s3, "promote"))
    for name in ("data/part-0.parquet", "data/part-1.parquet", "manifest.json"):
        arts.write_bytes(f"staging/one/{name}", name.encode())
    assert arts.promote("staging/one", "snapshots/x") is True
    assert [k for k, _ in arts.list_files("snapshots/x")] == [
        "snapshots/x/data/part-0.parquet", "snapshots/x/data/part-1.parquet", "snapshots/x/manifest.json"]
    assert list(arts.list_files("staging")) == []

    # same content again: nothing copied, staging dropped
    arts.write_bytes("staging/two/manifest.json", b"manifest.json")
    arts.write_bytes("staging/two/data/part-0.parquet", b"data/part-0.parquet")
    arts.write_bytes("staging/two/data/part-1.parquet", b"data/part-1.parquet")
    assert arts.promote("staging/two", "snapshots/x") is False
    assert list(arts.list_files("staging")) == []

    # a copy that died before the manifest: the next promote completes it
    arts.delete("snapshots/x/manifest.json")
    arts.write_bytes("staging/three/manifest.json", b"manifest.json")
    arts.write_bytes("staging/three/data/part-0.parquet", b"data/part-0.parquet")
    arts.write_bytes("staging/three/data/part-1.parquet", b"data/part-1.parquet")
    assert arts.promote("staging/three", "snapshots/x") is True
    assert arts.read_bytes("snapshots/x/manifest.json") == b"manifest.json"


def test_endpoint_from_aws_endpoint_url(s3: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{s3['endpoint']}")
    arts = ArtifactStore(f"s3://{BUCKET}/by-env")  # no options in the URI: pyarrow reads the variable
    sha = arts.write_bytes("x.bin", b"through AWS_ENDPOINT_URL")
    assert s3["fs"].get_file_info(f"{BUCKET}/by-env/x.bin").size == 24
    assert arts.sha256("x.bin") == sha and arts.uri("x.bin") == f"s3://{BUCKET}/by-env/x.bin"


def test_credentials_in_the_uri_are_refused_without_echoing_them(s3: dict[str, Any]) -> None:
    secret = s3["creds"]["AWS_SECRET_ACCESS_KEY"]
    key_id = s3["creds"]["AWS_ACCESS_KEY_ID"]
    with pytest.raises(ConfigError, match="environment") as exc:
        ArtifactStore(f"s3://{key_id}:{secret}@{BUCKET}/x?endpoint_override={s3['endpoint']}&scheme=http")
    assert secret not in str(exc.value) and key_id not in str(exc.value)
    with pytest.raises(ConfigError, match="credential"):
        ArtifactStore(f"s3://{BUCKET}/x?endpoint_override={s3['endpoint']}&scheme=http&secret_key={secret}")


def test_missing_bucket_is_a_config_error(s3: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="no-such-bucket"):
        ArtifactStore(f"s3://no-such-bucket/x?endpoint_override={s3['endpoint']}&scheme=http")


# ------------------------------------------------------------------ the pipeline on S3


def test_pipeline_with_artifacts_on_s3(
    s3: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    cfg["serve"]["port"] = free_port()  # serving on: the replica loads the model from S3 (hash checked)
    cfg["train"]["candidates"] = [{"estimator": "sklearn.linear_model.LogisticRegression", "scale": True,
                                   "params": {"C": 1.0, "max_iter": 2000}}]
    config = tmp_path / "quickstart.yaml"
    config.write_text(yaml.safe_dump(cfg))
    home = tmp_path / "home"
    root = root_uri(s3, "pipeline")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(s3["creds"], RAYMLOPS_HOME=str(home), RAYMLOPS_ARTIFACT_ROOT=root)
    proc = subprocess.run([sys.executable, "-m", "raymlops.cli", "run", str(config), "--json"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=480)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["gate"] == "passed" and result["model"] == "breast-cancer:v1"
    # every step ran (smoke: the replica answered), but data_drift: a first run has no reference
    assert [s["status"] for s in result["steps"]] == ["ran"] * 4 + ["skipped"] + ["ran"] * 7

    # everything landed in the bucket, nothing in the home folder but metadata
    fs = s3["fs"]
    keys = sorted(i.path.removeprefix(f"{BUCKET}/pipeline/")
                  for i in fs.get_file_info(pafs.FileSelector(f"{BUCKET}/pipeline", recursive=True))
                  if i.type == pafs.FileType.File)
    snap = result["snapshot"]
    assert f"snapshots/{snap}/manifest.json" in keys
    assert any(k.startswith(f"snapshots/{snap}/data/part-") for k in keys)
    assert any(k.startswith("models/breast-cancer/") and k.endswith("/model.joblib") for k in keys)
    assert not any(k.startswith("staging/") for k in keys)
    assert not (home / "artifacts").exists()

    # read back in this process: snapshot verify, model verify, and the model with its hash check
    monkeypatch.setenv("RAYMLOPS_ARTIFACT_ROOT", root)
    assert main(["snapshot", "verify", "latest", "--home", str(home)]) == 0
    assert main(["models", "verify", "breast-cancer:v1", "--home", str(home)]) == 0
    from raymlops.registry import get_model, load_model

    store = Store.open(home)
    version = get_model(store, "breast-cancer@champion")
    assert version.artifact_key in keys
    model = load_model(store, version)
    assert model.predict(np.zeros((1, 30))).shape == (1,)

    # credentials are nowhere in what raymlops kept or printed
    creds = [s3["creds"]["AWS_SECRET_ACCESS_KEY"], s3["creds"]["AWS_ACCESS_KEY_ID"]]
    with store.metadata.read() as conn:
        runs = [r[0] for r in conn.execute("SELECT record_json FROM runs")]
        audit_rows = [r[0] for r in conn.execute("SELECT record_json FROM audit")]
        models = [r[0] for r in conn.execute("SELECT record_json FROM models")]
    assert runs and audit_rows and models
    for secret in creds:
        for text in (*runs, *audit_rows, *models, proc.stdout, proc.stderr):
            assert secret not in text
        for path in home.rglob("*"):  # metadata.db, its WAL, Tune's folders
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path

    # tampering in the bucket is caught: snapshot verify names the file, the model refuses to load
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
