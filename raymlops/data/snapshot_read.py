"""Reading a committed snapshot back: as one Arrow table, as a Ray Dataset, or its stored profile.

Every read checks the snapshot's files against its manifest first (sha256 and size, see
:func:`raymlops.data.snapshot.verify_snapshot`): a changed or lost file is an
:class:`IntegrityError` naming it, never a silently different table.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raymlops.data.blocks import canonical_table
from raymlops.data.snapshot import (
    PROFILE_FILE,
    REPAIR_HINT,
    SnapshotInfo,
    load_manifest,
    resolve_snapshot,
    snapshot_info,
    verify_snapshot,
)
from raymlops.data.snapshot_write import id_hasher
from raymlops.exceptions import IntegrityError
from raymlops.stats.partial import row_keys
from raymlops.stats.profile import Profile
from raymlops.store.home import Store

if TYPE_CHECKING:
    import ray.data


def _verified_manifest(store: Store, snap_id: str) -> dict[str, Any]:
    problems = verify_snapshot(store, snap_id)
    if problems:
        raise IntegrityError(f"snapshot {snap_id[:12]} is corrupted: " + "; ".join(problems) + REPAIR_HINT)
    return load_manifest(store, snap_id)


def _data_files(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in manifest["files"] if f["path"].startswith("data/")]


def read_snapshot(store: Store, ref: str) -> tuple[SnapshotInfo, pa.Table]:
    """The snapshot as one Arrow table, after checking every file against the manifest."""
    snap_id = resolve_snapshot(store, ref)
    manifest = _verified_manifest(store, snap_id)
    tables = []
    for f in _data_files(manifest):
        with store.artifacts.fs.open_input_file(store.artifacts.path(f"snapshots/{snap_id}/{f['path']}")) as fh:
            tables.append(pq.read_table(fh))
    table = pa.concat_tables(tables) if tables else pa.table({})
    if table.num_rows != manifest["rows"]:
        raise IntegrityError(f"snapshot {snap_id[:12]}: {table.num_rows} rows read, manifest says {manifest['rows']}")
    return snapshot_info(store, snap_id), table


def content_problems(store: Store, ref: str) -> list[str]:
    """A deep check: the rows of the snapshot's files hashed again, as its id was made (here, one
    file at a time; no Ray). The manifest's sha256s only say the files are the ones it lists: one who
    changes a file and its manifest (and the manifest's hash in SQLite) keeps those, not the id,
    which the audit log chains. Empty when the rows are the id's; the file checks' problems first."""
    snap_id = resolve_snapshot(store, ref)
    problems = verify_snapshot(store, snap_id)
    if problems:
        return problems
    manifest = load_manifest(store, snap_id)
    hasher = None
    rows = 0
    for f in _data_files(manifest):
        with store.artifacts.fs.open_input_file(store.artifacts.path(f"snapshots/{snap_id}/{f['path']}")) as fh:
            table = canonical_table(pq.read_table(fh))
        hasher = hasher or id_hasher(table.schema)
        hasher.update(np.ascontiguousarray(row_keys(table), dtype="<u8").tobytes())
        rows += table.num_rows
    if hasher is None or hasher.hexdigest() != snap_id or rows != manifest["rows"]:
        found = hasher.hexdigest()[:12] if hasher is not None else "no rows"
        return [f"rows: hashed again they are {found}, not {snap_id[:12]} ({rows} rows): the data was changed "
                "and its manifest rewritten to match"]
    return []


def snapshot_dataset(store: Store, ref: str) -> ray.data.Dataset:
    """The snapshot as a Ray Dataset (files read by Ray workers, in order), after checking every
    file against the manifest; :class:`IntegrityError` names a changed or lost file."""
    import ray.data

    snap_id = resolve_snapshot(store, ref)
    manifest = _verified_manifest(store, snap_id)
    paths = [store.artifacts.path(f"snapshots/{snap_id}/{f['path']}") for f in _data_files(manifest)]
    if not paths:
        return ray.data.from_arrow(pa.table({}))
    return ray.data.read_parquet(paths, filesystem=store.artifacts.fs)


def load_profile(store: Store, ref: str) -> Profile:
    """The snapshot's stored profile (hash-checked); every snapshot has one."""
    snap_id = resolve_snapshot(store, ref)
    manifest = load_manifest(store, snap_id)
    entry = next((f for f in manifest["files"] if f["path"] == PROFILE_FILE), None)
    if entry is None:
        raise IntegrityError(f"snapshot {snap_id[:12]} is corrupted: its manifest lists no {PROFILE_FILE}")
    key = f"snapshots/{snap_id}/{PROFILE_FILE}"
    data = store.artifacts.read_verified(key, entry["sha256"], f"snapshot {snap_id[:12]} is corrupted: {PROFILE_FILE}")
    return Profile.from_dict(json.loads(data))
