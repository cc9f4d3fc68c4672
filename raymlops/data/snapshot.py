"""Immutable, content-addressed snapshots written by Ray tasks and committed atomically.

Layout under the artifact root::

    snapshots/<id>/data/part-00000.parquet ...
    snapshots/<id>/profile.json            (per-column profile: raymlops.stats.profile)
    snapshots/<id>/manifest.json           (written last: schema, rows, files + sha256, lineage)

The id is the sha256 of the schema and of the per-row hashes in row order, so identical data
gets the identical id however Ray partitioned it, and however its writer typed it: rows are
stored and hashed with one Arrow type per kind of value (:func:`raymlops.data.blocks.canonical_type`:
text as ``string`` whether written as ``large_string`` or a dictionary, whole numbers as
``int64``). A first pass over the blocks computes it (and
the sample that places the profile's bins); unchanged data stops there, writing nothing. A new
snapshot's blocks are then written into a fresh staging folder by Ray tasks that profile the same
rows in the same pass and hash the bytes they write (:mod:`raymlops.data.snapshot_write`); the
snapshot gets its manifest, and only then is it moved to ``snapshots/<id>`` and recorded in SQLite
(with its lineage, tags and an audit record, in one transaction). Readers go through SQLite, so
a crash at any point leaves no snapshot visible except complete ones.

The manifest (format 2) also records the lineage: the parent snapshot (the previous snapshot
of the same source, unless given), the source URIs without credentials, the hash of the
transform code, the validation summary, and a summary of the profile (the full profile is
``profile.json``, listed with its sha256 like the data files). Tags (``latest``, which every
``create_snapshot`` of a data snapshot moves, and user tags such as ``train-2026-11``) live in
SQLite: they move, snapshots do not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from raymlops import audit
from raymlops.data.blocks import blocks_of, canonical_schema, cast_blocks, materialized, widen_schemas
from raymlops.data.errors import ours
from raymlops.data.schema import Schema, schema_from_profile
from raymlops.data.sources import redact_uri
from raymlops.exceptions import IntegrityError, NotFound, RaymlopsError, ValidationError
from raymlops.stats.partial import SAMPLE_SIZE
from raymlops.stats.profile import Profile, finish, reference_edges
from raymlops.store.artifacts import storage_error
from raymlops.store.home import Store

if TYPE_CHECKING:
    import ray.data

MANIFEST_VERSION = 2
KINDS = ("data", "quarantine")
#: tags raymlops moves itself
RESERVED_TAGS = ("latest", "quarantine")
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HEX = re.compile(r"^[0-9a-f]+$")
PROFILE_FILE = "profile.json"


#: what an error about a corrupted snapshot adds: how to write it again
REPAIR_HINT = (" (write it again from its intact source: `raymlops run --no-cache`, or `raymlops snapshot create "
               "--source ...`, which find the stored copy damaged and replace it)")


@dataclass(frozen=True)
class SnapshotInfo:
    id: str
    rows: int
    bytes: int
    source: str
    created_at: float
    new: bool
    schema: Schema
    kind: str = "data"
    parent: str | None = None
    sources: tuple[str, ...] = ()
    transform_hash: str | None = None
    tags: tuple[str, ...] = ()
    repaired: tuple[str, ...] = ()  # what failed the manifest in the stored copy, written again now

    @property
    def short(self) -> str:
        return self.id[:12]


def _arrow_schema(ds: ray.data.Dataset) -> pa.Schema:
    schema = ds.schema()
    if schema is None:
        raise ValidationError("the data holds no rows (a CSV file of only its header, say), so it has no schema "
                              "either; nothing to snapshot")
    base = schema.base_schema if hasattr(schema, "base_schema") else schema
    if not isinstance(base, pa.Schema):
        base = pa.schema(list(zip(schema.names, schema.types, strict=True)))
    return canonical_schema(base)


def check_tag(tag: str) -> str:
    """A tag users may set: letters, digits, ``.``, ``_``, ``-``; not reserved, not id-like."""
    if not _TAG.match(tag):
        raise ValidationError(f"tag {tag!r}: expected letters, digits, '.', '_' or '-' (at most 64, starting "
                              "with a letter or digit)")
    if tag in RESERVED_TAGS:
        raise ValidationError(f"tag {tag!r} is set by raymlops itself; choose another name")
    if len(tag) >= 4 and _HEX.match(tag):
        raise ValidationError(f"tag {tag!r} looks like a snapshot id prefix; add a letter outside a-f")
    return tag


def create_snapshot(
    store: Store,
    ds: ray.data.Dataset,
    source: str,
    reason: str | None = None,
    *,
    tags: Sequence[str] = (),
    parent: str | None = None,
    sources: Sequence[str] | None = None,
    transform_hash: str | None = None,
    transforms: Sequence[dict[str, Any]] | None = None,
    validation: dict[str, Any] | None = None,
    profile: Profile | None = None,
    reference: Profile | None = None,
    kind: str = "data",
    verify_existing: bool = False,
) -> SnapshotInfo:
    """Write ``ds`` as a snapshot. Identical content is stored once (``new`` is False then; tags
    still move to it, ``latest`` included). ``verify_existing``: when that content is stored
    already, check its files against its manifest, and write them again from ``ds`` where they
    fail (``snapshot.repaired``: the same id, lineage and creation time), as re-adding a file heals
    a corrupted cache entry in DVC.

    ``profile``: the profile of ``ds`` if already computed, else it is computed here, in the
    tasks that write the files; with ``reference``, it is also counted on the reference's bins
    (see :func:`raymlops.data.profile.profile`). ``parent``: the snapshot this one derives
    from; default: the newest snapshot of the same source and kind. Sources are recorded
    without credentials (:func:`raymlops.data.sources.redact_uri`).
    """
    with ours():  # a ValidationError raised in a Ray task comes back as itself
        return _create_snapshot(store, ds, source, reason, tags=tags, parent=parent, sources=sources,
                                transform_hash=transform_hash, transforms=transforms, validation=validation,
                                profile=profile, reference=reference, kind=kind, verify_existing=verify_existing)


def _create_snapshot(
    store: Store,
    ds: ray.data.Dataset,
    source: str,
    reason: str | None,
    *,
    tags: Sequence[str],
    parent: str | None,
    sources: Sequence[str] | None,
    transform_hash: str | None,
    transforms: Sequence[dict[str, Any]] | None,
    validation: dict[str, Any] | None,
    profile: Profile | None,
    reference: Profile | None,
    kind: str,
    verify_existing: bool = False,
) -> SnapshotInfo:
    from ray.data import DataContext

    # pyarrow.parquet: only when a snapshot is written (`raymlops snapshot list` reads none)
    from raymlops.data import snapshot_write

    if kind not in KINDS:
        raise ValidationError(f"snapshot kind must be one of {', '.join(KINDS)}, got {kind!r}")
    tags = [check_tag(t) for t in tags]
    source = redact_uri(source)
    source_list = [redact_uri(s) for s in (sources or [source])]
    # ensure_ray() already turned this on before any read; a caller with its own ray.init gets it here
    DataContext.get_current().execution_options.preserve_order = True
    ds = materialized(ds)
    arrow_schema = _arrow_schema(ds)
    blocks = blocks_of(ds)
    # pass 1: the content id (and, unless given, the sample that places the profile's bins)
    sample_size = 0 if profile is not None else SAMPLE_SIZE
    try:
        snap_id, rows, sizes, sample = snapshot_write.scan(blocks, arrow_schema, sample_size)
    except snapshot_write.MixedSchemas as mixed:
        # files whose types were inferred one by one (a CSV of whole numbers beside one of decimals):
        # one schema for all, and the content id of the rows as that schema holds them
        arrow_schema = widen_schemas(mixed.schemas, source)
        blocks = cast_blocks(blocks, arrow_schema)
        snap_id, rows, sizes, sample = snapshot_write.scan(blocks, arrow_schema, sample_size)
    damaged: list[str] = []
    kept: dict[str, Any] = {}
    if _lookup(store, snap_id) is not None:
        damaged = verify_snapshot(store, snap_id) if verify_existing else []
        if not damaged:
            return _reuse(store, snap_id, kind, tags, reason, source)
        kept = _recorded(store, snap_id)  # a repair keeps what the snapshot was recorded with
        kind = kept["kind"]
    edges = sample.edges() if profile is None else None
    if damaged:
        parent = kept["parent"]
    else:
        parent = _previous(store, source, kind) if parent is None else resolve_snapshot(store, parent)

    arts = store.artifacts
    staging = arts.staging_key("snapshot")
    final = f"snapshots/{snap_id}"
    try:
        # pass 2: every block written and profiled by the same task
        files, partial = snapshot_write.write(
            blocks, sizes, arts.fs, arts.path(f"{staging}/data"), edges, reference_edges(reference, list(edges or {})),
            None if profile is not None else snapshot_write.dictionary_plan(arrow_schema, sample))
        if partial is not None:
            assert edges is not None
            profile = finish(partial, edges, reference)
        assert profile is not None
        if profile.rows != rows:
            raise IntegrityError(f"profile counted {profile.rows} rows but the data has {rows}")
        schema = schema_from_profile(profile)
        files = [{**f, "path": f"data/{f['path']}"} for f in files]
        total = sum(f["size"] for f in files)
        profile_bytes = json.dumps(profile.to_dict(), separators=(",", ":"), default=str).encode()
        files.append({"path": PROFILE_FILE, "size": len(profile_bytes),
                      "sha256": arts.write_bytes(f"{staging}/{PROFILE_FILE}", profile_bytes)})
        manifest = {
            "format_version": MANIFEST_VERSION,
            "id": snap_id,
            "kind": kind,
            "created_at": kept["created_at"] if damaged else time.time(),
            "source": source,
            "sources": source_list,
            "parent": parent,
            "transform_hash": transform_hash,
            "transforms": list(transforms or []),
            "validation": validation,
            "rows": rows,
            "bytes": total,
            "schema": schema.to_dict(),
            "profile": {"file": PROFILE_FILE, **profile.summary()},
            "files": files,
        }
        manifest_bytes = json.dumps(manifest, indent=1, sort_keys=True, default=str).encode()
        manifest_sha = arts.write_bytes(f"{staging}/manifest.json", manifest_bytes)
        if damaged:  # the recorded copy fails its manifest: only now, with the good one complete, replace it
            arts.delete(final)
        promoted = arts.promote(staging, final)
    except BaseException as exc:
        with contextlib.suppress(OSError):  # a full or read-only disk must not hide the first error
            arts.delete(staging)
        if isinstance(exc, OSError) and not isinstance(exc, RaymlopsError):  # also Ray's RayTaskError(OSError)
            raise storage_error("write snapshot", f"{snap_id[:12]} under {arts.root_uri}", exc) from None
        raise
    if not promoted:  # the folder is there (an earlier run died before recording it): use it if intact
        problems = _file_problems(store, snap_id, json.loads(arts.read_bytes(f"{final}/manifest.json")))
        if problems:
            raise IntegrityError(f"snapshot {snap_id[:12]}: an unrecorded, damaged copy is in the way "
                                 f"({'; '.join(problems)}); delete {final} under {arts.root_uri} and run again")
        manifest_bytes = arts.read_bytes(f"{final}/manifest.json")
        manifest = json.loads(manifest_bytes)
        manifest_sha = hashlib.sha256(manifest_bytes).hexdigest()
    if damaged:
        return _repaired(store, snap_id, manifest, manifest_sha, damaged, kind, tags, reason, source)
    with store.metadata.transaction() as conn:
        if conn.execute("SELECT 1 FROM snapshots WHERE id = ?", (snap_id,)).fetchone() is not None:
            new = False  # another process recorded it meanwhile
        else:
            new = True
            conn.execute(
                "INSERT INTO snapshots(id, created_at, source, rows, bytes, manifest_key, manifest_sha256)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (snap_id, manifest["created_at"], manifest["source"], rows, manifest["bytes"],
                 f"{final}/manifest.json", manifest_sha),
            )
            conn.execute(
                "INSERT INTO snapshot_lineage(snapshot_id, kind, parent_id, transform_hash, record_json)"
                " VALUES (?, ?, ?, ?, ?)",
                (snap_id, manifest["kind"], manifest["parent"], manifest["transform_hash"],
                 json.dumps({"sources": manifest["sources"]}, separators=(",", ":"))),
            )
            moved = _move_tags(conn, snap_id, kind, tags)
            how: dict[str, Any] = {"source": source, "rows": rows}  # + what is not the default
            if kind != "data":
                how["kind"] = kind
            if manifest["parent"]:
                how["parent"] = manifest["parent"]
            if [t for t in moved if t not in RESERVED_TAGS]:
                how["tags"] = [t for t in moved if t not in RESERVED_TAGS]
            audit.append(conn, "snapshot.created", {"snapshot": snap_id}, reason, how)
    if not new:
        return _reuse(store, snap_id, kind, tags, reason, source)
    return _info(store, snap_id, new=True)


def _move_tags(conn: Any, snap_id: str, kind: str, tags: Sequence[str]) -> list[str]:
    """Point ``latest`` (data) or ``quarantine`` (quarantine) and ``tags`` at ``snap_id``;
    returns the tags that moved."""
    auto = "latest" if kind == "data" else "quarantine"
    moved = []
    for tag in [auto, *tags]:
        row = conn.execute("SELECT snapshot_id FROM snapshot_tags WHERE tag = ?", (tag,)).fetchone()
        if row is None or row[0] != snap_id:
            _set_tag(conn, tag, snap_id)
            moved.append(tag)
    return moved


def _recorded(store: Store, snap_id: str) -> dict[str, Any]:
    """How ``snap_id`` was recorded: its parent, kind and creation time (SQLite, not its files)."""
    with store.metadata.read() as conn:
        row = conn.execute("SELECT s.created_at, l.parent_id, coalesce(l.kind, 'data') FROM snapshots s LEFT JOIN"
                           " snapshot_lineage l ON l.snapshot_id = s.id WHERE s.id = ?", (snap_id,)).fetchone()
    return {"created_at": row[0], "parent": row[1], "kind": row[2]}


def _repaired(store: Store, snap_id: str, manifest: dict[str, Any], manifest_sha: str, damaged: list[str],
              kind: str, tags: Sequence[str], reason: str | None, source: str) -> SnapshotInfo:
    """Record the files written again for a damaged snapshot (and move its tags, as a reuse does)."""
    with store.metadata.transaction() as conn:
        conn.execute("UPDATE snapshots SET bytes = ?, manifest_sha256 = ? WHERE id = ?",
                     (manifest["bytes"], manifest_sha, snap_id))
        audit.append(conn, "snapshot.repaired", {"snapshot": snap_id}, reason,
                     {"source": source, "problems": damaged[:20], "rows": manifest["rows"]})
        _move_tags(conn, snap_id, kind, tags)
    return dataclasses.replace(_info(store, snap_id, new=False), repaired=tuple(damaged))


def _reuse(store: Store, snap_id: str, kind: str, tags: Sequence[str], reason: str | None,
           source: str) -> SnapshotInfo:
    """Unchanged data: store nothing, move the tags (audited when one moves)."""
    with store.metadata.transaction() as conn:
        moved = _move_tags(conn, snap_id, kind, tags)
        if moved:
            audit.append(conn, "snapshot.tagged", {"snapshot": snap_id}, reason,
                         {"tags": moved, "source": source, "unchanged_data": True})
    return _info(store, snap_id, new=False)


def _set_tag(conn: Any, tag: str, snap_id: str) -> None:
    conn.execute(
        "INSERT INTO snapshot_tags(tag, snapshot_id, updated_at) VALUES (?, ?, ?)"
        " ON CONFLICT(tag) DO UPDATE SET snapshot_id = excluded.snapshot_id, updated_at = excluded.updated_at",
        (tag, snap_id, time.time()),
    )


def tag_snapshot(store: Store, ref: str, tag: str, reason: str | None = None) -> tuple[str, str | None]:
    """Point ``tag`` at the snapshot ``ref``; returns ``(snapshot id, previous id or None)``.
    Audited (``snapshot.tagged``) in the same transaction."""
    check_tag(tag)
    snap_id = resolve_snapshot(store, ref)
    with store.metadata.transaction() as conn:
        row = conn.execute("SELECT snapshot_id FROM snapshot_tags WHERE tag = ?", (tag,)).fetchone()
        previous = str(row[0]) if row else None
        if previous != snap_id:
            _set_tag(conn, tag, snap_id)
            audit.append(conn, "snapshot.tagged", {"snapshot": snap_id}, reason, {"tags": [tag], "from": previous})
    return snap_id, previous


def _previous(store: Store, source: str, kind: str) -> str | None:
    """The newest snapshot of the same source and kind (the default parent)."""
    with store.metadata.read() as conn:
        row = conn.execute(
            "SELECT s.id FROM snapshots s LEFT JOIN snapshot_lineage l ON l.snapshot_id = s.id"
            " WHERE s.source = ? AND coalesce(l.kind, 'data') = ? ORDER BY s.created_at DESC LIMIT 1",
            (source, kind),
        ).fetchone()
    return str(row[0]) if row else None


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
    data = store.artifacts.read_verified(row[0], row[1], f"snapshot {snap_id[:12]}: manifest.json")
    manifest: dict[str, Any] = json.loads(data)
    return manifest


def _tags(store: Store, snap_id: str) -> tuple[str, ...]:
    with store.metadata.read() as conn:
        rows = conn.execute("SELECT tag FROM snapshot_tags WHERE snapshot_id = ? ORDER BY tag", (snap_id,)).fetchall()
    return tuple(str(r[0]) for r in rows)


def _info(store: Store, snap_id: str, new: bool) -> SnapshotInfo:
    m = load_manifest(store, snap_id)
    return SnapshotInfo(
        id=snap_id, rows=m["rows"], bytes=m["bytes"], source=m["source"], created_at=m["created_at"],
        new=new, schema=Schema.from_dict(m["schema"]), kind=m["kind"], parent=m["parent"],
        sources=tuple(m["sources"]), transform_hash=m["transform_hash"],
        tags=_tags(store, snap_id),
    )


def snapshot_info(store: Store, ref: str) -> SnapshotInfo:
    return _info(store, resolve_snapshot(store, ref), new=False)


def _file_problems(store: Store, snap_id: str, manifest: dict[str, Any]) -> list[str]:
    problems = []
    base = f"snapshots/{snap_id}"
    for f in manifest["files"]:
        key = f"{base}/{f['path']}"
        if not store.artifacts.exists(key):
            problems.append(f"{f['path']}: missing")
        elif store.artifacts.sha256(key) != f["sha256"]:
            problems.append(f"{f['path']}: changed (sha256 differs from the manifest)")
    return problems


def verify_snapshot(store: Store, ref: str) -> list[str]:
    """Problems found (empty when every file is present with its recorded sha256)."""
    snap_id = resolve_snapshot(store, ref)
    try:
        manifest = load_manifest(store, snap_id)
    except (IntegrityError, NotFound) as exc:  # its callers name the snapshot: the file is news
        return [str(exc).removeprefix(f"snapshot {snap_id[:12]}: ")]
    return _file_problems(store, snap_id, manifest)


def list_snapshots(store: Store) -> list[dict[str, Any]]:
    with store.metadata.read() as conn:
        rows = conn.execute(
            "SELECT s.id, s.created_at, s.source, s.rows, s.bytes,"
            " (SELECT group_concat(tag, ',') FROM snapshot_tags t WHERE t.snapshot_id = s.id),"
            " coalesce(l.kind, 'data'), l.parent_id"
            " FROM snapshots s LEFT JOIN snapshot_lineage l ON l.snapshot_id = s.id ORDER BY s.created_at"
        ).fetchall()
    return [
        {"id": r[0], "created_at": r[1], "source": r[2], "rows": r[3], "bytes": r[4],
         "tags": sorted((r[5] or "").split(",")) if r[5] else [], "kind": r[6], "parent": r[7]}
        for r in rows
    ]
