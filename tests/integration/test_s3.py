"""The artifact store in object storage: an S3-compatible server (moto, server mode) on loopback,
reached through pyarrow's S3 filesystem over HTTP. Credentials come from the environment only.

A whole pipeline with its artifacts in the bucket runs in ``test_job_submit``: Ray workers and Serve
replicas inherit their environment from the process that starts Ray, and the session's Ray was
started without these credentials, as a cluster's nodes get theirs from their own environment; the
``ray start`` cluster of that test is started with them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from raymlops import ConfigError, IntegrityError
from raymlops.store.artifacts import ArtifactStore, resolve_filesystem

from .moto_s3 import BUCKET, root_uri, s3_bucket

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def s3() -> Iterator[dict[str, Any]]:
    """A moto S3 server on 127.0.0.1 with one bucket; yields the endpoint and the credentials."""
    with s3_bucket() as bucket:
        yield bucket


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
