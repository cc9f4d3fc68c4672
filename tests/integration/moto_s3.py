"""An S3-compatible server (moto, server mode) on loopback for the tests that keep data or artifacts
in object storage; pyarrow's S3 filesystem reaches it over HTTP."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pyarrow.fs as pafs

from tests.ports import free_port

BUCKET = "raymlops-test"


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """A moto server on 127.0.0.1; yields its ``host:port``."""
    port = free_port()
    log = open(os.devnull, "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=log, stderr=log)
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
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@contextlib.contextmanager
def s3_bucket() -> Iterator[dict[str, Any]]:
    """A moto server with :data:`BUCKET`, and fresh credentials set in this process's environment
    for as long as it runs (put back after). Yields the endpoint, the credentials and a pyarrow
    filesystem on it."""
    creds = {
        "AWS_ACCESS_KEY_ID": "AKIA" + secrets.token_hex(8).upper(),
        "AWS_SECRET_ACCESS_KEY": secrets.token_hex(20),
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",  # never look for an instance role off loopback
    }
    saved = {k: os.environ.get(k) for k in creds}
    os.environ.update(creds)
    try:
        with moto_server() as endpoint:
            fs = pafs.S3FileSystem(endpoint_override=endpoint, scheme="http", allow_bucket_creation=True)
            fs.create_dir(BUCKET)
            yield {"endpoint": endpoint, "creds": creds, "fs": fs}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def root_uri(s3: dict[str, Any], prefix: str) -> str:
    """An artifact root in the bucket, the endpoint in the URI (credentials never are)."""
    return f"s3://{BUCKET}/{prefix}?endpoint_override={s3['endpoint']}&scheme=http"


def bucket_keys(s3: dict[str, Any], prefix: str) -> list[str]:
    """Every file under ``prefix`` in the bucket, relative to it, sorted."""
    fs = s3["fs"]
    return sorted(i.path.removeprefix(f"{BUCKET}/{prefix}/")
                  for i in fs.get_file_info(pafs.FileSelector(f"{BUCKET}/{prefix}", recursive=True))
                  if i.type == pafs.FileType.File)
