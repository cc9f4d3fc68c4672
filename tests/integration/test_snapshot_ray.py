"""Snapshots written by Ray Data: content ids, atomic commit, verification."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from raymlops import IntegrityError, Store, ValidationError
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


def test_a_folder_of_csvs_typed_file_by_file_is_one_snapshot_of_one_schema(ray_session: None, tmp_path: Path) -> None:
    """Daily CSV exports: whole numbers in one file, decimals and an empty column in another. Ray
    Data infers types file by file and reports the first file's schema for all; the snapshot
    (every file, not a sample) holds one schema: the numbers as doubles, the empty column typed
    from the other file, and the same id as the same rows written as one typed table."""
    folder = tmp_path / "daily"
    folder.mkdir()
    (folder / "day1.csv").write_text("a,b,y\n1,x,0\n2,y,1\n3,x,0\n")
    (folder / "day2.csv").write_text("a,b,y\n0.5,,1\n2.25,,0\n")
    store = Store.open(tmp_path / "home")
    snap = create_snapshot(store, read_source(str(folder)), str(folder))
    assert snap.rows == 5 and verify_snapshot(store, snap.id) == []
    _, back = read_snapshot(store, snap.id)
    assert back.schema.field("a").type == pa.float64() and back.schema.field("b").type == pa.string()
    assert sorted(back.column("a").to_pylist()) == [0.5, 1.0, 2.0, 2.25, 3.0]
    typed = pa.table({"a": [1.0, 2.0, 3.0, 0.5, 2.25], "b": ["x", "y", "x", None, None], "y": [0, 1, 0, 1, 0]})
    import ray.data

    assert create_snapshot(store, ray.data.from_arrow(typed), "mem://typed").id == snap.id
    # another export lists the columns in another order: matched by name, the same rows, the same id
    (folder / "day2.csv").write_text("y,b,a\n1,,0.5\n0,,2.25\n")
    assert create_snapshot(store, read_source(str(folder)), str(folder)).id == snap.id
    (folder / "day3.csv").write_text("a,b,y\nseven,x,1\n")
    with pytest.raises(ValidationError, match="column 'a' is .* in some and string in others"):
        create_snapshot(store, read_source(str(folder)), str(folder))
    (folder / "day3.csv").write_text("a,y\n7,1\n")  # a column missing: named, not an IndexError
    with pytest.raises(ValidationError, match="do not have the same columns: 'b' in some files only"):
        create_snapshot(store, read_source(str(folder)), str(folder))
    assert len(list_snapshots(store)) == 1


def test_the_same_rows_typed_by_different_writers_are_one_snapshot(ray_session: None, tmp_path: Path) -> None:
    """A CSV export, and Parquet files of the same rows written as pandas and database exports
    type them (text as a dictionary or ``large_string``, whole numbers as ``int32`` or ``uint8``),
    are one snapshot: the same content id, stored with one type per kind of value. A changed value
    is still a new snapshot."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rows = {"id": [1, 2, 3, 4], "x": [0.5, 1.5, None, 2.0], "city": ["a", "b", None, "a"], "n": [7, 8, 9, 10]}
    pacsv.write_csv(pa.table(rows), tmp_path / "export.csv")
    exports = {
        "pandas": {"city": pa.array(rows["city"]).dictionary_encode(), "n": pa.array(rows["n"], pa.uint8())},
        "database": {"id": pa.array(rows["id"], pa.int32()), "city": pa.array(rows["city"], pa.large_string())},
    }
    store = Store.open(tmp_path / "home")
    csv = create_snapshot(store, read_source(str(tmp_path / "export.csv")), "csv")
    for name, typed in exports.items():
        table = pa.table({k: typed.get(k, pa.array(v)) for k, v in rows.items()})
        assert table.schema != pa.table(rows).schema
        (tmp_path / name).mkdir()
        pq.write_table(table, tmp_path / name / "part.parquet")
        again = create_snapshot(store, read_source(str(tmp_path / name), "parquet"), name)
        assert again.id == csv.id and not again.new, name
    _, back = read_snapshot(store, csv.id)
    assert back.schema.types == [pa.int64(), pa.float64(), pa.string(), pa.int64()]
    assert back.to_pydict() == rows

    changed = pa.table({**rows, "id": pa.array([1, 2, 3, 5], pa.int32())})
    (tmp_path / "changed").mkdir()
    pq.write_table(changed, tmp_path / "changed" / "part.parquet")
    assert create_snapshot(store, read_source(str(tmp_path / "changed"), "parquet"), "changed").id != csv.id
    assert len(list_snapshots(store)) == 2


def test_a_folder_of_parquet_files_one_lacking_a_column_is_refused_naming_both(tmp_path: Path) -> None:
    """Ray Data would read the column a file lacks as nulls; the footers say so before it runs
    (so no Ray here). Another column order is fine (read by name)."""
    import pyarrow.parquet as pq

    folder = tmp_path / "pq"
    folder.mkdir()
    pq.write_table(pa.table({"a": [1.0], "b": [2.0], "y": [0]}), folder / "p1.parquet")
    pq.write_table(pa.table({"y": [1], "b": [3.0], "a": [4.0]}), folder / "p2.parquet")
    (folder / "_SUCCESS").write_text("")  # a marker file, not data
    from raymlops.data.sources import _same_parquet_columns
    from raymlops.store.artifacts import resolve_filesystem

    fs, path = resolve_filesystem(str(folder))
    _same_parquet_columns(fs, path, str(folder))  # no error
    pq.write_table(pa.table({"a": [5.0], "y": [1], "c": ["x"]}), folder / "p3.parquet")
    with pytest.raises(ValidationError, match=r"'p3.parquet' lacks 'b'; has 'c' besides \(against 'p1.parquet'\)"):
        read_source(str(folder))


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


def test_an_empty_csv_file_is_named_before_ray_data_reads_it(tmp_path: Path) -> None:
    """Ray Data's own error advises its partition_filter option, which raymlops does not have."""
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(ValidationError, match=r"'empty.csv' is empty \(0 bytes\)"):
        read_source(str(tmp_path / "empty.csv"))
    folder = tmp_path / "daily"
    folder.mkdir()
    (folder / "day1.csv").write_text("a,y\n1,0\n")
    (folder / "day2.csv").write_bytes(b"")
    with pytest.raises(ValidationError, match=r"'day2.csv' is empty"):
        read_source(str(folder))
