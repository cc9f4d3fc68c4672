"""Snapshots written by Ray Data: content ids, atomic commit, verification."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from raymlops import IntegrityError, Store
from raymlops.data.snapshot import create_snapshot, list_snapshots, resolve_snapshot, verify_snapshot
from raymlops.data.snapshot_read import read_snapshot
from raymlops.data.sources import read_source, sklearn_table

pytestmark = pytest.mark.integration


def test_same_data_same_id_whatever_the_partitioning(ray_session: None, tmp_path: Path) -> None:
    import ray.data

    store = Store.open(tmp_path)
    table = sklearn_table("breast_cancer")
    one = create_snapshot(store, ray.data.from_arrow(table), "mem://one")
    assert one.new and one.rows == 569
    for blocks in (3, 7):
        again = create_snapshot(store, ray.data.from_arrow(table).repartition(blocks), "mem://again")
        assert again.id == one.id and not again.new
    assert len(list_snapshots(store)) == 1

    changed = table.set_column(0, table.column_names[0], pa.array([1.0] + table.column(0).to_pylist()[1:]))
    other = create_snapshot(store, ray.data.from_arrow(changed), "mem://changed")
    assert other.id != one.id and other.new
    assert resolve_snapshot(store, one.id[:8]) == one.id
    assert resolve_snapshot(store, "latest") == other.id

    info, back = read_snapshot(store, one.id)
    assert back.equals(table)
    assert info.schema.names == table.column_names


def test_csv_source_and_corruption_is_named(ray_session: None, tmp_path: Path) -> None:
    import pyarrow.csv as pacsv

    csv = tmp_path / "data.csv"
    pacsv.write_csv(sklearn_table("iris"), csv)
    store = Store.open(tmp_path / "home")
    snap = create_snapshot(store, read_source(str(csv)), str(csv))
    assert snap.rows == 150
    assert verify_snapshot(store, snap.id) == []
    # nothing left in staging after a commit
    assert list(store.artifacts.list_files("staging")) == []

    data_files = [k for k, _ in store.artifacts.list_files(f"snapshots/{snap.id}/data")]
    path = Path(store.artifacts.path(data_files[0]))
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    problems = verify_snapshot(store, snap.id)
    assert len(problems) == 1 and Path(data_files[0]).name in problems[0] and "changed" in problems[0]
    with pytest.raises(IntegrityError, match="corrupted"):
        read_snapshot(store, snap.id)
    path.unlink()
    assert "missing" in verify_snapshot(store, snap.id)[0]


def test_failure_during_write_leaves_no_snapshot(ray_session: None, tmp_path: Path, monkeypatch) -> None:
    import ray.data

    from raymlops.store.artifacts import ArtifactStore

    store = Store.open(tmp_path)

    def boom(self, key: str, data: bytes) -> str:
        raise OSError("disk full (injected)")

    monkeypatch.setattr(ArtifactStore, "write_bytes", boom)  # the manifest write fails
    with pytest.raises(OSError, match="injected"):
        create_snapshot(store, ray.data.from_arrow(sklearn_table("iris")), "mem://iris")
    assert list_snapshots(store) == []
    assert list(store.artifacts.list_files("snapshots")) == []
    assert list(store.artifacts.list_files("staging")) == []
