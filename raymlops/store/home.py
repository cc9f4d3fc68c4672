"""The raymlops home: ``--home``, else ``$RAYMLOPS_HOME``, else ``./.raymlops``.

It holds ``metadata.db`` (SQLite) and, unless ``$RAYMLOPS_ARTIFACT_ROOT`` or the ``artifact_root``
argument names another pyarrow.fs URI (``s3://…``, ``hdfs://…``), the ``artifacts/`` folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from raymlops.exceptions import ConfigError, NotFound
from raymlops.store.artifacts import ArtifactStore, storage_error
from raymlops.store.metadata import MetadataStore

DEFAULT_HOME = ".raymlops"


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
        root = artifact_root or os.environ.get("RAYMLOPS_ARTIFACT_ROOT") or str(path / "artifacts")
        return cls(home=path, metadata=MetadataStore(path / "metadata.db"), artifacts=ArtifactStore(root))
