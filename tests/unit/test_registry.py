"""The model registry (raymlops.registry): versions, the champion alias, integrity, audit and lineage."""

from __future__ import annotations

import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from raymlops import audit
from raymlops.exceptions import IntegrityError, NotFound
from raymlops.registry import (
    CHAMPION,
    code_version,
    get_model,
    list_models,
    load_model,
    package_versions,
    register_model,
)
from raymlops.registry.lineage import raymlops_source
from raymlops.store import Store

SIGNATURE = {"inputs": [{"name": "a"}, {"name": "b"}], "output": "classification", "classes": [0, 1]}
PASSED = {"status": "passed", "reasons": []}
REJECTED = {
    "status": "rejected",
    "reasons": ["roc_auc >= 0.99 failed: roc_auc = 0.9100", "accuracy >= 0.9: metric missing"],
}


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    return X, y


def _model(C: float = 1.0) -> LogisticRegression:
    X, y = _data()
    return LogisticRegression(C=C).fit(X, y)


def _register(store: Store, model: Any, gate: dict[str, Any] = PASSED, name: str = "churn", **extra: Any) -> Any:
    return register_model(
        store,
        name,
        model,
        snapshot_id="snap-" + "a" * 60,
        signature=SIGNATURE,
        metrics={"roc_auc": 0.97, "accuracy": 0.91},
        gate=gate,
        lineage={"config_hash": "c" * 64, "code": {"git_commit": "deadbeef", "dirty": False}},
        **extra,
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "home")


# ---------------------------------------------------------------------------- versions and aliases


def test_versions_increment_per_name(store: Store) -> None:
    v1 = _register(store, _model())
    v2 = _register(store, _model(0.1))
    other = _register(store, _model(), name="fraud")
    assert (v1.id, v1.version) == ("churn:v1", 1)
    assert (v2.id, v2.version) == ("churn:v2", 2)
    assert other.id == "fraud:v1"
    assert [v.id for v in list_models(store)] == ["churn:v1", "churn:v2", "fraud:v1"]
    assert [v.id for v in list_models(store, "churn")] == ["churn:v1", "churn:v2"]


def test_version_records_what_was_registered(store: Store) -> None:
    v = _register(store, _model(), tune={"trials": 4}, reason="nightly retrain")
    assert v.status == "registered"
    assert v.snapshot_id == "snap-" + "a" * 60
    assert v.signature == SIGNATURE
    assert v.record["metrics"] == {"roc_auc": 0.97, "accuracy": 0.91}
    assert v.record["gate"] == PASSED and v.record["tune"] == {"trials": 4}
    assert v.record["lineage"]["config_hash"] == "c" * 64
    assert v.artifact_key == f"models/churn/{v.artifact_sha256}/model.joblib"
    assert store.artifacts.sha256(v.artifact_key) == v.artifact_sha256
    assert v.to_dict()["id"] == "churn:v1" and v.to_dict()["metrics"] == v.record["metrics"]
    assert get_model(store, "churn:v1") == v


def test_passed_gate_moves_champion(store: Store) -> None:
    _register(store, _model())
    assert get_model(store, f"churn@{CHAMPION}").id == "churn:v1"
    _register(store, _model(0.1))
    assert get_model(store, "churn@champion").id == "churn:v2"


def test_registering_without_an_alias_leaves_the_champion_and_writes_no_rejection(store: Store) -> None:
    from raymlops.audit import records

    _register(store, _model())
    challenger = _register(store, _model(0.1), alias=None, reason="alert drift:x")
    assert challenger.status == "registered"
    assert get_model(store, "churn@champion").id == "churn:v1"
    actions = [(r.action, r.record["ids"].get("model")) for r in records(store.metadata)]
    assert actions[-1] == ("model.registered", "churn:v2")  # no alias move, no gate.rejected
    staged = _register(store, _model(0.2), alias="staging")
    assert get_model(store, "churn@staging").id == staged.id == "churn:v3"
    assert get_model(store, "churn@champion").id == "churn:v1"


def test_rejected_gate_is_recorded_and_does_not_move_champion(store: Store) -> None:
    _register(store, _model())
    rejected = _register(store, _model(0.01), gate=REJECTED)
    assert rejected.id == "churn:v2" and rejected.status == "rejected"
    assert rejected.record["gate"]["reasons"] == REJECTED["reasons"]
    assert get_model(store, "churn@champion").id == "churn:v1"
    # a rejected first version leaves no champion at all
    _register(store, _model(), gate=REJECTED, name="fraud")
    with pytest.raises(NotFound):
        get_model(store, "fraud@champion")


