"""Artifact storage behind a small interface, chosen by URI scheme (local path, s3://, hdfs://).

Everything goes through :mod:`pyarrow.fs`, so a root of ``s3://bucket/prefix`` or
``hdfs://namenode/path`` works the same way as a local folder. Writes are staged: a new object
appears under its final name only when it is complete (local: atomic rename; object stores: the
manifest is written last and metadata only points at committed paths).

Object stores: options travel in the URI's query string, e.g. an S3-compatible server with
``s3://bucket/prefix?endpoint_override=127.0.0.1:9000&scheme=http`` (or ``AWS_ENDPOINT_URL``).
Credentials never do: they come from the environment of every process that touches artifacts
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, a profile, an instance role), because the root
URI is stored in run records and handed to Ray workers and Serve replicas. A URI that carries
credentials is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pyarrow.fs as pafs

from raymlops.exceptions import ConfigError, IntegrityError, NotFound, RaymlopsError

_CHUNK = 1 << 20
#: a staging folder (or half-written temporary file) untouched this long was left by a crash (``raymlops doctor``)
DEFAULT_STAGING_GRACE_S = 3600.0


class StorageError(RaymlopsError, OSError):
    """The artifact root refused a write (disk full, permission denied, read-only): the message
    names the root, the key and the operating system's reason; nothing half-written is left."""


