"""Step cache: a step's outputs keyed by a fingerprint of everything its result depends on.

A re-run whose inputs did not change reuses what the last successful run produced instead of
doing the work again (ingest: the source's files, sizes and mtimes, and the transforms' code;
train…register: the snapshot id, the train and gate sections, the code version and the seed).
Only successful steps are written, so a failed run never leaves an entry that looks like a
result. Entries point at immutable things (snapshot ids, model versions); the runner checks
that those still exist before trusting an entry. No Ray here.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

import pyarrow.fs as pafs

from raymlops.data.sources import source_filesystem
from raymlops.store.metadata import MetadataStore

CACHE_VERSION = 1


def fingerprint(step: str, inputs: Any) -> str:
    """sha256 of the step name, the cache format version and the canonical JSON of ``inputs``."""
    canon = json.dumps({"step": step, "v": CACHE_VERSION, "inputs": inputs}, sort_keys=True,
                       separators=(",", ":"), default=str)
    return hashlib.sha256(canon.encode()).hexdigest()


def source_fingerprint(uri: str, options: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """What identifies the data behind ``uri`` without reading it: every file's relative path,
    size and mtime (for ``sklearn://`` the scikit-learn version). None when it cannot be listed
    (missing, no permission) or is produced by code (``callable:``): the step then runs, and
    reports any problem itself. ``options`` (``data.options``) open the filesystem; they are
    not part of the result."""
    if uri.startswith("sklearn://"):
        from importlib.metadata import version

        return {"uri": uri, "sklearn": version("scikit-learn")}
    if "://" not in uri and ":" in uri.split("/", 1)[0]:  # callable:module:function and the like
        return None

    try:
        fs, path = source_filesystem(uri, options)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            infos = [info]
        elif info.type == pafs.FileType.Directory:
            infos = [i for i in fs.get_file_info(pafs.FileSelector(path, recursive=True))
                     if i.type == pafs.FileType.File]
        else:
            return None
    except (OSError, ValueError):  # ConfigError is a ValueError
        return None
    files = sorted(
        [i.path.removeprefix(path).lstrip("/") or i.base_name, int(i.size or 0), int(i.mtime_ns or 0)] for i in infos
    )
    return {"uri": uri, "files": files}


class StepCache:
    """The ``step_cache`` table: ``cache_key`` → the outputs of the run that produced them."""

    def __init__(self, metadata: MetadataStore, clock: Callable[[], float] = time.time) -> None:
        self.metadata = metadata
        self.clock = clock

    def get(self, key: str) -> dict[str, Any] | None:
        with self.metadata.read() as conn:
            row = conn.execute("SELECT run_id, outputs_json FROM step_cache WHERE cache_key = ?", (key,)).fetchone()
        if row is None:
            return None
        outputs: dict[str, Any] = json.loads(row["outputs_json"])
        return outputs | {"_run": row["run_id"]}

    def put(self, key: str, step: str, run_id: str, outputs: dict[str, Any]) -> None:
        with self.metadata.transaction() as conn:
            conn.execute(
                "INSERT INTO step_cache(cache_key, step, run_id, created_at, outputs_json) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(cache_key) DO UPDATE SET run_id = excluded.run_id, created_at = excluded.created_at,"
                " outputs_json = excluded.outputs_json",
                (key, step, run_id, self.clock(), json.dumps(outputs, sort_keys=True, default=str)),
            )

    def forget(self, key: str) -> None:
        with self.metadata.transaction() as conn:
            conn.execute("DELETE FROM step_cache WHERE cache_key = ?", (key,))
