"""The pipeline's data steps end to end: validate (fail / quarantine, audited), the snapshot of
the rows that go on, and data_drift against the champion's training data (warn / fail)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.datasets import load_breast_cancer

from raymlops import Store, ValidationError, parse_config, run_pipeline
from raymlops.audit import records
from raymlops.data.drift import DriftDetected
from raymlops.data.rules import REASON_COLUMN
from raymlops.data.snapshot import list_snapshots
from raymlops.data.snapshot_read import read_snapshot
from raymlops.registry.registry import list_models

from .conftest import ROOT

pytestmark = pytest.mark.integration
RULE = "col('mean radius') < 20"


def frame() -> pd.DataFrame:
    data = load_breast_cancer(as_frame=True).frame
    data.insert(0, "id", np.arange(len(data)) * 7 + 3)
    return data


def config(source: Path, **data: Any) -> Any:
    cfg = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    cfg["data"].update({"source": str(source), "format": "csv", **data})
    cfg["serve"]["enabled"] = False
    cfg["train"]["candidates"] = [{"estimator": "sklearn.linear_model.LogisticRegression", "scale": True,
                                   "params": {"C": 1.0, "max_iter": 2000}}]
    cfg["data"].setdefault("features", [c for c in frame().columns if c not in ("id", "target")])
    return parse_config(cfg, "test.yaml")


def statuses(result: Any) -> dict[str, str]:
    return {s.name: s.status for s in result.steps}


def test_validate_quarantines_bad_rows_and_fail_stops_the_run(ray_session: None, tmp_path: Path) -> None:
    df = frame()
    path = tmp_path / "cancer.csv"
    df.to_csv(path, index=False)
    bad = int((df["mean radius"] >= 20).sum())
    assert 0 < bad < len(df)
    home = str(tmp_path / "home")

    # fail (the default): the run stops at validate, naming the rule and its count; nothing is stored
    with pytest.raises(ValidationError) as info:
        run_pipeline(config(path, rules=[RULE]), home=home, progress=lambda _: None)
    assert RULE in str(info.value) and f"{bad}" in str(info.value)
    assert info.value.exit_code == 2
    store = Store.open(home)
    assert list_snapshots(store) == [] and list_models(store) == []
    failed = [r for r in records(store.metadata) if r.action == "data.failed"]
    assert len(failed) == 1 and failed[0].record["how"]["violations"] == {RULE: bad}

    # quarantine: bad rows go to their own snapshot with the reason; the rest are trained on
    result = run_pipeline(config(path, rules=[RULE], on_invalid="quarantine", split_key="id"), home=home,
                          progress=lambda _: None)
    v = result.validation
    assert v is not None and v["rows_in"] == len(df) and v["rows_quarantined"] == bad
    assert v["rows_kept"] + v["rows_quarantined"] == v["rows_in"]
    assert statuses(result)["validate"] == "ran" and result.gate == "passed"
    _, kept = read_snapshot(store, result.snapshot)
    assert kept.num_rows == len(df) - bad and max(kept.column("mean radius").to_pylist()) < 20
    _, quarantined = read_snapshot(store, v["quarantine"])
    assert quarantined.num_rows == bad and set(quarantined.column("id").to_pylist()) == set(
        df.loc[df["mean radius"] >= 20, "id"])
    assert all(RULE in reason for reason in quarantined.column(REASON_COLUMN).to_pylist())
    audited = [r for r in records(store.metadata) if r.action == "data.quarantined"]
    assert len(audited) == 1 and audited[0].record["ids"]["quarantine"] == v["quarantine"]
    assert audited[0].record["how"]["rows_kept"] == len(df) - bad

    # unchanged source and rules: the three data steps come from the cache, with the counts
    again = run_pipeline(config(path, rules=[RULE], on_invalid="quarantine", split_key="id"), home=home,
                         progress=lambda _: None)
    assert [statuses(again)[s] for s in ("ingest", "schema", "validate", "snapshot")] == ["cached"] * 4
    assert again.validation == v and again.snapshot == result.snapshot


def test_data_drift_against_the_champion_warns_or_fails(ray_session: None, tmp_path: Path) -> None:
    df = frame()
    original, shifted = tmp_path / "a.csv", tmp_path / "b.csv"
    df.to_csv(original, index=False)
    moved = df.copy()
    features = [c for c in df.columns if c not in ("id", "target")]
    moved[features] = moved[features] + 1.5 * moved[features].std()  # every feature shifted
    moved.to_csv(shifted, index=False)
    home = str(tmp_path / "home")
    lines: list[str] = []

    first = run_pipeline(config(original), home=home, progress=lines.append)
    assert statuses(first)["data_drift"] == "skipped" and first.model == "breast-cancer:v1"

    # warn (the default): the run goes on and says so
    second = run_pipeline(config(shifted), home=home, progress=lines.append)
    assert statuses(second)["data_drift"] == "ran"
    d = second.data_drift
    assert d is not None and d["reference"] == first.snapshot and d["verdict"] == "warned"
    assert d["dataset_drift"] and set(d["drifted_columns"]) >= set(features[:10])
    assert any(line.startswith("warning: data drift against") for line in lines)
    assert second.gate == "passed" and second.model == "breast-cancer:v2"  # now the champion

    # fail: the run stops before training; the check is stored and audited
    store = Store.open(home)
    with pytest.raises(DriftDetected) as info:
        run_pipeline(config(original, drift_gate="fail"), home=home, progress=lines.append)
    assert info.value.exit_code == 2 and "data drift against" in str(info.value)
    assert info.value.report.dataset_drift
    assert [v.id for v in list_models(store)] == ["breast-cancer:v1", "breast-cancer:v2"]
    checked = [r for r in records(store.metadata) if r.action == "snapshot.checked"]
    assert [r.record["ids"]["reference"] for r in checked] == [first.snapshot, second.snapshot]
    assert all(r.record["how"]["dataset_drift"] for r in checked)


def test_a_header_that_repeats_a_column_is_named_with_exit_2_and_nothing_stored(ray_session: None,
                                                                                 tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    rows = "\n".join(f"{i * 0.5},{i % 7},{i * 0.25},{i % 2}" for i in range(60))
    path.write_text("a,b,a,target\n" + rows + "\n")
    home = str(tmp_path / "home")
    with pytest.raises(ValidationError) as info:  # Arrow said: KeyError 'Field "a" exists 2 times in schema'
        run_pipeline(config(path, features=["b"]), home=home, progress=lambda _: None)
    assert info.value.exit_code == 2
    assert "column 'a' appears 2 times in the header" in str(info.value) and "dup.csv" in str(info.value)
    assert list_snapshots(Store.open(home)) == []
    # the same in a Parquet file: it was pyarrow's "Multiple matches for FieldRef.Name(a)", exit 1
    import pyarrow as pa
    import pyarrow.parquet as pq

    parquet = tmp_path / "dup.parquet"
    columns = [pa.array([i * 0.5 for i in range(60)]), pa.array([i % 7 for i in range(60)]),
               pa.array([i * 0.25 for i in range(60)]), pa.array([i % 2 for i in range(60)])]
    pq.write_table(pa.Table.from_arrays(columns, names=["a", "b", "a", "target"]), parquet)
    with pytest.raises(ValidationError) as info:
        run_pipeline(config(parquet, features=["b"], format="parquet"), home=home, progress=lambda _: None)
    assert info.value.exit_code == 2 and "column 'a' appears 2 times in" in str(info.value)
    assert list_snapshots(Store.open(home)) == []


def test_a_csv_ray_data_cannot_read_is_named_with_pyarrows_reason_and_exit_2(ray_session: None,
                                                                             tmp_path: Path) -> None:
    """The ingest step said Ray Data's "Failed to read CSV file ... 'partition_filter' field" (an
    option raymlops lacks), without the reason, exit 1."""
    path = tmp_path / "ragged.csv"
    path.write_text("a,b,target\n" + "\n".join(f"{i},{i % 3},{i % 2}" for i in range(40)) + "\n7,8,9,10\n")
    home = str(tmp_path / "home")
    with pytest.raises(ValidationError) as info:
        run_pipeline(config(path, features=["a", "b"]), home=home, progress=lambda _: None)
    assert info.value.exit_code == 2
    assert f"cannot read {path} as CSV: CSV parse error: Expected 3 columns, got 4: 7,8,9,10" in str(info.value)
    assert list_snapshots(Store.open(home)) == []


def test_a_gate_slice_column_the_data_lacks_is_refused_before_training(ray_session: None, tmp_path: Path) -> None:
    """It was found at the evaluate step, after all of training."""
    path = tmp_path / "data.csv"
    frame().to_csv(path, index=False)
    cfg = config(path)
    cfg = cfg.model_copy(update={"gate": cfg.gate.model_copy(update={"slices": ["regoin"]})})
    home = str(tmp_path / "home")
    with pytest.raises(ValidationError) as info:
        run_pipeline(cfg, home=home, progress=lambda _: None)
    assert info.value.exit_code == 2 and "gate.slices: the data has no column 'regoin'" in str(info.value)
    from raymlops.pipeline.history import list_runs

    assert list_runs(Store.open(home).metadata)[0]["failed_step"] == "schema"  # before the snapshot and Tune
    assert list_snapshots(Store.open(home)) == []
