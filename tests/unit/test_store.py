"""The store: SQLite metadata (raymlops.store.metadata), home resolution and artifacts (pyarrow.fs)."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from raymlops.exceptions import IntegrityError, NotFound
from raymlops.store import ArtifactStore, MetadataStore, Store, resolve_filesystem, resolve_home

# ---------------------------------------------------------------------------- metadata


def test_open_creates_metadata_db_in_wal_mode(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store = Store.open(home)
    assert store.home == home.resolve()
    assert (home / "metadata.db").is_file()
    assert (home / "artifacts").is_dir()
    assert store.metadata.journal_mode().lower() == "wal"
    with sqlite3.connect(home / "metadata.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    conn.close()
    assert {"meta", "snapshots", "snapshot_tags", "models", "aliases", "runs", "audit"} <= tables
    assert version == ("2",)


def test_a_home_of_schema_1_is_upgraded_in_place_keeping_its_steps(tmp_path: Path) -> None:
    """Schema 1's run_steps refused the status 'interrupted' (a CHECK constraint): a step stopped by
    Ctrl-C was recorded as failed. Opening such a home rebuilds the table with its rows."""
    from raymlops.store import metadata

    home = tmp_path / "home"
    home.mkdir()
    old_schema = metadata._SCHEMA.replace(", 'interrupted')", ")")
    assert old_schema != metadata._SCHEMA
    with sqlite3.connect(home / "metadata.db") as conn:
        conn.executescript(old_schema)
        conn.execute("INSERT INTO meta(key, value) VALUES ('schema_version', '1')")
        conn.execute("INSERT INTO runs VALUES ('r1', 'p', 1.0, 2.0, 'failed', 'h', '{}')")
        conn.execute("INSERT INTO run_steps(run_id, seq, name, status, record_json) "
                     "VALUES ('r1', 0, 'ingest', 'ran', '{}')")
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO run_steps(run_id, seq, name, status, record_json) "
                         "VALUES ('r1', 1, 'train', 'interrupted', '{}')")
    conn.close()
    store = Store.open(home)
    with store.metadata.transaction() as conn:
        conn.execute("INSERT INTO run_steps(run_id, seq, name, status, record_json) "
                     "VALUES ('r1', 1, 'train', 'interrupted', '{}')")
    with store.metadata.read() as conn:
        steps = conn.execute("SELECT name, status FROM run_steps ORDER BY seq").fetchall()
        version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    assert [tuple(r) for r in steps] == [("ingest", "ran"), ("train", "interrupted")] and version == "2"
    Store.open(home)  # opening again changes nothing


def test_reopening_keeps_data(tmp_path: Path) -> None:
    with Store.open(tmp_path).metadata.transaction() as conn:
        conn.execute("INSERT INTO meta(key, value) VALUES ('k', 'v')")
    with Store.open(tmp_path).metadata.read() as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'k'").fetchone()[0] == "v"


def test_failed_transaction_writes_nothing(tmp_path: Path) -> None:
    meta = Store.open(tmp_path).metadata

    class Boom(Exception):
        pass

    with pytest.raises(Boom), meta.transaction() as conn:
        conn.execute("INSERT INTO meta(key, value) VALUES ('a', '1')")
        conn.execute(
            "INSERT INTO runs(id, pipeline, started_at, status, config_hash, record_json)"
            " VALUES ('r1', 'p', 0, 'running', 'h', '{}')"
        )
        raise Boom
    with meta.read() as conn:
        assert conn.execute("SELECT COUNT(*) FROM meta WHERE key = 'a'").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
    # and the write lock was released: the next transaction goes through
    with meta.transaction() as conn:
        conn.execute("INSERT INTO meta(key, value) VALUES ('a', '2')")
    with meta.read() as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = 'a'").fetchone()[0] == "2"


def test_failed_statement_rolls_back_earlier_statements(tmp_path: Path) -> None:
    meta = MetadataStore(tmp_path / "m.db")
    with pytest.raises(sqlite3.IntegrityError), meta.transaction() as conn:
        conn.execute("INSERT INTO meta(key, value) VALUES ('x', '1')")
        conn.execute("INSERT INTO meta(key, value) VALUES ('x', '2')")  # primary key clash
    with meta.read() as conn:
        assert conn.execute("SELECT COUNT(*) FROM meta WHERE key = 'x'").fetchone()[0] == 0


def test_foreign_keys_are_enforced(tmp_path: Path) -> None:
    meta = MetadataStore(tmp_path / "m.db")
    with pytest.raises(sqlite3.IntegrityError), meta.transaction() as conn:
        conn.execute("INSERT INTO aliases(name, alias, model_id, updated_at) VALUES ('m', 'champion', 'm:v9', 0)")


# ---------------------------------------------------------------------------- home


def test_home_explicit_wins_over_env_and_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAYMLOPS_HOME", str(tmp_path / "from-env"))
    assert resolve_home(tmp_path / "explicit") == (tmp_path / "explicit").resolve()
    assert resolve_home(str(tmp_path / "explicit")) == (tmp_path / "explicit").resolve()


def test_home_env_wins_over_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAYMLOPS_HOME", str(tmp_path / "from-env"))
    assert resolve_home() == (tmp_path / "from-env").resolve()
    store = Store.open()
    assert store.home == (tmp_path / "from-env").resolve()
    assert (tmp_path / "from-env" / "metadata.db").is_file()
    assert not (tmp_path / ".raymlops").exists()


def test_home_defaults_to_dot_raymlops_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_home() == (tmp_path / ".raymlops").resolve()
    assert Store.open().home == (tmp_path / ".raymlops").resolve()
    assert (tmp_path / ".raymlops" / "metadata.db").is_file()


def test_relative_home_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    home = resolve_home("rel/home")
    assert home.is_absolute() and home == (tmp_path / "rel" / "home").resolve()


def test_artifact_root_env_moves_artifacts_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYMLOPS_ARTIFACT_ROOT", str(tmp_path / "elsewhere"))
    store = Store.open(tmp_path / "home")
    store.artifacts.write_bytes("a.bin", b"x")
    assert (tmp_path / "elsewhere" / "a.bin").read_bytes() == b"x"
    assert (tmp_path / "home" / "metadata.db").is_file()
    assert not (tmp_path / "home" / "artifacts").exists()


def test_a_home_records_its_artifact_root_and_refuses_another(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """A home made with RAYMLOPS_ARTIFACT_ROOT finds its artifacts there without it (a later `status`
    or `snapshot verify` had looked in an empty local folder); another root is refused, naming both."""
    from raymlops.cli import main
    from raymlops.exceptions import ConfigError

    elsewhere = tmp_path / "elsewhere"
    monkeypatch.setenv("RAYMLOPS_ARTIFACT_ROOT", str(elsewhere))
    Store.open(tmp_path / "home").artifacts.write_bytes("a.bin", b"x")
    monkeypatch.delenv("RAYMLOPS_ARTIFACT_ROOT")
    store = Store.open(tmp_path / "home")
    assert store.artifacts.read_bytes("a.bin") == b"x"
    assert not (tmp_path / "home" / "artifacts").exists()
    # the same place spelled another way is the same root
    assert Store.open(tmp_path / "home", artifact_root=elsewhere.as_uri()).artifacts.read_bytes("a.bin") == b"x"

    monkeypatch.setenv("RAYMLOPS_ARTIFACT_ROOT", str(tmp_path / "other"))
    with pytest.raises(ConfigError, match="RAYMLOPS_ARTIFACT_ROOT is") as exc:
        Store.open(tmp_path / "home")
    assert str(elsewhere) in str(exc.value) and str(tmp_path / "other") in str(exc.value)
    assert not (tmp_path / "other").exists()
    capsys.readouterr()
    assert main(["models", "list", "--home", str(tmp_path / "home")]) == 2
    assert "keeps its artifacts at" in capsys.readouterr().err

    # a home made on its own folder refuses an outside root too; a copy of it uses the copy's folder
    monkeypatch.delenv("RAYMLOPS_ARTIFACT_ROOT")
    Store.open(tmp_path / "local").artifacts.write_bytes("b.bin", b"y")
    with pytest.raises(ConfigError, match="its own folder"):
        Store.open(tmp_path / "local", artifact_root=str(elsewhere))
    import shutil

    shutil.copytree(tmp_path / "local", tmp_path / "copy")
    assert Store.open(tmp_path / "copy").artifacts.path("b.bin") == str(tmp_path / "copy" / "artifacts" / "b.bin")


def test_a_relative_artifact_root_is_recorded_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RAYMLOPS_ARTIFACT_ROOT", "arts")
    Store.open(tmp_path / "home").artifacts.write_bytes("a.bin", b"x")
    monkeypatch.delenv("RAYMLOPS_ARTIFACT_ROOT")
    monkeypatch.chdir(tmp_path / "home")
    assert Store.open(tmp_path / "home").artifacts.read_bytes("a.bin") == b"x"


def test_a_home_made_before_roots_were_recorded_keeps_taking_the_given_root(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Data in it, no recorded root: nothing is recorded (it may have been made on any root)."""
    from raymlops.store.home import ARTIFACT_ROOT_KEY

    store = Store.open(tmp_path / "home")
    with store.metadata.transaction() as conn:
        conn.execute("DELETE FROM meta WHERE key = ?", (ARTIFACT_ROOT_KEY,))
        conn.execute("INSERT INTO snapshots(id, created_at, source, rows, bytes, manifest_key, manifest_sha256) "
                     "VALUES ('s', 0, 'src', 1, 1, 'snapshots/s/manifest.json', '')")
    monkeypatch.setenv("RAYMLOPS_ARTIFACT_ROOT", str(tmp_path / "bucket"))
    assert Store.open(tmp_path / "home").artifacts.root == str(tmp_path / "bucket")
    monkeypatch.delenv("RAYMLOPS_ARTIFACT_ROOT")
    assert Store.open(tmp_path / "home").artifacts.root == str(tmp_path / "home" / "artifacts")
    with store.metadata.read() as conn:
        assert conn.execute("SELECT value FROM meta WHERE key = ?", (ARTIFACT_ROOT_KEY,)).fetchone() is None


