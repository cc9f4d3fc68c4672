"""Immutable, content-addressed snapshots written by Ray Data and committed atomically.

Layout under the artifact root::

    snapshots/<id>/data/part-00000-0.parquet ...
    snapshots/<id>/manifest.json           (written last: schema, rows, files + sha256)

The id is the sha256 of the schema and of the per-row hashes in row order, so identical data
gets the identical id however Ray partitioned it. Data is written into a fresh staging folder,
hashed, given its manifest, and only then moved to ``snapshots/<id>`` and recorded in SQLite.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from raymlops import audit
from raymlops.data.schema import Schema, infer_schema
from raymlops.exceptions import IntegrityError, NotFound, ValidationError
from raymlops.store.home import Store

if TYPE_CHECKING:
    import ray.data

MANIFEST_VERSION = 1


@dataclass(frozen=True)
class SnapshotInfo:
    id: str
    rows: int
    bytes: int
    source: str
    created_at: float
    new: bool
    schema: Schema

    @property
    def short(self) -> str:
        return self.id[:12]


def _row_hashes(batch: pd.DataFrame) -> dict[str, np.ndarray]:
    # pandas' hash is keyed with a fixed key: stable across processes and machines
    return {"h": pd.util.hash_pandas_object(batch, index=False).to_numpy(np.uint64)}


def _part_names() -> Any:
    from ray.data.datasource import FilenameProvider

    class PartNames(FilenameProvider):
        """Deterministic names in block order (``part-00000-0.parquet`` …), not random uuids."""

        def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
            return f"part-{task_index:05d}.parquet"

    return PartNames(file_format="parquet")


def schema_fingerprint(schema: pa.Schema) -> str:
    return json.dumps([[f.name, str(f.type)] for f in schema], separators=(",", ":"))


def content_id(ds: ray.data.Dataset, schema: pa.Schema) -> tuple[str, int]:
    """(id, rows): sha256 over the schema and the ordered per-row hashes, computed by Ray tasks
    and streamed to the driver 8 bytes a row."""
    h = hashlib.sha256(b"raymlops-snapshot-v1\n" + schema_fingerprint(schema).encode() + b"\n")
    rows = 0
    for batch in ds.map_batches(_row_hashes, batch_format="pandas").iter_batches(
        batch_format="numpy", batch_size=65536
    ):
        arr = np.ascontiguousarray(batch["h"], dtype="<u8")
        h.update(arr.tobytes())
        rows += len(arr)
    return h.hexdigest(), rows


def create_snapshot(store: Store, ds: ray.data.Dataset, source: str, reason: str | None = None) -> SnapshotInfo:
    """Write ``ds`` as a snapshot. Identical content is stored once (``new`` is False then)."""
    from ray.data import DataContext, SaveMode

    # ensure_ray() already turned this on before any read; a caller with its own ray.init gets it here
    DataContext.get_current().execution_options.preserve_order = True
    ds = ds.materialize()
    arrow_schema = ds.schema().base_schema if hasattr(ds.schema(), "base_schema") else ds.schema()
    snap_id, rows = content_id(ds, arrow_schema)
    existing = _lookup(store, snap_id)
    if existing is not None:
        return _info(store, existing, new=False)

    arts = store.artifacts
    staging = arts.staging_key("snapshot")
    try:
        ds.write_parquet(arts.path(f"{staging}/data"), filesystem=arts.fs, filename_provider=_part_names(),
                         mode=SaveMode.OVERWRITE)  # fresh staging folder: nothing to overwrite
        files = []
        total = 0
        for key, size in arts.list_files(f"{staging}/data"):
            files.append({"path": key.removeprefix(staging + "/"), "size": size, "sha256": arts.sha256(key)})
            total += size
        table_sample = ds.limit(100_000).to_arrow_refs()
        import ray

        sample = pa.concat_tables(ray.get(table_sample)) if table_sample else arrow_schema.empty_table()
        schema = infer_schema(sample)
        manifest = {
            "format_version": MANIFEST_VERSION,
            "id": snap_id,
            "created_at": time.time(),
            "source": source,
            "rows": rows,
            "bytes": total,
            "schema": schema.to_dict(),
            "files": files,
        }
        manifest_bytes = json.dumps(manifest, indent=1, sort_keys=True).encode()
        manifest_sha = arts.write_bytes(f"{staging}/manifest.json", manifest_bytes)
        final = f"snapshots/{snap_id}"
        created = arts.promote(staging, final)
    except BaseException:
        arts.delete(staging)
        raise
    with store.metadata.transaction() as conn:
        if conn.execute("SELECT 1 FROM snapshots WHERE id = ?", (snap_id,)).fetchone() is None:
            conn.execute(
                "INSERT INTO snapshots(id, created_at, source, rows, bytes, manifest_key, manifest_sha256)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (snap_id, manifest["created_at"], source, rows, total, f"{final}/manifest.json", manifest_sha),
            )
            _set_tag(conn, "latest", snap_id)
            audit.append(conn, "snapshot.created", {"snapshot": snap_id}, reason, {"source": source, "rows": rows})
        else:
            created = False
    return _info(store, snap_id, new=created)


def _set_tag(conn: Any, tag: str, snap_id: str) -> None:
    conn.execute(
        "INSERT INTO snapshot_tags(tag, snapshot_id, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT(tag) DO UPDATE SET snapshot_id = excluded.snapshot_id, updated_at = excluded.updated_at",
        (tag, snap_id, time.time()),
    )


def _lookup(store: Store, snap_id: str) -> str | None:
    with store.metadata.read() as conn:
        row = conn.execute("SELECT id FROM snapshots WHERE id = ?", (snap_id,)).fetchone()
    return row[0] if row else None


def resolve_snapshot(store: Store, ref: str) -> str:
    """A full id from an id, a unique id prefix, or a tag (``latest``)."""
    with store.metadata.read() as conn:
        row = conn.execute("SELECT snapshot_id FROM snapshot_tags WHERE tag = ?", (ref,)).fetchone()
        if row:
            return str(row[0])
        if len(ref) < 4 or not all(c in "0123456789abcdef" for c in ref):
            raise NotFound(f"snapshot {ref!r} not found (give an id, an id prefix of 4+ characters, or a tag)")
        rows = conn.execute("SELECT id FROM snapshots WHERE id LIKE ? LIMIT 2", (ref + "%",)).fetchall()
    if not rows:
        raise NotFound(f"snapshot {ref!r} not found")
    if len(rows) > 1:
        raise NotFound(f"snapshot prefix {ref!r} is ambiguous; give more characters")
    return str(rows[0][0])


def load_manifest(store: Store, snap_id: str) -> dict[str, Any]:
    with store.metadata.read() as conn:
        row = conn.execute("SELECT manifest_key, manifest_sha256 FROM snapshots WHERE id = ?", (snap_id,)).fetchone()
    if row is None:
        raise NotFound(f"snapshot {snap_id!r} not found")
    data = store.artifacts.read_bytes(row[0])
    if hashlib.sha256(data).hexdigest() != row[1]:
        raise IntegrityError(f"snapshot {snap_id[:12]}: manifest.json was changed")
    manifest: dict[str, Any] = json.loads(data)
    return manifest


def _info(store: Store, snap_id: str, new: bool) -> SnapshotInfo:
    m = load_manifest(store, snap_id)
    return SnapshotInfo(
        id=snap_id, rows=m["rows"], bytes=m["bytes"], source=m["source"], created_at=m["created_at"],
        new=new, schema=Schema.from_dict(m["schema"]),
    )


def snapshot_info(store: Store, ref: str) -> SnapshotInfo:
    return _info(store, resolve_snapshot(store, ref), new=False)


def verify_snapshot(store: Store, ref: str) -> list[str]:
    """Problems found (empty when every file is present with its recorded sha256)."""
    snap_id = resolve_snapshot(store, ref)
    problems = []
    try:
        manifest = load_manifest(store, snap_id)
    except (IntegrityError, NotFound) as exc:
        return [str(exc)]
    base = f"snapshots/{snap_id}"
    for f in manifest["files"]:
        key = f"{base}/{f['path']}"
        if not store.artifacts.exists(key):
            problems.append(f"{f['path']}: missing")
        elif store.artifacts.sha256(key) != f["sha256"]:
            problems.append(f"{f['path']}: changed (sha256 differs from the manifest)")
    return problems


def read_snapshot(store: Store, ref: str) -> tuple[SnapshotInfo, pa.Table]:
    """The snapshot as one Arrow table, after checking every file against the manifest."""
    snap_id = resolve_snapshot(store, ref)
    problems = verify_snapshot(store, snap_id)
    if problems:
        raise IntegrityError(f"snapshot {snap_id[:12]} is corrupted: " + "; ".join(problems))
    manifest = load_manifest(store, snap_id)
    tables = []
    for f in manifest["files"]:
        with store.artifacts.fs.open_input_file(store.artifacts.path(f"snapshots/{snap_id}/{f['path']}")) as fh:
            tables.append(pq.read_table(fh))
    table = pa.concat_tables(tables) if tables else pa.table({})
    if table.num_rows != manifest["rows"]:
        raise IntegrityError(f"snapshot {snap_id[:12]}: {table.num_rows} rows read, manifest says {manifest['rows']}")
    return _info(store, snap_id, new=False), table


def list_snapshots(store: Store) -> list[dict[str, Any]]:
    with store.metadata.read() as conn:
        rows = conn.execute(
            "SELECT s.id, s.created_at, s.source, s.rows, s.bytes,"
            " (SELECT group_concat(tag, ',') FROM snapshot_tags t WHERE t.snapshot_id = s.id)"
            " FROM snapshots s ORDER BY s.created_at"
        ).fetchall()
    return [
        {"id": r[0], "created_at": r[1], "source": r[2], "rows": r[3], "bytes": r[4],
         "tags": sorted((r[5] or "").split(",")) if r[5] else []}
        for r in rows
    ]


def require_rows(info: SnapshotInfo, minimum: int) -> None:
    if info.rows < minimum:
        raise ValidationError(f"snapshot {info.short} has {info.rows} rows; at least {minimum} are needed")