def storage_error(what: str, where: str, exc: OSError) -> StorageError:
    """A :class:`StorageError` ``cannot <what> <where>: <reason>`` for ``exc`` (also a Ray task's
    OSError, whose text carries the worker's traceback: only the reason is kept)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, OSError):
        exc = cause
    if exc.errno:
        reason = os.strerror(exc.errno)
    else:
        lines = (exc.strerror or str(exc)).strip().splitlines()
        reason = lines[-1] if lines else type(exc).__name__
    err = StorageError(f"cannot {what} {where}: {reason}")
    err.errno = exc.errno
    return err


#: option names (of a source or a filesystem) that hold credentials: their values are secret
SECRET_WORDS = ("key", "secret", "token", "password", "credential", "ticket")


def is_secret_option(name: str) -> bool:
    return any(word in name.lower() for word in SECRET_WORDS)


_SECRET_PARAMS = ("key", "secret", "token", "password", "credential")


def _refuse_credentials(uri: str) -> None:
    """ConfigError (naming the URI without its secret) when credentials are embedded in it."""
    parts = urlsplit(uri)
    if "@" in parts.netloc:
        shown = f"{parts.scheme}://***@{parts.netloc.rsplit('@', 1)[1]}{parts.path}"
        raise ConfigError(
            f"{shown}: credentials in a storage URI would be stored in run records and sent to every Ray "
            "worker; remove them and set them in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
            "or a profile / instance role)"
        )
    for name, _ in parse_qsl(parts.query, keep_blank_values=True):
        if any(word in name.lower() for word in _SECRET_PARAMS):
            raise ConfigError(
                f"{parts.scheme}://{parts.netloc}{parts.path}: the URI option {name!r} looks like a credential; "
                "set credentials in the environment instead"
            )


def resolve_filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """``(filesystem, path)`` for a URI or local path; local paths become absolute."""
    if "://" not in uri:
        return pafs.LocalFileSystem(), str(Path(uri).expanduser().resolve())
    _refuse_credentials(uri)
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
        if self.fs.type_name not in ("s3", "gcs"):
            try:
                self.fs.create_dir(self.root, recursive=True)
            except OSError as exc:
                raise storage_error("create the artifact root", root, exc) from None
        else:
            # object stores have no real folders; check that the bucket is there and reachable
            bucket = self.root.split("/", 1)[0]
            try:
                found = self.fs.get_file_info(bucket).type != pafs.FileType.NotFound
            except OSError as exc:
                raise ConfigError(f"{root}: cannot reach this artifact root: {exc}") from None
            if not found:
                raise ConfigError(f"{root}: bucket {bucket!r} does not exist; create it first")

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
        parts = urlsplit(self.root_uri)
        query = f"?{parts.query}" if parts.query else ""  # endpoint_override, scheme, region …
        return f"{parts.scheme}://{self.path(key)}{query}"

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
        """IntegrityError unless the file's sha256 is ``expected_sha256`` (streamed, not held)."""
        _check_sha256(key, self.sha256(key), expected_sha256)

    def read_verified(self, key: str, expected_sha256: str, what: str | None = None) -> bytes:
        """The file's bytes, read once, after their sha256 matched ``expected_sha256``: the one
        way a recorded file is read (a model artifact about to be unpickled through
        ``raymlops.registry.spec.load_artifact``, which the registry, reproduce and Serve replicas
        load through; a snapshot's manifest and profile; a stored drift report; a check that loads
        nothing, like deploy's, streams the file through :meth:`verify`). NotFound if missing,
        IntegrityError if changed; with ``what`` (e.g. ``"snapshot 1a2b…: manifest.json"``), a
        missing file is an IntegrityError too (it was recorded), and both messages name ``what``."""
        try:
            data = self.read_bytes(key)
        except NotFound:
            if what is None:
                raise
            raise IntegrityError(f"{what}: missing") from None
        actual = hashlib.sha256(data).hexdigest()
        if what is not None and actual != expected_sha256:
            raise IntegrityError(f"{what}: changed (sha256 {actual[:12]}… != recorded {expected_sha256[:12]}…)")
        _check_sha256(key, actual, expected_sha256)
        return data

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
        if self.is_local:
            tmp = f"{path}.tmp-{uuid.uuid4().hex}"
            try:
                self.fs.create_dir(posixpath.dirname(path), recursive=True)
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            except OSError as exc:  # disk full, permission denied: leave nothing half-written behind
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise storage_error("write", f"{key!r} under {self.root_uri}", exc) from None
        else:  # an object appears whole when the upload completes; no folders to create
            with self.fs.open_output_stream(path) as f:
                f.write(data)
        return hashlib.sha256(data).hexdigest()

    def staging_key(self, kind: str) -> str:
        """A fresh staging folder key; nothing else ever writes there."""
        return f"staging/{kind}-{uuid.uuid4().hex}"

    def promote(self, staging: str, final: str) -> bool:
        """Move a complete staging folder to ``final``. False if ``final`` already exists
        (content-addressed: identical content), in which case the staging folder is removed."""
        if not self.is_local:
            return self._promote_by_copy(staging, final)
        src, dst = self.path(staging), self.path(final)
        if self.exists(final):
            self.delete(staging)
            return False
        self.fs.create_dir(posixpath.dirname(dst), recursive=True)
        try:
            os.rename(src, dst)  # atomic on one filesystem; fails if dst appeared meanwhile
        except OSError:
            if self.exists(final):
                self.delete(staging)
                return False
            raise
        return True

    def _promote_by_copy(self, staging: str, final: str) -> bool:
        """Object stores have no rename: copy server-side, ``manifest.json`` last, so a reader
        never sees a manifest without its data files. ``final`` counts as present only when it
        holds every staged file at its size, so a copy that died half-way is completed, not kept."""
        files = [(posixpath.relpath(rel, staging), size) for rel, size in self.list_files(staging)]
        if not files:
            raise NotFound(f"staging folder {staging!r} is empty or missing under {self.root_uri}")
        present = {posixpath.relpath(rel, final): size for rel, size in self.list_files(final)}
        if all(present.get(sub) == size for sub, size in files):
            self.delete(staging)
            return False
        for sub, _ in sorted(files, key=lambda f: (f[0].endswith("manifest.json"), f[0])):
            self.fs.copy_file(self.path(f"{staging}/{sub}"), self.path(f"{final}/{sub}"))
        self.delete(staging)
        return True

    def delete(self, key: str) -> None:
        path = self.path(key)
        info = self.fs.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(path)
        elif info.type == pafs.FileType.File:
            self.fs.delete_file(path)


def _check_sha256(key: str, actual: str, expected: str) -> None:
    if actual != expected:
        raise IntegrityError(f"artifact {key!r} was changed: sha256 {actual[:12]}… != recorded {expected[:12]}…")
