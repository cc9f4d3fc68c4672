"""Artifact storage behind a small interface, chosen by URI scheme (local path, s3://, hdfs://).

Everything goes through :mod:`pyarrow.fs`, so a root of ``s3://bucket/prefix`` or
``hdfs://namenode/path`` works the same way as a local folder. Writes are staged: a new object
appears under its final name only when it is complete (local: atomic rename; object stores: the
manifest is written last and metadata only points at committed paths).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs

from raymlops.exceptions import ConfigError, IntegrityError, NotFound

_CHUNK = 1 << 20


def resolve_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """``(filesystem, path)`` for a URI or local path; local paths become absolute."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except (OSError, ValueError) as exc:  # ArrowInvalid is a ValueError
        raise ConfigError(f"{uri}: cannot open this storage URI: {exc}") from None
    return fs, path


class ArtifactStore:
    """Files under one root URI, addressed by relative POSIX keys (``models/ab12/model.joblib``)."""

    def __init__(self, root: str) -> None:
        self.root_uri = root
        self.fs, self.root = resolve_filesystem(root)
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)
        self.fs.create_dir(self.root, recursive=True)

    # -- paths ---------------------------------------------------------------------------
    def path(self, key: str) -> str:
        """Filesystem path of ``key``; refuses keys that would escape the root."""
        norm = posixpath.normpath(key)
        if norm.startswith("../") or norm == ".." or norm.startswith("/"):
            raise NotFound(f"{key!r} is outside the artifact store")
        return posixpath.join(self.root, norm)

    def uri(self, key: str) -> str:
        """A URI for ``key`` that :func:`resolve_filesystem` opens again (for Ray workers)."""
        if self.is_local:
            return self.path(key)
        scheme = self.root_uri.split("://", 1)[0]
        return f"{scheme}://{self.path(key)}"

    # -- reading -------------------------------------------------------------------------
    def exists(self, key: str) -> bool:
        return self.fs.get_file_info(self.path(key)).type != pafs.FileType.NotFound

    def read_bytes(self, key: str) -> bytes:
        try:
            with self.fs.open_input_stream(self.path(key)) as f:
                return f.read()
        except FileNotFoundError:
            raise NotFound(f"artifact {key!r} not found under {self.root_uri}") from None

    def sha256(self, key: str) -> str:
        h = hashlib.sha256()
        try:
            with self.fs.open_input_stream(self.path(key)) as f:
                while chunk := f.read(_CHUNK):
                    h.update(chunk)
        except FileNotFoundError:
            raise NotFound(f"artifact {key!r} not found under {self.root_uri}") from None
        return h.hexdigest()

    def verify(self, key: str, expected_sha256: str) -> None:
        actual = self.sha256(key)
        if actual != expected_sha256:
            raise IntegrityError(
                f"artifact {key!r} was changed: sha256 {actual[:12]}… != recorded {expected_sha256[:12]}…"
            )

    def list_files(self, key: str) -> Iterator[tuple[str, int]]:
        """``(relative key, size)`` of every file below ``key``, sorted."""
        base = self.path(key)
        sel = pafs.FileSelector(base, recursive=True, allow_not_found=True)
        infos = sorted(
            (i for i in self.fs.get_file_info(sel) if i.type == pafs.FileType.File), key=lambda i: i.path
        )
        for info in infos:
            rel = posixpath.relpath(info.path, self.root)
            yield rel, int(info.size or 0)

    # -- writing -------------------------------------------------------------------------
    def write_bytes(self, key: str, data: bytes) -> str:
        """Write ``data`` to ``key`` atomically (temp name then rename on local disks); sha256."""
        path = self.path(key)
        self.fs.create_dir(posixpath.dirname(path), recursive=True)
        if self.is_local:
            tmp = f"{path}.tmp-{uuid.uuid4().hex}"
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        else:
            with self.fs.open_output_stream(path) as f:
                f.write(data)
        return hashlib.sha256(data).hexdigest()

    def staging_key(self, kind: str) -> str:
        """A fresh staging folder key; nothing else ever writes there."""
        return f"staging/{kind}-{uuid.uuid4().hex}"

    def promote(self, staging: str, final: str) -> bool:
        """Move a complete staging folder to ``final``. False if ``final`` already exists
        (content-addressed: identical content), in which case the staging folder is removed."""
        src, dst = self.path(staging), self.path(final)
        if self.exists(final):
            self.delete(staging)
            return False
        self.fs.create_dir(posixpath.dirname(dst), recursive=True)
        if self.is_local:
            try:
                os.rename(src, dst)  # atomic on one filesystem; fails if dst appeared meanwhile
            except OSError:
                if self.exists(final):
                    self.delete(staging)
                    return False
                raise
        else:
            # object stores have no rename: copy, manifest last, so readers never see a
            # manifest without its data files
            files = sorted(self.list_files(staging), key=lambda f: f[0].endswith("manifest.json"))
            for rel, _ in files:
                sub = posixpath.relpath(rel, staging)
                self.fs.copy_file(self.path(rel), posixpath.join(dst, sub))
            self.delete(staging)
        return True

    def delete(self, key: str) -> None:
        path = self.path(key)
        info = self.fs.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(path)
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(path)
