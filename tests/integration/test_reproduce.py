"""`reproduce`: re-training from the recorded snapshot, config and seeds gives the same model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from raymlops import Store
from raymlops.cli import main
from raymlops.registry.reproduce import reproduce

pytestmark = pytest.mark.integration


def test_reproduce_identical_then_seed_and_data_changes_are_named(
    ray_session: None, trained_quickstart: tuple[Path, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    home, result = trained_quickstart  # the quickstart run with serving off
    store = Store.open(home)
    model, snapshot = result["model"], result["snapshot"]

    same = reproduce(store, model)
    assert same.identical, same.differences
    assert same.predictions_equal and same.max_probability_diff == 0.0
    assert same.artifact_hash_equal  # scikit-learn's LogisticRegression pipeline is deterministic
    assert not [d for d in same.differences if d.startswith(("data", "seed", "predictions", "chosen"))]

    other_seed = reproduce(store, model, seed=7)
    assert not other_seed.identical
    assert "seed: recorded 42, now 7" in other_seed.differences
    assert not other_seed.artifact_hash_equal

    snap_files = [k for k, _ in store.artifacts.list_files(f"snapshots/{snapshot}/data")]
    path = Path(store.artifacts.path(snap_files[0]))
    path.write_bytes(path.read_bytes()[:-4] + b"XXXX")
    capsys.readouterr()
    assert main(["reproduce", str(model), "--home", str(home)]) == 1
    out = capsys.readouterr().out
    assert "NOT identical" in out and "data: snapshot" in out and "changed" in out
    # every check is in the audit log, with its result (the web UI's model page lists them)
    from raymlops import audit

    records = [r for r in audit.records(store.metadata, action="model.", id=str(model))
               if r.action.startswith("model.reproduc")]
    assert [r.action for r in records] == ["model.reproduced", "model.reproduce_differs", "model.reproduce_differs"]
    assert records[0].record["how"]["predictions_equal"] is True and records[0].record["reason"] == "identical"
    assert "seed: recorded 42, now 7" in records[1].record["reason"]
    assert "data: snapshot" in records[2].record["reason"]
    assert audit.verify(store.metadata)[0]
