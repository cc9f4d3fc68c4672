"""The two passes of a new snapshot over its blocks, as Ray tasks (adapter for
:mod:`raymlops.data.snapshot`).

1. :func:`scan`: each task hashes its block's rows (8 bytes a row back to the driver, which
   hashes them in order into the content id) and takes its bottom-k sample for the profile's
   bin edges. Unchanged data stops here: its id is known, nothing is written.
2. :func:`write`: each task writes its block as ``data/part-NNNNN.parquet`` (``pyarrow.parquet``
   streamed straight into the staging folder, dictionary encoding only where values repeat
   (:func:`dictionary_columns`), the sha256 taken of the bytes on their way), and profiles the
   same block in the same pass (:func:`raymlops.data.profile.profile_block`). The driver gets
   each file's size and sha256 and the block's partial profile: no file is held in memory or
   read back, and the rows are read once.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raymlops.data.blocks import Block, canonical_table, run_on_blocks
from raymlops.data.profile import merge_partials, merge_samples, profile_block, sample_blocks, scan_block
from raymlops.stats.partial import SAMPLE_SIZE, PartialProfile, Sample, sample_bound

__all__ = ["id_hasher", "scan", "schema_fingerprint", "write"]


def schema_fingerprint(schema: pa.Schema) -> str:
    return json.dumps([[f.name, str(f.type)] for f in schema], separators=(",", ":"))


def id_hasher(schema: pa.Schema) -> Any:
    return hashlib.sha256(b"raymlops-snapshot-v2\n" + schema_fingerprint(schema).encode() + b"\n")


class MixedSchemas(Exception):
    """The blocks of a dataset do not share one Arrow schema (``schemas``: each block's)."""

    def __init__(self, schemas: list[pa.Schema]) -> None:
        super().__init__(f"{len(set(map(str, schemas)))} schemas among {len(schemas)} blocks")
        self.schemas = schemas


def scan(blocks: Sequence[Block], schema: pa.Schema, sample_size: int = SAMPLE_SIZE
         ) -> tuple[str, int, list[int], Sample]:
    """``(content id, rows, rows of each block, bottom-k sample)``: the id is the sha256 of the
    schema and of the per-row hashes in row order, so it does not depend on the partitioning.
    ``sample_size`` 0: no sample. Each block sends only its sample rows below
    :func:`~raymlops.stats.partial.sample_bound`; should they be too few (many identical rows),
    the sample is taken again without the bound. :class:`MixedSchemas` when the blocks' own
    Arrow schemas differ (Ray Data reports the first block's for all)."""
    h = id_hasher(schema)
    sizes: list[int] = []
    schemas: list[pa.Schema] = []
    samples = []
    expected = sum(b.rows for b in blocks)
    for res in run_on_blocks(blocks, scan_block, sample_size, True, sample_bound(expected, sample_size),
                             name="SnapshotScan"):
        h.update(np.ascontiguousarray(res["keys"], dtype="<u8").tobytes())
        sizes.append(int(res["rows"]))
        samples.append(res["sample"])
        schemas.append(res["schema"])
    if any(not other.equals(schemas[0]) for other in schemas[1:]):
        raise MixedSchemas(schemas)
    rows = sum(sizes)
    sample = merge_samples(samples)
    if sample_size > 0 and not sample.complete(rows):
        sample = sample_blocks(blocks, sample_size)
    return h.hexdigest(), rows, sizes, sample


#: a numeric column is dictionary-encoded when its first rows repeat values at least this often
_REPEATS = 4
_PROBE = 4096


def _repeating_type(t: pa.DataType) -> bool:
    return bool(pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
                or pa.types.is_large_binary(t) or pa.types.is_boolean(t) or pa.types.is_dictionary(t))


def _number_type(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
                or pa.types.is_temporal(t))


def _repeats(distinct: int, values: int) -> bool:
    return values > 0 and distinct * _REPEATS <= values


def dictionary_columns(table: pa.Table) -> list[str]:
    """The columns worth dictionary-encoding: strings, binaries, booleans and dictionaries, and
    numbers whose values repeat (at most a quarter of the first :data:`_PROBE` distinct: codes,
    counts, ratings). Parquet's default encodes every column so and falls back to plain values
    after a megabyte of dictionary: for a column of distinct floats that doubles the write time
    and makes the file bigger."""
    out = []
    for f, col in zip(table.schema, table.columns, strict=True):
        if _repeating_type(f.type):
            out.append(f.name)
        elif _number_type(f.type):
            probe = col.slice(0, _PROBE)
            if _repeats(pc.count_distinct(probe).as_py(), len(probe)):
                out.append(f.name)
    return out


def dictionary_plan(schema: pa.Schema, sample: Sample) -> list[str] | None:
    """:func:`dictionary_columns` decided once for every block from the bottom-k sample (which
    holds every int and float column); None when a number column is not in it (then each block
    probes its own rows)."""
    out = []
    for f in schema:
        if _repeating_type(f.type):
            out.append(f.name)
        elif _number_type(f.type):
            if f.name not in sample.values:
                return None
            v = sample.values[f.name]
            v = v[~np.isnan(v)]
            if _repeats(np.unique(v).size, v.size):
                out.append(f.name)
    return out


class _HashingSink:
    """The file object :func:`write_block` gives the Parquet writer (through
    :class:`pyarrow.PythonFile`): every chunk goes on to ``stream`` and into a sha256 on its way,
    so the file is never held in memory whole nor read back (writing each file into a buffer first
    cost a third more CPU: a copy of every byte, and a fresh buffer's page faults in every task)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        self.sha256.update(data)
        self.stream.write(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        """Nothing: ``stream`` is flushed when :func:`write_block` closes it."""

    def close(self) -> None:
        self.closed = True


def write_block(table: pa.Table, index: int, fs: Any, folder: str, name: str | None,
                edges: Mapping[str, np.ndarray] | None, ref_edges: Mapping[str, np.ndarray],
                dictionary: Sequence[str] | None = None) -> dict[str, Any]:
    """Write one block as ``folder/name`` (no file when ``name`` is None; ``dictionary``: the
    columns to dictionary-encode, None: :func:`dictionary_columns`) and profile it when
    ``edges`` is given: ``{"path", "size", "sha256", "partial"}``."""
    out: dict[str, Any] = {"path": None, "size": 0, "sha256": None, "partial": None}
    if name is not None:
        with fs.open_output_stream(posixpath.join(folder, name)) as f:
            sink = _HashingSink(f)
            pq.write_table(table, pa.PythonFile(sink, mode="w"),
                           use_dictionary=list(dictionary) if dictionary is not None else dictionary_columns(table))
        out |= {"path": name, "size": sink.size, "sha256": sink.sha256.hexdigest()}
    if edges is not None:
        out["partial"] = profile_block(table, edges, ref_edges)
    return out


def write(blocks: Sequence[Block], sizes: Sequence[int], fs: Any, folder: str,
          edges: Mapping[str, np.ndarray] | None, ref_edges: Mapping[str, np.ndarray],
          dictionary: Sequence[str] | None = None) -> tuple[list[dict[str, Any]], PartialProfile | None]:
    """Write every block under ``folder`` (``part-00000.parquet`` … in block order; empty blocks
    get no file unless every block is empty; ``dictionary``: see :func:`write_block`) and, with
    ``edges``, profile them in the same tasks.
    Returns the files (``path``, ``size``, ``sha256``, in order) and the merged partial profile."""
    if isinstance(fs, pafs.LocalFileSystem):  # object stores have no folders to create
        fs.create_dir(folder, recursive=True)
    any_rows = any(sizes)
    names: list[str | None] = []
    for n in sizes:
        names.append(f"part-{sum(x is not None for x in names):05d}.parquet" if n or not any_rows else None)
    if not any_rows and names:
        names = [names[0]] + [None] * (len(names) - 1)  # no rows: one file keeps the schema
    files, partials = [], []
    plan = None if dictionary is None else list(dictionary)
    for res in run_on_blocks(blocks, _write_task, names, fs, folder, edges, ref_edges, plan, name="SnapshotWrite"):
        if res["path"] is not None:
            files.append({"path": res["path"], "size": res["size"], "sha256": res["sha256"]})
        if res["partial"] is not None:
            partials.append(res["partial"])
    return files, (merge_partials(partials) if edges is not None else None)


def _write_task(table: pa.Table, index: int, names: Sequence[str | None], fs: Any, folder: str,
                edges: Mapping[str, np.ndarray] | None, ref_edges: Mapping[str, np.ndarray],
                dictionary: Sequence[str] | None) -> dict[str, Any]:
    return write_block(canonical_table(table), index, fs, folder, names[index], edges, ref_edges, dictionary)

