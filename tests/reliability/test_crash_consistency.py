"""Fault 4 (driver SIGKILLed at random points of model registration and snapshot commit) and
fault 5 (eight processes registering and moving aliases at once).

Afterwards the user's own checks must pass (``raymlops doctor``, ``raymlops snapshot verify``,
``raymlops audit verify``), nothing partial may be visible through SQLite, and work goes on:
an undisturbed run gets the snapshot ids that a run nobody killed gets."""

from __future__ import annotations

from pathlib import Path

from tests.reliability.faults import check_store, cli, concurrent_writers, kill_campaign

REGISTER_KILLS = 10
SNAPSHOT_KILLS = 2


def test_sigkill_during_registration_leaves_a_consistent_store(tmp_path: Path) -> None:
    home = tmp_path / "home"
    report = kill_campaign("register", home, REGISTER_KILLS, seed=11, max_delay_s=0.4)
    assert report.failed_to_start == [] and report.kills == REGISTER_KILLS
    assert report.phases["register"] >= 1, report.phases  # most kills land inside register_model
    state = check_store(home)
    assert state["problems"] == [], state
    assert state["models"] >= 1 and state["alias_moves"] >= state["models"]

    # a new driver carries on where the killed ones stopped: next version number, chain intact
    from raymlops.registry.registry import get_model
    from raymlops.store.home import Store
    from tests.reliability.fault_driver import _register

    store = Store.open(home)
    v = _register(store, "crash", [1.0, 2.0], "s" * 64)
    assert v.version == state["models"] + 1 and get_model(store, "crash@champion").id == v.id
    assert cli("audit", "verify", "--home", str(home)).returncode == 0
    # half-written temp files of killed writes: invisible, and doctor --repair removes them once old
    repaired = cli("doctor", "--home", str(home), "--repair", "--older-than", "0")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert check_store(home)["leftovers"]["tmp_files"] == []


def test_doctor_reports_and_repairs_half_written_temp_files(tmp_path: Path) -> None:
    from raymlops.registry.doctor import run_doctor
    from raymlops.store.home import Store

    store = Store.open(tmp_path / "home")
    store.artifacts.write_bytes("models/m/abc/model.joblib", b"complete")
    partial = tmp_path / "home" / "artifacts" / "models" / "m" / "def" / "model.joblib.tmp-0123abcd"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"half")  # what a SIGKILL in ArtifactStore.write_bytes leaves
    assert run_doctor(store.home).ok  # young: a write may be in progress
    report = run_doctor(store.home, older_than_s=0)
    assert not report.ok
    [finding] = report.problems
    assert finding.repairable and finding.subject == "models/m/def/model.joblib.tmp-0123abcd"
    assert "half-written temporary file" in finding.message
    fixed = run_doctor(store.home, older_than_s=0, fix=True)
    assert fixed.ok and fixed.repaired == ["models/m/def/model.joblib.tmp-0123abcd"]
    assert not partial.exists() and store.artifacts.read_bytes("models/m/abc/model.joblib") == b"complete"


def test_sigkill_during_snapshot_commit_leaves_no_partial_snapshot(tmp_path: Path, ray_local: str) -> None:
    import ray.data

    from raymlops.data.snapshot import create_snapshot, list_snapshots
    from raymlops.store.home import Store
    from tests.reliability.fault_driver import table_for

    home = tmp_path / "home"
    report = kill_campaign("snapshot", home, SNAPSHOT_KILLS, seed=3, max_delay_s=5.0, address=ray_local)
    assert report.failed_to_start == [] and report.kills == SNAPSHOT_KILLS
    state = check_store(home, cli_verify_all=False)  # doctor re-hashes every snapshot; the CLI the newest
    assert state["problems"] == [], state
    # only complete snapshots are recorded, and their rows are all there
    store = Store.open(home)
    committed = list_snapshots(store)
    for s in committed:
        assert s["rows"] == 4_000
    assert len(committed) <= 5  # five contents: a content committed twice would be a second id

    # undisturbed runs, in the crashed home and in a fresh one, give the same ids for the same data
    clean = Store.open(tmp_path / "clean")
    contents = [(3 * 1000 + i) % 5 for i in range(SNAPSHOT_KILLS)]  # what the killed drivers were writing
    ids = {s["id"] for s in committed}  # a killed driver may have committed a few before its kill
    for content in contents:
        ds = ray.data.from_arrow(table_for(content)).repartition(4)
        after_crash = create_snapshot(store, ds, "reliability://crash")
        undisturbed = create_snapshot(clean, ds, "reliability://crash")
        assert after_crash.id == undisturbed.id and after_crash.rows == 4_000
        ids.add(after_crash.id)
    state = check_store(home, cli_verify_all=False)
    # the same content again is the snapshot already there, never a second one
    assert state["problems"] == [] and state["snapshots"] == len(ids), state
    # what the killed runs left (staging folders) is reported by doctor once old, and repaired
    repaired = cli("doctor", "--home", str(home), "--repair", "--older-than", "0")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert check_store(home, cli_verify_all=False)["leftovers"]["staging"] == []


def test_eight_concurrent_writers_lose_no_update(tmp_path: Path) -> None:
    result = concurrent_writers(tmp_path / "home", writers=8, per_writer=5)
    assert result["errors"] == [] and result["database_is_locked"] == 0, result["errors"][:3]
    assert result["problems"] == [], result["problems"]
    assert result["registered"] == 40 and result["alias_moves"] == 120
    state = check_store(tmp_path / "home")
    assert state["problems"] == [], state
    assert state["audit_records"] == 40 + 120  # one record per registration and per alias move
