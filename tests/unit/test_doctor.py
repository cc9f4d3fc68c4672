"""`raymlops doctor` (raymlops.registry.doctor): what it finds in a home folder and what --repair touches."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.linear_model import LogisticRegression

from raymlops import audit
from raymlops.cli import main
from raymlops.data.schema import infer_schema
from raymlops.registry import register_model
from raymlops.registry.doctor import check_home, run_doctor
from raymlops.store import Store


def _snapshot(store: Store, rows: int = 50) -> str:
    """A committed snapshot as create_snapshot lays it out (written here without Ray)."""
    table = pa.table({"x": np.arange(rows, dtype=np.float64), "y": np.arange(rows) % 2})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    data = buf.getvalue()
    snap_id = hashlib.sha256(data).hexdigest()
    staging = store.artifacts.staging_key("snapshot")
    sha = store.artifacts.write_bytes(f"{staging}/data/part-00000-0.parquet", data)
    manifest = {"format_version": 1, "id": snap_id, "created_at": time.time(), "source": "mem://t", "rows": rows,
                "bytes": len(data), "schema": infer_schema(table).to_dict(),
                "files": [{"path": "data/part-00000-0.parquet", "size": len(data), "sha256": sha}]}
    manifest_sha = store.artifacts.write_bytes(f"{staging}/manifest.json", json.dumps(manifest).encode())
    assert store.artifacts.promote(staging, f"snapshots/{snap_id}")
    with store.metadata.transaction() as conn:
        conn.execute("INSERT INTO snapshots(id, created_at, source, rows, bytes, manifest_key, manifest_sha256)"
                     " VALUES (?, ?, 'mem://t', ?, ?, ?, ?)",
                     (snap_id, time.time(), rows, len(data), f"snapshots/{snap_id}/manifest.json", manifest_sha))
        audit.append(conn, "snapshot.created", {"snapshot": snap_id})
    return snap_id


def _model(store: Store, snap_id: str) -> str:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    y = (X[:, 0] > 0).astype(int)
    version = register_model(store, "m", LogisticRegression().fit(X, y), snapshot_id=snap_id,
                             signature={"inputs": [{"name": "a"}, {"name": "b"}], "output": "classification",
                                        "classes": [0, 1]},
                             metrics={"accuracy": 1.0}, gate={"status": "passed", "reasons": []}, lineage={})
    return version.artifact_key


def _orphan(store: Store, age_s: float = 0.0) -> str:
    key = store.artifacts.staging_key("snapshot")
    store.artifacts.write_bytes(f"{key}/data/part-00000-0.parquet", b"half a snapshot")
    if age_s:
        old = time.time() - age_s
        for path in (Path(store.artifacts.path(key)) / "data" / "part-00000-0.parquet",
                     Path(store.artifacts.path(key)) / "data", Path(store.artifacts.path(key))):
            os.utime(path, (old, old))
    return key


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    store = Store.open(tmp_path / "home")
    snap = _snapshot(store)
    _model(store, snap)
    return store.home


def test_a_consistent_home_is_all_well_and_a_fresh_staging_folder_is_not_an_orphan(home: Path, capsys) -> None:
    store = Store.open(home)
    young = _orphan(store)  # a write in progress: younger than the grace period
    report = check_home(home)
    assert report.ok, [f.message for f in report.problems]
    assert {f.check for f in report.findings} == {"metadata", "snapshots", "models", "staging", "audit"}
    assert any("in use by a running write" in f.message for f in report.findings)
    assert main(["doctor", "--home", str(home)]) == 0
    assert "all is well" in capsys.readouterr().out
    assert store.artifacts.exists(young)


def test_doctor_finds_a_deleted_snapshot_file_a_changed_model_and_an_orphan(home: Path, capsys) -> None:
    store = Store.open(home)
    snap_file = next(k for k, _ in store.artifacts.list_files("snapshots") if k.endswith(".parquet"))
    Path(store.artifacts.path(snap_file)).unlink()
    model_key = next(k for k, _ in store.artifacts.list_files("models"))
    Path(store.artifacts.path(model_key)).write_bytes(b"not the registered model")
    orphan = _orphan(store, age_s=2 * 3600)

    assert main(["doctor", "--home", str(home), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    problems = {f["check"]: f for f in report["findings"] if not f["ok"]}
    assert set(problems) == {"snapshots", "models", "staging"}
    assert "part-00000-0.parquet: missing" in problems["snapshots"]["message"]
    assert "m:v1" in problems["models"]["message"] and "was changed" in problems["models"]["message"]
    assert problems["staging"]["subject"] == orphan and problems["staging"]["repairable"] is True

    assert main(["doctor", "--home", str(home)]) == 1
    text = capsys.readouterr().out
    assert text.count("PROBLEM") == 3 and "--repair" in text


def test_repair_removes_only_the_orphaned_staging_folder(home: Path, capsys) -> None:
    store = Store.open(home)
    model_key = next(k for k, _ in store.artifacts.list_files("models"))
    model_path = Path(store.artifacts.path(model_key))
    original = model_path.read_bytes()
    model_path.write_bytes(b"not the registered model")
    orphan = _orphan(store, age_s=10)
    young = _orphan(store)
    root = Path(store.artifacts.root)
    before = _files(root)

    # --older-than 0 would take the young one too; 5 s keeps it
    assert main(["doctor", "--home", str(home), "--repair", "--older-than", "5"]) == 1  # the model is still wrong
    out = capsys.readouterr().out
    assert f"removed {orphan}" in out
    after = _files(root)
    assert set(before) - set(after) == {f"{orphan}/data/part-00000-0.parquet"}
    assert all(after[k] == v for k, v in before.items() if k in after)  # nothing else changed
    assert store.artifacts.exists(young) and not store.artifacts.exists(orphan)
    assert [r.action for r in audit.records(store.metadata)][-1] == "staging.removed"
    assert model_path.read_bytes() == b"not the registered model"  # repair does not touch models

    model_path.write_bytes(original)  # restored from a backup: all is well again
    assert run_doctor(home, older_than_s=3600).ok


def test_repair_with_grace_zero_takes_every_staging_folder(home: Path) -> None:
    store = Store.open(home)
    keys = [_orphan(store), _orphan(store)]
    report = run_doctor(home, older_than_s=0, fix=True)
    assert sorted(report.repaired) == sorted(keys) and report.ok
    assert list(store.artifacts.list_files("staging")) == []


def test_doctor_reports_a_broken_audit_chain(home: Path) -> None:
    store = Store.open(home)
    with store.metadata.transaction() as conn:
        conn.execute("UPDATE audit SET record_json = replace(record_json, 'snapshot', 'snapsh0t') WHERE seq = 1")
    report = check_home(home)
    assert [f.check for f in report.problems] == ["audit"]
    assert "audit record 1" in report.problems[0].message


def test_unreadable_metadata_is_reported_not_a_crash(tmp_path: Path, capsys) -> None:
    home = tmp_path / "home"
    Store.open(home)
    for extra in ("metadata.db-wal", "metadata.db-shm"):
        (home / extra).unlink(missing_ok=True)
    (home / "metadata.db").write_bytes(b"this is not an SQLite database at all" * 200)
    assert main(["doctor", "--home", str(home), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["findings"][0]["check"] == "metadata" and not report["findings"][0]["ok"]
    assert "cannot read metadata.db" in report["findings"][0]["message"]


def test_missing_home_or_bad_grace_is_bad_input(tmp_path: Path, capsys) -> None:
    assert main(["doctor", "--home", str(tmp_path / "nope")]) == 2
    assert "no raymlops home" in capsys.readouterr().err
    assert not (tmp_path / "nope").exists()  # doctor does not create what it checks
    with pytest.raises(SystemExit) as info:
        main(["doctor", "--home", str(tmp_path), "--older-than", "-1"])
    assert info.value.code == 2


def test_a_run_whose_process_was_killed_is_abandoned_and_repair_records_it(home: Path, capsys) -> None:
    """SIGKILL (or the out-of-memory killer) mid-run: the run stayed `running` for good in `runs`,
    and doctor said all is well. A live run is left alone."""
    import socket
    import subprocess
    import sys

    from raymlops.pipeline.history import RunRecorder, get_run, list_runs, who

    store = Store.open(home)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # its pid is now a process that is gone
    dead = {**who(), "pid": child.pid}
    RunRecorder(store.metadata, "20261207-000000-dead00").save_run(
        pipeline="p", status="running", config_hash="c", started_at=time.time() - 60, ended_at=None,
        record={"who": dead})
    RunRecorder(store.metadata, "20261207-000000-dead00").save_step(  # the step it died in
        0, {"name": "train", "status": "running", "started_at": time.time() - 50})
    RunRecorder(store.metadata, "20261207-000001-live00").save_run(  # this process: alive
        pipeline="p", status="running", config_hash="c", started_at=time.time(), ended_at=None, record={"who": who()})
    RunRecorder(store.metadata, "20261207-000002-else00").save_run(  # another host: not known here
        pipeline="p", status="running", config_hash="c", started_at=time.time(), ended_at=None,
        record={"who": {**dead, "host": socket.gethostname() + "-other"}})
    statuses = {r["run"]: r["status"] for r in list_runs(store.metadata)}
    assert statuses == {"20261207-000000-dead00": "abandoned", "20261207-000001-live00": "running",
                        "20261207-000002-else00": "running"}
    dead_run = get_run(store.metadata, "20261207-000000-dead00")
    assert dead_run["status"] == "abandoned" and dead_run["steps"][0]["status"] == "abandoned"  # not "running"
    report = check_home(home)
    runs = [f for f in report.findings if f.check == "runs"]
    assert [(f.subject, f.ok, f.repairable) for f in runs] == [("20261207-000000-dead00", False, True)]
    assert f"pid {child.pid}" in runs[0].message and not report.ok
    assert main(["doctor", "--home", str(home), "--repair"]) == 0
    assert "run 20261207-000000-dead00" in capsys.readouterr().out
    with store.metadata.read() as conn:
        row = conn.execute("SELECT status, ended_at FROM runs WHERE id = '20261207-000000-dead00'").fetchone()
    assert row[0] == "abandoned" and row[1] is not None
    assert row[1] < time.time() - 40  # its train step's start, 50 s ago: not the repair's time
    assert [r.action for r in audit.records(store.metadata)][-1] == "run.abandoned" and audit.verify(store.metadata)[0]
    assert run_doctor(home).ok


def test_a_changed_manifest_is_named_once_with_its_snapshot(home: Path, capsys) -> None:
    store = Store.open(home)
    manifest = next(k for k, _ in store.artifacts.list_files("snapshots") if k.endswith("manifest.json"))
    snap_id = manifest.split("/")[1]
    Path(store.artifacts.path(manifest)).write_bytes(b'{"tampered": true}')
    assert main(["doctor", "--home", str(home), "--json"]) == 1
    (finding,) = [f for f in json.loads(capsys.readouterr().out)["findings"] if not f["ok"]]
    assert f"{snap_id[:12]}: manifest.json: changed" in finding["message"]
    assert finding["message"].count(snap_id[:12]) == 1, finding["message"]


def test_doctor_uses_the_recorded_artifact_root_and_names_a_stray_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """With a stray RAYMLOPS_ARTIFACT_ROOT, every other command said the home keeps its artifacts
    elsewhere (exit 2); doctor reported every snapshot and model missing (exit 1) and made the folder."""
    monkeypatch.setenv("RAYMLOPS_ARTIFACT_ROOT", str(tmp_path / "bucket"))
    store = Store.open(tmp_path / "home")
    store.artifacts.write_bytes("k.bin", b"x")
    monkeypatch.delenv("RAYMLOPS_ARTIFACT_ROOT")
    capsys.readouterr()
    assert main(["doctor", "--home", str(tmp_path / "home")]) == 0  # the recorded root, without the variable
    monkeypatch.setenv("RAYMLOPS_ARTIFACT_ROOT", str(tmp_path / "stray"))
    assert main(["doctor", "--home", str(tmp_path / "home")]) == 2
    err = capsys.readouterr().err
    assert "keeps its artifacts at" in err and str(tmp_path / "stray") in err, err
    assert not (tmp_path / "stray").exists()


def test_a_damaged_webhooks_db_is_named_and_doctor_finds_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A damaged webhooks.db was reported as the (healthy) metadata.db, and doctor said all was well."""
    home = tmp_path / "home"
    assert main(["webhooks", "add", "http://127.0.0.1:9/hook", "--events", "*", "--home", str(home)]) == 0
    (home / "webhooks.db").write_bytes(os.urandom(20480))
    for suffix in ("-wal", "-shm"):
        (home / f"webhooks.db{suffix}").unlink(missing_ok=True)
    capsys.readouterr()
    assert main(["webhooks", "list", "--home", str(home)]) == 1
    err = capsys.readouterr().err
    assert f"the home's database {home / 'webhooks.db'}:" in err and "metadata.db" not in err, err
    assert main(["doctor", "--home", str(home), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    bad = [f for f in report["findings"] if not f["ok"]]
    assert [f["check"] for f in bad] == ["webhooks"] and "cannot read webhooks.db" in bad[0]["message"], bad
