"""The model spec (raymlops.registry.spec): built from a registered version, its wire form, and
the one way a model artifact is loaded (read once, after its sha256 matched)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from raymlops.exceptions import IntegrityError, ValidationError
from raymlops.registry import ModelSpec, get_model, load_model, register_model
from raymlops.store.artifacts import ArtifactStore
from raymlops.store.home import Store

SIGNATURE = {"inputs": [{"name": "a", "type": "double", "min": 0.0, "max": 1.0},
                        {"name": "b", "type": "double", "min": None, "max": None}],
             "output": "classification", "target": "y", "classes": [0, 1]}


@pytest.fixture
def store(tmp_path: Path) -> Store:
    from sklearn.linear_model import LogisticRegression

    s = Store.open(tmp_path)
    model = LogisticRegression().fit(np.array([[0.0, 1.0], [1.0, 0.0]] * 5), [0, 1] * 5)
    register_model(s, "toy", model, snapshot_id="s" * 64, signature=SIGNATURE, metrics={"roc_auc": 1.0},
                   gate={"status": "passed", "reasons": []},
                   lineage={"config_hash": "c", "snapshot_id": "s" * 64, "seed": 7, "run_id": "r", "other": 1})
    return s


def test_the_spec_of_a_version_and_its_wire_form(store: Store) -> None:
    version = get_model(store, "toy@champion")
    spec = ModelSpec.of(version, store.artifacts.root_uri)
    assert (spec.model_id, spec.name, spec.features) == ("toy:v1", "toy", ["a", "b"])
    assert (spec.artifact_key, spec.artifact_sha256) == (version.artifact_key, version.artifact_sha256)
    assert spec.input_example == {"a": 0.5, "b": 0.0}  # the middle of the range; 0 where none was recorded
    assert spec.lineage_summary == {"code": None, "config_hash": "c", "snapshot_id": "s" * 64, "seed": 7,
                                    "run_id": "r"}
    wire = spec.to_dict()
    assert sorted(wire) == sorted(["model_id", "artifact_root", "artifact_key", "artifact_sha256", "signature",
                                   "metrics", "lineage_summary", "input_example"])
    assert ModelSpec.from_dict(wire) == spec
    assert spec.with_example({"a": 0.2, "b": 3.0}).input_example == {"a": 0.2, "b": 3.0}
    minimal = {k: wire[k] for k in ("model_id", "artifact_root", "artifact_key", "artifact_sha256", "signature")}
    assert ModelSpec.from_dict(minimal).metrics == {}  # the optional parts default to empty


@pytest.mark.parametrize(("change", "message"), [
    ({"model_id": None}, "missing field 'model_id'"),
    ({"artifact_root": None}, "missing field 'artifact_root'"),
    ({"artifact_sha256": None}, "missing field 'artifact_sha256'"),
    ({"signature": None}, "missing field 'signature'"),
    ({"artifact_key": 3}, "field 'artifact_key': expected str, found int"),
    ({"signature": {"inputs": "a,b"}}, "field 'signature.inputs': expected a list"),
    ({"metrics": [1.0]}, "field 'metrics': expected dict, found list"),
])
def test_a_bad_spec_names_its_field(store: Store, change: dict[str, Any], message: str) -> None:
    wire = ModelSpec.of(get_model(store, "toy:v1"), store.artifacts.root_uri).to_dict()
    data = {k: v for k, v in (wire | change).items() if not (k in change and change[k] is None)}
    with pytest.raises(ValidationError, match=f"^stored spec: {message}"):
        ModelSpec.from_dict(data, "stored spec")
    with pytest.raises(ValidationError, match="expected a model spec"):
        ModelSpec.from_dict(["toy:v1"])


def test_every_loader_reads_the_artifact_once_and_checks_it(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    version = get_model(store, "toy:v1")
    spec = ModelSpec.of(version, store.artifacts.root_uri)
    opened: list[str] = []  # every open of an artifact (to read it or to hash it) names its path
    original = ArtifactStore.path

    def counting(self: ArtifactStore, key: str) -> str:
        opened.append(key)
        return original(self, key)

    monkeypatch.setattr(ArtifactStore, "path", counting)
    X = np.array([[0.1, 0.9], [0.9, 0.1]])
    assert np.array_equal(spec.load().predict(X), load_model(store, version).predict(X))
    assert opened == [version.artifact_key] * 2  # one read per load, the hash taken from those bytes
    spec.verify()
    monkeypatch.undo()
    # a changed artifact: the replica's load names the model; the registry's names the file
    Path(store.artifacts.path(version.artifact_key)).write_bytes(b"not the model")
    with pytest.raises(IntegrityError, match=r"was changed.*\(model toy:v1\); refusing to load it"):
        spec.load()
    with pytest.raises(IntegrityError, match="models/toy/.*was changed"):
        load_model(store, version)
    with pytest.raises(IntegrityError, match="was changed"):
        spec.verify()


def test_a_version_gives_its_record_by_name_and_a_stored_record_missing_a_field_is_named(store: Store) -> None:
    import json

    version = get_model(store, "toy:v1")
    assert version.features == ["a", "b"] and version.metrics == {"roc_auc": 1.0}
    assert version.gate["status"] == "passed" and version.lineage["seed"] == 7 and version.tune == {}
    assert version.to_dict()["signature"] == SIGNATURE  # the stored form is unchanged
    for field, value, message in (("gate", None, "missing field 'gate'"),
                                  ("metrics", [], "field 'metrics': expected dict, found list"),
                                  ("signature", {"output": "classification"}, "field 'signature.inputs'")):
        record = {k: v for k, v in version.record.items() if k != field}
        if value is not None:
            record[field] = value
        with store.metadata.transaction() as conn:
            conn.execute("UPDATE models SET record_json = ? WHERE id = 'toy:v1'", (json.dumps(record),))
        with pytest.raises(ValidationError, match=f"^model toy:v1: stored record: {message}"):
            get_model(store, "toy:v1")


def test_models_verify_names_a_missing_or_changed_artifact(store: Store) -> None:
    from raymlops.registry.registry import verify_model

    version = get_model(store, "toy:v1")
    assert verify_model(store, "toy:v1") == []
    path = Path(store.artifacts.path(version.artifact_key))
    path.write_bytes(b"not the model")
    (problem,) = verify_model(store, "toy:v1")
    assert problem.startswith(f"artifact {version.artifact_key!r} was changed: sha256 ")
    path.unlink()
    assert verify_model(store, "toy:v1") == [f"{version.artifact_key}: missing"]
