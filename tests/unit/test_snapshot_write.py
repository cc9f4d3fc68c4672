"""What a snapshot's write task does to one block, without Ray: the file it writes reads back
as the block, its sha256 and size are the bytes written, and the profile is the block's."""

from __future__ import annotations

import errno
import hashlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from raymlops.data.snapshot_write import dictionary_columns, dictionary_plan, write_block
from raymlops.stats.partial import PartialProfile, Sample


def _table(n: int = 8_000) -> pa.Table:
    rng = np.random.default_rng(4)
    return pa.table({"f": rng.normal(size=n), "code": rng.integers(0, 12, n), "id": np.arange(n),
                     "s": rng.choice(["a", "b"], n), "t": pa.array(np.arange(n), pa.timestamp("ms"))})


def test_dictionary_only_where_values_repeat() -> None:
    table = _table()
    assert dictionary_columns(table) == ["code", "s"]
    sample = Sample.from_table(table, size=2_000)
    assert dictionary_plan(table.schema, sample) is None  # a timestamp column is not in the sample
    no_time = table.drop_columns(["t"])
    assert dictionary_plan(no_time.schema, Sample.from_table(no_time, size=2_000)) == ["code", "s"]


def test_write_block_writes_hashes_and_profiles_the_same_rows(tmp_path: Path) -> None:
    table = _table()
    edges = Sample.from_table(table, size=2_000).edges()
    out = write_block(table, 3, pafs.LocalFileSystem(), str(tmp_path), "part-00003.parquet", edges, {}, None)
    data = (tmp_path / "part-00003.parquet").read_bytes()
    assert out["path"] == "part-00003.parquet" and out["size"] == len(data)
    assert out["sha256"] == hashlib.sha256(data).hexdigest()
    assert pq.read_table(tmp_path / "part-00003.parquet").equals(table)
    partial = PartialProfile.from_payload(out["partial"])
    direct = PartialProfile.from_table(table, edges)
    assert partial.to_payload()["columns"] == direct.to_payload()["columns"]
    assert all(np.array_equal(partial.counts[n], c) for n, c in direct.counts.items())
    nothing = write_block(table, 0, pafs.LocalFileSystem(), str(tmp_path), None, None, {})
    assert nothing == {"path": None, "size": 0, "sha256": None, "partial": None}


def test_write_block_passes_a_storage_error_on_as_itself(tmp_path: Path) -> None:
    """The Parquet writer streams into the file through Python: an OSError of the stream (a full
    disk) comes out of the write task unchanged, for the snapshot to report and clean up."""

    class FullDisk:
        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    class Fs:
        def open_output_stream(self, path: str) -> FullDisk:
            return FullDisk()

    with pytest.raises(OSError) as info:
        write_block(_table(), 0, Fs(), str(tmp_path), "part-00000.parquet", None, {}, None)
    assert info.value.errno == errno.ENOSPC