def test_load_model_predicts_like_the_original(store: Store) -> None:
    model = _model(0.3)
    v = _register(store, model)
    loaded = load_model(store, get_model(store, v.id))
    X, _ = _data()
    assert loaded is not model
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X))


def test_changed_artifact_is_refused(store: Store) -> None:
    v = _register(store, _model())
    path = Path(store.artifacts.path(v.artifact_key))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="models/churn/.*was changed"):
        load_model(store, v)


def test_replaced_artifact_is_refused(store: Store) -> None:
    v1 = _register(store, _model())
    v2 = _register(store, _model(0.01))
    shutil.copyfile(store.artifacts.path(v2.artifact_key), store.artifacts.path(v1.artifact_key))
    with pytest.raises(IntegrityError):
        load_model(store, v1)
    load_model(store, v2)  # the other version is untouched


@pytest.mark.parametrize("ref", ["churn:v9", "nope:v1", "churn@staging", "nope@champion", "churn"])
def test_unknown_ref_is_not_found(store: Store, ref: str) -> None:
    _register(store, _model())
    with pytest.raises(NotFound) as info:
        get_model(store, ref)
    assert isinstance(info.value, KeyError)
    assert ref in str(info.value) and not str(info.value).startswith('"')


def test_audit_records_registration_alias_and_rejection(store: Store) -> None:
    _register(store, _model(), reason="first")
    _register(store, _model(0.01), gate=REJECTED)
    actions = [(r.action, r.record["ids"]) for r in audit.records(store.metadata)]
    assert actions == [
        ("model.registered", {"model": "churn:v1", "snapshot": "snap-" + "a" * 60}),
        ("alias.moved", {"model": "churn:v1", "alias": "champion", "previous": None}),
        ("model.registered", {"model": "churn:v2", "snapshot": "snap-" + "a" * 60}),
        ("gate.rejected", {"model": "churn:v2"}),
    ]
    first = audit.records(store.metadata, action="model.registered")[0]
    assert first.record["reason"] == "first"
    assert first.record["how"]["status"] == "registered" and first.record["how"]["config_hash"] == "c" * 64
    rejected = audit.records(store.metadata, action="gate.rejected")[0]
    assert rejected.record["reason"] == "; ".join(REJECTED["reasons"])
    ok, message = audit.verify(store.metadata)
    assert ok, message
    assert "4 records" in message