# ---------------------------------------------------------------------------- artifacts


@pytest.fixture(params=["path", "file-uri"])
def artifacts(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    """The same contract for a plain local path and a ``file://`` URI root (pyarrow.fs from_uri)."""
    root = tmp_path / "artifacts"
    return ArtifactStore(str(root) if request.param == "path" else root.as_uri())


def _local(store: ArtifactStore, key: str) -> Path:
    return Path(store.path(key))


def test_file_uri_root_resolves_to_the_same_folder(tmp_path: Path) -> None:
    root = tmp_path / "artifacts"
    store = ArtifactStore(root.as_uri())
    assert store.root_uri.startswith("file://")
    assert store.is_local and Path(store.root) == root.resolve()
    assert root.is_dir()
    store.write_bytes("k/v.bin", b"data")
    assert (root / "k" / "v.bin").read_bytes() == b"data"
    fs, path = resolve_filesystem(root.as_uri())
    assert Path(path) == root.resolve()


def test_round_trip_and_sha256(artifacts: ArtifactStore) -> None:
    data = bytes(range(256)) * 5000  # > 1 MiB: hashed in several chunks
    digest = artifacts.write_bytes("models/m/v1/model.joblib", data)
    assert digest == hashlib.sha256(data).hexdigest()
    assert artifacts.exists("models/m/v1/model.joblib")
    assert artifacts.read_bytes("models/m/v1/model.joblib") == data
    assert artifacts.sha256("models/m/v1/model.joblib") == digest
    artifacts.verify("models/m/v1/model.joblib", digest)  # no exception
    # no temp files are left next to the object
    assert [p.name for p in _local(artifacts, "models/m/v1").iterdir()] == ["model.joblib"]


def test_overwrite_replaces_content(artifacts: ArtifactStore) -> None:
    artifacts.write_bytes("a.txt", b"first version")
    digest = artifacts.write_bytes("a.txt", b"second")
    assert artifacts.read_bytes("a.txt") == b"second"
    assert artifacts.sha256("a.txt") == digest


def test_verify_detects_a_changed_file(artifacts: ArtifactStore) -> None:
    digest = artifacts.write_bytes("m/model.joblib", b"original bytes")
    _local(artifacts, "m/model.joblib").write_bytes(b"original bytez")
    with pytest.raises(IntegrityError, match="m/model.joblib"):
        artifacts.verify("m/model.joblib", digest)


def test_read_verified_returns_the_bytes_only_when_their_sha256_matches(artifacts: ArtifactStore) -> None:
    digest = artifacts.write_bytes("m/model.joblib", b"original bytes")
    assert artifacts.read_verified("m/model.joblib", digest) == b"original bytes"
    _local(artifacts, "m/model.joblib").write_bytes(b"original bytez")
    with pytest.raises(IntegrityError, match=r"m/model.joblib.*was changed"):
        artifacts.read_verified("m/model.joblib", digest)
    with pytest.raises(NotFound, match="gone.joblib"):
        artifacts.read_verified("m/gone.joblib", digest)


def test_read_verified_of_a_recorded_file_names_it_when_missing_or_changed(artifacts: ArtifactStore) -> None:
    """With ``what``, a file the metadata recorded is an IntegrityError when it is gone too (not
    NotFound, which would read as a wrong name), and both messages say what the file is."""
    digest = artifacts.write_bytes("snapshots/s1/manifest.json", b"{}")
    what = "snapshot s1: manifest.json"
    assert artifacts.read_verified("snapshots/s1/manifest.json", digest, what) == b"{}"
    _local(artifacts, "snapshots/s1/manifest.json").write_bytes(b"{ }")
    with pytest.raises(IntegrityError, match=r"^snapshot s1: manifest.json: changed \(sha256 "):
        artifacts.read_verified("snapshots/s1/manifest.json", digest, what)
    _local(artifacts, "snapshots/s1/manifest.json").unlink()
    with pytest.raises(IntegrityError, match=r"^snapshot s1: manifest.json: missing$"):
        artifacts.read_verified("snapshots/s1/manifest.json", digest, what)


def test_missing_artifact_is_not_found(artifacts: ArtifactStore) -> None:
    assert not artifacts.exists("nope.bin")
    with pytest.raises(NotFound, match="nope.bin"):
        artifacts.read_bytes("nope.bin")
    with pytest.raises(NotFound):
        artifacts.sha256("nope.bin")
    with pytest.raises(KeyError):  # NotFound is also a KeyError
        artifacts.verify("nope.bin", "0" * 64)


@pytest.mark.parametrize("key", ["../x", "..", "a/../../x", "/etc/passwd", "a/b/../../../x"])
def test_keys_cannot_escape_the_root(artifacts: ArtifactStore, key: str) -> None:
    with pytest.raises(NotFound, match="outside the artifact store"):
        artifacts.path(key)
    with pytest.raises(NotFound):
        artifacts.write_bytes(key, b"x")


def test_keys_are_normalised_inside_the_root(artifacts: ArtifactStore) -> None:
    assert artifacts.path("a/./b/../c.bin") == artifacts.path("a/c.bin")
    assert artifacts.path("a/c.bin").startswith(artifacts.root + "/")


def _fill(store: ArtifactStore, key: str, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        store.write_bytes(f"{key}/{rel}", data)


def test_promote_moves_the_folder(artifacts: ArtifactStore) -> None:
    staging = artifacts.staging_key("snapshot")
    assert staging.startswith("staging/snapshot-") and staging != artifacts.staging_key("snapshot")
    _fill(artifacts, staging, {"part-0.parquet": b"abc", "sub/part-1.parquet": b"defg", "manifest.json": b"{}"})
    assert artifacts.promote(staging, "snapshots/s1") is True
    assert not artifacts.exists(staging)
    assert artifacts.read_bytes("snapshots/s1/sub/part-1.parquet") == b"defg"
    assert list(artifacts.list_files("snapshots/s1")) == [
        ("snapshots/s1/manifest.json", 2),
        ("snapshots/s1/part-0.parquet", 3),
        ("snapshots/s1/sub/part-1.parquet", 4),
    ]


def test_promote_to_existing_final_keeps_it_and_drops_staging(artifacts: ArtifactStore) -> None:
    first = artifacts.staging_key("snapshot")
    _fill(artifacts, first, {"data.bin": b"original"})
    assert artifacts.promote(first, "snapshots/s1") is True
    second = artifacts.staging_key("snapshot")
    _fill(artifacts, second, {"data.bin": b"duplicate", "extra.bin": b"e"})
    assert artifacts.promote(second, "snapshots/s1") is False
    assert not artifacts.exists(second)
    assert artifacts.read_bytes("snapshots/s1/data.bin") == b"original"
    assert not artifacts.exists("snapshots/s1/extra.bin")


def test_list_files_sorted_with_sizes(artifacts: ArtifactStore) -> None:
    _fill(artifacts, "d", {"b.bin": b"22", "a.bin": b"1", "c/z.bin": b"", "c/a.bin": b"4444"})
    artifacts.write_bytes("other/x.bin", b"not listed")
    listed = list(artifacts.list_files("d"))
    assert listed == [("d/a.bin", 1), ("d/b.bin", 2), ("d/c/a.bin", 4), ("d/c/z.bin", 0)]
    assert list(artifacts.list_files("does-not-exist")) == []


def test_delete_file_and_folder(artifacts: ArtifactStore) -> None:
    _fill(artifacts, "d", {"a.bin": b"1", "sub/b.bin": b"2"})
    artifacts.delete("d/a.bin")
    assert not artifacts.exists("d/a.bin") and artifacts.exists("d/sub/b.bin")
    artifacts.delete("d")
    assert not artifacts.exists("d")
    artifacts.delete("d")  # deleting what is not there is not an error


def test_local_uri_is_reopenable(artifacts: ArtifactStore) -> None:
    artifacts.write_bytes("k/a.bin", b"payload")
    fs, path = resolve_filesystem(artifacts.uri("k/a.bin"))
    with fs.open_input_stream(path) as f:
        assert f.read() == b"payload"


def test_bad_storage_uri_is_a_config_error(tmp_path: Path) -> None:
    from raymlops.exceptions import ConfigError

    with pytest.raises(ConfigError, match="nosuchscheme://"):
        ArtifactStore("nosuchscheme://bucket/prefix")


def test_a_home_that_is_a_file_or_cannot_be_made_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--home`` naming a file (a typo, a stray path) was a FileExistsError traceback, exit 1."""
    from raymlops.cli import main
    from raymlops.exceptions import ConfigError
    from raymlops.store.artifacts import StorageError

    stray = tmp_path / "notes.txt"
    stray.write_text("x", encoding="utf-8")
    with pytest.raises(ConfigError, match="the raymlops home must be a folder, and this is a file"):
        Store.open(stray)
    with pytest.raises(StorageError, match=r"cannot create the raymlops home .*notes.txt/home: Not a directory"):
        Store.open(stray / "home")
    assert main(["models", "list", "--home", str(stray)]) == 2
    err = capsys.readouterr().err
    assert "must be a folder" in err and "Traceback" not in err
    assert stray.read_text(encoding="utf-8") == "x"


def test_models_list_of_an_empty_home_says_so_and_webhooks_of_no_home_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`models list` of a home without models printed nothing; `webhooks list` of a mistyped --home
    said "no webhooks", exit 0, where every other command that reads says there is no home."""
    from raymlops.cli import main

    Store.open(tmp_path / "home")
    assert main(["models", "list", "--home", str(tmp_path / "home")]) == 0
    assert capsys.readouterr().out.strip() == "no model versions registered"
    for verb in ("list", "deliveries"):
        assert main(["--home", str(tmp_path / "nohome"), "webhooks", verb]) == 2
        assert "no raymlops home at" in capsys.readouterr().err
    assert not (tmp_path / "nohome").exists()

