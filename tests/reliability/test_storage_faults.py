"""Fault 6: the artifact root is full or not writable. The user gets one clear error naming the
root, the key and the reason (no traceback from the CLI), and nothing half-written is visible or
left behind: no version row, no temporary file, no staging folder; writes work again once the
space is back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.faults import NO_OVERRIDE, ROOT, check_store, clean_env, cli, file_limit, store_write


def _nothing_left(home: Path, artifacts: Path) -> None:
    assert list(artifacts.rglob("*.tmp-*")) == []
    assert not any((artifacts / "staging").glob("*"))
    state = check_store(home)
    assert state["problems"] == [] and state["models"] == 0, state


@pytest.fixture()
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (a real ENOSPC); needs the right to mount, which CI containers running as root have."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a 1 MiB tmpfs needs root (the RLIMIT_FSIZE test covers a full disk without it)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_full_artifact_root_is_a_clear_error_and_leaves_nothing(tmp_path: Path, tiny_disk: Path) -> None:
    home = tmp_path / "home"
    env = clean_env(RAYMLOPS_ARTIFACT_ROOT=str(tiny_disk))
    out = store_write(home, 400_000, env)  # a 3.2 MB artifact on a 1 MiB disk
    assert out.get("raymlops") is True and out["error"] == "StorageError", out
    assert "No space left on device" in out["message"] and str(tiny_disk) in out["message"], out
    assert "models/disk/" in out["message"]
    assert list(tiny_disk.rglob("*.tmp-*")) == []  # the partial temp file was removed
    doctor = cli("doctor", "--home", str(home), "--json", env=env)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert json.loads(doctor.stdout.splitlines()[-1])["ok"] is True
    # space is there for a small one: the store works on
    assert store_write(home, 1_000, env) == {"ok": "disk:v1"}


def test_file_size_limit_is_a_clear_error_and_leaves_nothing(tmp_path: Path) -> None:
    """The same without root: RLIMIT_FSIZE makes write() fail (EFBIG) like a full disk does."""
    home = tmp_path / "home"
    out = store_write(home, 400_000, clean_env(), preexec=file_limit(1 << 20))
    assert out.get("raymlops") is True and out["error"] == "StorageError", out
    assert "File too large" in out["message"] and "models/disk/" in out["message"], out
    _nothing_left(home, home / "artifacts")


def test_unwritable_artifact_root_is_a_clear_error_and_leaves_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    arts = tmp_path / "arts"
    arts.mkdir()
    env = clean_env(RAYMLOPS_ARTIFACT_ROOT=str(arts))
    arts.chmod(0o555)
    try:
        out = store_write(home, 1_000, env, prefix=NO_OVERRIDE)
        assert out.get("raymlops") is True and out["error"] == "StorageError", out
        assert "Permission denied" in out["message"] and str(arts) in out["message"], out
        # the CLI, a new home on a root it cannot make: one line naming the root and the reason, exit 1,
        # no traceback, and the home does not record the root (``home`` keeps its artifacts at ``arts``:
        # another root for it would be a config error)
        nested = str(arts / "sub")
        from raymlops.store.home import ARTIFACT_ROOT_KEY
        from raymlops.store.metadata import MetadataStore

        new_home = MetadataStore(tmp_path / "home-cli" / "metadata.db")
        proc = subprocess.run([*NO_OVERRIDE, sys.executable, "-m", "raymlops.cli", "models", "list", "--home",
                               str(tmp_path / "home-cli")], capture_output=True, text=True,
                              env=clean_env(RAYMLOPS_ARTIFACT_ROOT=nested),
                              cwd=ROOT, timeout=120)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "Permission denied" in proc.stderr and nested in proc.stderr
        with new_home.read() as conn:
            assert conn.execute("SELECT value FROM meta WHERE key = ?", (ARTIFACT_ROOT_KEY,)).fetchone() is None
    finally:
        arts.chmod(0o755)
    assert list(arts.rglob("*")) == []  # nothing written, not even a temp file
    assert check_store(home)["models"] == 0


def test_snapshot_on_a_full_artifact_root_fails_whole(tmp_path: Path, tiny_disk: Path, ray_local: str) -> None:
    """Ray Data's workers hit the full disk while writing Parquet: the error names the reason,
    the staging folder is removed, and no snapshot is recorded."""
    import numpy as np
    import pyarrow as pa
    import ray.data

    from raymlops.data.snapshot import create_snapshot, list_snapshots
    from raymlops.store.artifacts import StorageError
    from raymlops.store.home import Store

    store = Store.open(tmp_path / "home", artifact_root=str(tiny_disk))
    rng = np.random.default_rng(0)
    table = pa.table({f"c{j}": rng.normal(size=100_000) for j in range(4)})  # 3.2 MB of incompressible floats
    with pytest.raises(StorageError) as info:
        create_snapshot(store, ray.data.from_arrow(table).repartition(4), "reliability://full")
    text = str(info.value)  # one line: what, where, why; not the worker's traceback
    assert text.startswith("cannot write snapshot ") and text.endswith(": No space left on device"), text
    assert str(tiny_disk) in text and "\n" not in text
    assert list_snapshots(store) == []
    assert [p for p in tiny_disk.rglob("*") if p.is_file()] == []  # staging removed, no temp file