def test_failed_registration_writes_no_version_and_no_audit(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_append(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("disk full")

    monkeypatch.setattr(audit, "append", broken_append)
    with pytest.raises(RuntimeError):
        _register(store, _model())
    monkeypatch.undo()
    assert list_models(store) == [] and audit.records(store.metadata) == []
    assert _register(store, _model()).id == "churn:v1"


def test_concurrent_registration_keeps_the_other_versions_artifact(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = Store.open(store.home)  # a second writer on the same home (own connections, own ArtifactStore)
    real_write = store.artifacts.write_bytes
    raced = []

    def write_after_the_other_writer(key: str, data: bytes) -> str:
        if not raced:  # the other writer commits v1 between our version read and our artifact write
            raced.append(_register(other, _model(0.01)))
        return real_write(key, data)

    monkeypatch.setattr(store.artifacts, "write_bytes", write_after_the_other_writer)
    mine = _register(store, _model(1.0))
    assert raced[0].id == "churn:v1" and mine.id == "churn:v2"
    theirs = load_model(store, get_model(store, "churn:v1"))
    X, _ = _data()
    np.testing.assert_allclose(theirs.predict_proba(X), _model(0.01).predict_proba(X))


# ---------------------------------------------------------------------------- lineage


GIT = [
    "git",
    "-c",
    "user.email=test@example.com",
    "-c",
    "user.name=Test",
    "-c",
    "commit.gpgsign=false",
    "-c",
    "init.defaultBranch=main",
]


@pytest.fixture
def git_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_CONFIG_GLOBAL"):
        monkeypatch.delenv(name, raising=False)
    # never find a repository above the test folder
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    return tmp_path


def _git(cwd: Path, *args: str) -> str:
    out = subprocess.run([*GIT, *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=30)
    return out.stdout.strip()


def test_code_version_in_a_clean_repo(git_env: Path) -> None:
    repo = git_env / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "train.py").write_text("print('v1')\n")
    _git(repo, "add", "train.py")
    _git(repo, "commit", "-q", "-m", "first")
    head = _git(repo, "rev-parse", "HEAD")
    assert len(head) == 40
    version = code_version(repo)
    assert version == {"git_commit": head, "dirty": False, "dirty_hash": None,
                       "raymlops_source": raymlops_source()}
    (repo / "sub").mkdir()
    assert code_version(repo / "sub")["git_commit"] == head
    # untracked files do not make the tree dirty
    (repo / "notes.txt").write_text("scratch")
    assert code_version(repo)["dirty"] is False


def test_code_version_flags_a_dirty_tree(git_env: Path) -> None:
    repo = git_env / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "train.py").write_text("print('v1')\n")
    _git(repo, "add", "train.py")
    _git(repo, "commit", "-q", "-m", "first")
    head = _git(repo, "rev-parse", "HEAD")

    (repo / "train.py").write_text("print('v2')\n")
    dirty = code_version(repo)
    assert dirty["git_commit"] == head and dirty["dirty"] is True
    assert isinstance(dirty["dirty_hash"], str) and len(dirty["dirty_hash"]) == 16
    assert code_version(repo) == dirty  # the same edit hashes the same

    (repo / "train.py").write_text("print('v3')\n")
    assert code_version(repo)["dirty_hash"] != dirty["dirty_hash"]

    _git(repo, "commit", "-q", "-am", "second")
    after = code_version(repo)
    assert after["git_commit"] != head and after["dirty"] is False


def test_code_version_outside_git_is_the_package_version(git_env: Path) -> None:
    plain = git_env / "plain"
    plain.mkdir()
    assert code_version(plain) == {"package_version": metadata.version("raymlops"),
                                   "raymlops_source": raymlops_source()}


def test_package_versions() -> None:
    versions = package_versions(("raymlops", "numpy", "no-such-package-xyz"))
    assert versions["python"] == platform.python_version()
    assert versions["raymlops"] == metadata.version("raymlops")
    assert versions["numpy"] == np.__version__
    assert versions["no-such-package-xyz"] == "not installed"


def test_the_code_version_is_the_config_folders_and_names_raymlops_own_source(git_env: Path, tmp_path: Path) -> None:
    """A run's code is the git state of its config file's folder, not of the shell's (an unrelated
    repository's commit was recorded and the cached model retrained), and raymlops' own source is
    named (an editable install's edits showed nowhere)."""
    import hashlib
    import shutil

    from raymlops.config import load_config

    repo = git_env / "project"
    repo.mkdir()
    _git(repo, "init", "-q")
    shutil.copy(Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml", repo / "pipeline.yaml")
    _git(repo, "add", "pipeline.yaml")
    _git(repo, "commit", "-q", "-m", "first")
    cfg = load_config(repo / "pipeline.yaml")
    assert cfg._file == str((repo / "pipeline.yaml").resolve())
    assert cfg.model_copy(update={"seed": 1})._file == cfg._file  # kept by the copies a run makes
    root = Path(__file__).resolve().parents[2] / "raymlops"
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(f"{f.relative_to(root)}\n".encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    assert raymlops_source() == h.hexdigest()[:16]
    assert code_version(tmp_path)["raymlops_source"] == raymlops_source()  # outside any repository too


def test_a_code_change_says_what_changed_even_when_the_version_did_not() -> None:
    """Only raymlops' own source changed: reproduce listed "code: recorded package 0.1.0, now package
    0.1.0", a difference whose two sides read the same."""
    from raymlops.registry.reproduce import code_change

    before = {"package_version": "0.1.0", "raymlops_source": "cdfa31108ef4e2d0"}
    after = {"package_version": "0.1.0", "raymlops_source": "092412d4a53daecb"}
    assert code_change(before, after) == "raymlops' own source recorded cdfa31108ef4e2d0, now 092412d4a53daecb"
    git = {"git_commit": "a" * 40, "dirty": False, "raymlops_source": "cdfa31108ef4e2d0"}
    assert code_change(git, {**git, "git_commit": "b" * 40}) == f"recorded git {'a' * 12}, now git {'b' * 12}"


def test_reproduce_names_an_edit_of_the_users_estimator_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An edited estimator factory (myest.make) showed only as its symptoms: another chosen trial,
    some holdout rows that differ. Its code's fingerprint is in the lineage and compared now."""
    import sys

    from raymlops.data.transforms import module_fingerprint
    from raymlops.registry.lineage import code_version
    from raymlops.registry.reproduce import _env_differences

    (tmp_path / "myest_r.py").write_text("def make():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "myest_r", raising=False)
    lineage = {"code": code_version(), "packages": {},
               "estimator_code": {"myest_r.make": module_fingerprint("myest_r"), "sklearn.linear_model.Ridge":
                                  module_fingerprint("sklearn.linear_model")}}
    assert not [d for d in _env_differences(lineage) if "myest_r" in d or "sklearn" in d]
    (tmp_path / "myest_r.py").write_text("def make():\n    return 2\n")
    changed = [d for d in _env_differences(lineage) if d.startswith("code:")]
    assert len(changed) == 1 and changed[0].startswith("code: myest_r (the module of estimator make) changed"), changed
