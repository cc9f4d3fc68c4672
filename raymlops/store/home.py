"""The raymlops home: ``--home``, else ``$RAYMLOPS_HOME``, else ``./.raymlops``.

It holds ``metadata.db`` (SQLite) and, unless ``$RAYMLOPS_ARTIFACT_ROOT`` or the ``artifact_root``
argument names another pyarrow.fs URI (``s3://…``, ``hdfs://…``), the ``artifacts/`` folder.

A home records where its artifacts are when it is made, as MLflow records an experiment's artifact
location: a later command finds them there without ``$RAYMLOPS_ARTIFACT_ROOT`` (a ``status`` or
``snapshot verify`` of a home whose artifacts are in a bucket had looked in an empty local folder),
and a root that names another place is refused rather than splitting the artifacts over two.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from raymlops.exceptions import ConfigError, NotFound
from raymlops.store.artifacts import ArtifactStore, storage_error
from raymlops.store.metadata import MetadataStore

DEFAULT_HOME = ".raymlops"
#: the ``meta`` key of the home's artifact root: a URI or an absolute path, "" for its own ``artifacts/``
ARTIFACT_ROOT_KEY = "artifact_root"


def existing_home(home: str | Path | None = None) -> Path:
    """The home folder (:func:`resolve_home`), or NotFound (exit 2) when there is none: for commands
    that only read, so a mistyped ``--home`` is said, not answered from a new empty home."""
    path = resolve_home(home)
    if not path.is_dir():
        raise NotFound(f"no raymlops home at {path} (give --home, or set RAYMLOPS_HOME)")
    # a folder, but no home (a home made by `webhooks add` alone has its webhooks.db): not made one by a read
    if not (path / "metadata.db").is_file() and not (path / "webhooks.db").is_file():
        if (path / "artifacts").is_dir():
            raise NotFound(f"{path}: the home's database metadata.db is missing, though its artifacts are there "
                           "(restore metadata.db from a backup; nothing was changed)")
        raise NotFound(f"no raymlops home at {path}: the folder has no metadata.db (give --home, or set "
                       "RAYMLOPS_HOME)")
    db = path / "metadata.db"
    if db.is_file() and db.stat().st_size == 0 and any((path / "artifacts").glob("*/*")):
        # a read would write a new, empty schema into it: the registry, runs and audit chain would
        # read as empty and valid beside the artifacts they described
        raise NotFound(f"{path}: the home's database metadata.db is empty (0 bytes), though its artifacts are "
                       "there (restore metadata.db from a backup; nothing was changed)")
    return path


def resolve_home(home: str | Path | None = None) -> Path:
    chosen = home or os.environ.get("RAYMLOPS_HOME") or DEFAULT_HOME
    return Path(chosen).expanduser().resolve()


@dataclass
class Store:
    """Metadata plus artifacts: everything raymlops keeps, in one place."""

    home: Path
    metadata: MetadataStore = field(repr=False)
    artifacts: ArtifactStore = field(repr=False)

    @classmethod
    def open(cls, home: str | Path | None = None, artifact_root: str | None = None, *, create: bool = True) -> Store:
        """The home at ``home`` (``--home``, else ``RAYMLOPS_HOME``, else ``./.raymlops``), made when
        missing; with ``create`` False (commands that only read), a missing folder is a NotFound
        (exit 2) instead: a mistyped ``--home`` is said, not answered from a new empty home."""
        path = resolve_home(home)
        if path.exists() and not path.is_dir():
            raise ConfigError(f"{path}: the raymlops home must be a folder, and this is a file "
                              "(check --home / RAYMLOPS_HOME)")
        if not create:
            existing_home(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise storage_error("create the raymlops home", str(path), exc) from None
        metadata = MetadataStore(path / "metadata.db")
        given, named = ((artifact_root, "the artifact root given") if artifact_root
                        else (os.environ.get("RAYMLOPS_ARTIFACT_ROOT") or None, "RAYMLOPS_ARTIFACT_ROOT"))
        root, new = _artifact_root(path, metadata, given, named)
        artifacts = ArtifactStore(root)  # an unusable root is said here, before the home records it
        if new is not None:
            with metadata.transaction() as conn:
                conn.execute("INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)", (ARTIFACT_ROOT_KEY, new))
        return cls(home=path, metadata=metadata, artifacts=artifacts)


def recorded_root(home: Path, metadata: MetadataStore, given: str | None, named: str) -> str:
    """The artifact root a home keeps (``given`` checked against it, as :meth:`Store.open` does;
    ConfigError naming both when they differ), recording nothing: for ``doctor``, which opens a
    home without making anything."""
    return _artifact_root(home, metadata, given, named)[0]


def _place(root: str, home: Path) -> str:
    """What a root names, for comparing two spellings: a resolved path, or scheme, host and path of
    a URI (its options, such as an endpoint, may come from the environment instead)."""
    if not root:
        return str(home / "artifacts")
    parts = urlsplit(root)
    if "://" not in root or parts.scheme == "file":
        return str(Path(parts.path if "://" in root else root).expanduser().resolve())
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _artifact_root(home: Path, metadata: MetadataStore, given: str | None, named: str) -> tuple[str, str | None]:
    """The artifact root of ``home`` and, for a new home, what to record: the recorded root, checked
    against ``given`` (the ``artifact_root`` argument or ``$RAYMLOPS_ARTIFACT_ROOT``: ``named``), else
    ``given`` or the home's own folder. A home made before roots were recorded, with data in it,
    records nothing and keeps taking ``given`` (or its own folder)."""
    own = str(home / "artifacts")
    with metadata.read() as conn:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (ARTIFACT_ROOT_KEY,)).fetchone()
        used = row is None and conn.execute(
            "SELECT EXISTS(SELECT 1 FROM snapshots) OR EXISTS(SELECT 1 FROM models)").fetchone()[0]
    if row is None:
        if used:
            return given or own, None
        place = None if given is None else _place(given, home)
        return given or own, "" if place in (None, own) else given if "://" in str(given) else place
    recorded = str(row[0])
    if given is not None and _place(given, home) != _place(recorded, home):
        raise ConfigError(
            f"{home}: this home keeps its artifacts at {recorded or f'its own folder {own}'} (recorded when it "
            f"was made), but {named} is {given}: unset it to use the home's, or give another --home")
    return given or recorded or own, None
