"""The data half on the session's Ray: sources, declared transforms, validation under both
policies, snapshots' lineage and atomic commit, profiles and drift checks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
import pytest
import yaml

from raymlops import IntegrityError, NotFound, Store, ValidationError, audit, parse_config
from raymlops.data.drift import (
    DriftDetected,
    Reference,
    apply_gate,
    check_needs_ray,
    check_snapshot,
    find_reference,
    load_check,
)
from raymlops.data.errors import ours
from raymlops.data.profile import profile
from raymlops.data.rules import REASON_COLUMN
from raymlops.data.snapshot import (
    create_snapshot,
    list_snapshots,
    load_manifest,
    resolve_snapshot,
    tag_snapshot,
    verify_snapshot,
)
from raymlops.data.snapshot_read import load_profile, read_snapshot, snapshot_dataset
from raymlops.data.sources import open_source, read_source
from raymlops.data.transforms import apply, code_hash, resolve
from raymlops.data.validate import RulesFailed, checks_from_config, validate
from raymlops.stats.check import DriftSettings
from raymlops.stats.profile import profile_table

from .conftest import ROOT
from .datafns import people_table

pytestmark = pytest.mark.integration
FNS = "tests.integration.datafns"


def _data_config(**data: Any) -> Any:
    cfg = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    cfg["data"] = {"source": "sklearn://iris", "target": "target", **data}
    return parse_config(cfg, "test.yaml").data


def _rows(ds: Any) -> pa.Table:
    import ray

    return pa.concat_tables(ray.get(ds.to_arrow_refs()))


def _ds(table: pa.Table, blocks: int = 4) -> Any:
    import ray.data

    return ray.data.from_arrow(table).repartition(blocks)


# -- sources ---------------------------------------------------------------------------------------


def test_file_formats_and_callables_read_the_same_rows(ray_session: None, tmp_path: Path) -> None:
    table = people_table()  # what the callables return too
    pacsv.write_csv(table, tmp_path / "p.csv")
    pq.write_table(table, tmp_path / "p.parquet")
    (tmp_path / "parts").mkdir()
    pq.write_table(table.slice(0, 100), tmp_path / "parts" / "a.parquet")
    pq.write_table(table.slice(100), tmp_path / "parts" / "b.parquet")
    with open(tmp_path / "p.jsonl", "w") as f:
        for row in table.to_pylist():
            f.write(json.dumps(row) + "\n")
    assert pajson.read_json(tmp_path / "p.jsonl").num_rows == 1000
    for uri, fmt in ((tmp_path / "p.csv", "auto"), (tmp_path / "p.parquet", "auto"), (tmp_path / "parts", "auto"),
                     (tmp_path / "p.jsonl", "json"), (f"callable:{FNS}:as_arrow", "auto"),
                     (f"callable:{FNS}:as_pandas", "auto"), (f"callable:{FNS}:as_dataset", "auto")):
        back = _rows(read_source(str(uri), fmt))
        assert back.column("id").to_pylist() == list(range(1000)), uri  # row order kept
        assert back.column("income").to_pylist() == table.column("income").to_pylist(), uri
        assert back.column("status").to_pylist() == table.column("status").to_pylist(), uri
    # a blank cell of a text column is a missing value, as pandas reads it (Arrow's default is '': an
    # unlabelled row trained as a class '' and a blank category became a category)
    (tmp_path / "blank.csv").write_text("x,city,label\n1,Seoul,yes\n2,,no\n3,Busan,\n")
    back = _rows(read_source(str(tmp_path / "blank.csv")))
    assert back.column("city").to_pylist() == ["Seoul", None, "Busan"]
    assert back.column("label").to_pylist() == ["yes", "no", None]
    # a DataFrame whose rows were shuffled stores its index as a column (__index_level_0__): not data
    shuffled = table.to_pandas().sample(frac=1.0, random_state=0)
    shuffled.to_parquet(tmp_path / "shuffled.parquet")
    assert "__index_level_0__" in pq.read_schema(tmp_path / "shuffled.parquet").names
    back = _rows(read_source(str(tmp_path / "shuffled.parquet")))
    assert back.column_names == table.column_names
    assert back.column("id").to_pylist() == shuffled["id"].tolist()
    with pytest.raises(ValidationError, match="returned dict; expected a Ray Dataset"):
        read_source(f"callable:{FNS}:not_data")
    with pytest.raises(Exception, match="cannot import module 'tests.integration.nope'"):
        read_source("callable:tests.integration.nope:f")
    with pytest.raises(Exception, match="not found"):
        read_source(str(tmp_path / "missing.csv"))


# -- transforms ------------------------------------------------------------------------------------


def test_declared_transforms_run_in_ray_and_match_pandas(ray_session: None) -> None:
    data = _data_config(transforms=[
        {"filter": "age >= 18 and status != 'retired'"},
        {"derive": {"ratio": "income / age", "adult": "age >= 21"}},
        {"map_batches": f"{FNS}:add_decade"},
        {"rename": {"income": "salary"}},
        {"cast": {"age": "int32"}},
        {"select": ["id", "age", "salary", "ratio", "adult", "decade"]},
    ])
    transforms = resolve(data.transforms)
    table = people_table(2000)
    out = apply(_ds(table, 5), transforms).to_pandas()
    df = table.to_pandas()
    df = df[(df.age >= 18) & (df.status != "retired")]
    assert out["id"].tolist() == df["id"].tolist()  # order kept
    assert list(out.columns) == ["id", "age", "salary", "ratio", "adult", "decade"]
    assert np.allclose(out["ratio"], df["income"] / df["age"])
    assert out["adult"].tolist() == (df["age"] >= 21).tolist()
    assert out["decade"].tolist() == ((df["age"] // 10) * 10).tolist()
    assert str(apply(_ds(table, 2), transforms).schema().types[1]) == "int32"
    digest = code_hash(transforms)
    assert digest == code_hash(resolve(data.transforms)) and digest != code_hash(transforms[:-1])

    bad = resolve(_data_config(transforms=[{"derive": {"x": "nope * 2"}}]).transforms)
    message = r"data.transforms\[0\].derive.x: expression 'nope \* 2': column 'nope'"
    with pytest.raises(ValidationError, match=message), ours():
        apply(_ds(table, 2), bad).materialize()
    bad_cast = resolve(_data_config(transforms=[{"cast": {"status": "int64"}}]).transforms)
    message = r"data.transforms\[0\].cast: cannot cast column 'status' to int64"
    with pytest.raises(ValidationError, match=message), ours():
        apply(_ds(table, 2), bad_cast).materialize()


# -- validation ------------------------------------------------------------------------------------


def _rules_config() -> Any:
    return _data_config(rules=["age >= 18", {"name": "earns_or_studies", "expr": "income > 0 or status == 'student'"}],
                        schema={"status": {"domain": ["student", "employed", "retired"]}, "age": {"max": 85}})


def _expected(table: pa.Table) -> dict[str, Any]:
    df = table.to_pandas()
    minor = df.age < 18
    poor = ~((df.income > 0) | (df.status == "student"))
    old = df.age > 85
    bad = minor | poor | old
    return {"minor": int(minor.sum()), "poor": int(poor.sum()), "old": int(old.sum()), "bad": int(bad.sum()),
            "first_minor": int(np.flatnonzero(minor)[0])}


def test_fail_policy_reports_exact_counts_and_first_rows(ray_session: None) -> None:
    table = people_table(5000)
    exp = _expected(table)
    data = _rules_config()
    with pytest.raises(RulesFailed) as info:
        validate(_ds(table, 6), checks_from_config(data), "fail", specs=data.expected_schema)
    report = info.value.report
    assert report.outcome.violations == {"schema: status in domain": 0, "schema: age <= 85": exp["old"],
                                         "age >= 18": exp["minor"], "earns_or_studies": exp["poor"]}
    assert report.rows_bad == exp["bad"] and report.rows_in == 5000
    first = report.outcome.examples["age >= 18"][0]
    assert first["row"] == exp["first_minor"]
    assert first["values"]["age"] == table.column("age")[exp["first_minor"]].as_py()
    assert f"'age >= 18': {exp['minor']} rows (row {exp['first_minor']}: age=" in str(info.value)
    with pytest.raises(ValidationError, match=r"data.schema.age.type: expected string, found int64"):
        validate(_ds(table, 2), [], "fail", specs={"age": {"type": "string"}})


def test_quarantine_policy_counts_add_up(ray_session: None, tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    table = people_table(5000)
    exp = _expected(table)
    data = _rules_config()
    result = validate(_ds(table, 7), checks_from_config(data), "quarantine", specs=data.expected_schema,
                      store=store, source="mem://people")
    assert result.rows_in == 5000 == result.rows_kept + result.rows_quarantined
    assert result.rows_quarantined == exp["bad"] and result.dataset.count() == 5000 - exp["bad"]
    q = result.quarantine
    assert q is not None and q.kind == "quarantine" and q.rows == exp["bad"] and "quarantine" in q.tags
    _, rows = read_snapshot(store, "quarantine")
    reasons = rows.column(REASON_COLUMN).to_pylist()
    assert sum("age >= 18" in r for r in reasons) == exp["minor"]
    assert sum("earns_or_studies" in r for r in reasons) == exp["poor"]
    with pytest.raises(NotFound):
        resolve_snapshot(store, "latest")  # a quarantine snapshot is not the latest data
    kept = result.dataset.to_pandas()
    assert (kept.age >= 18).all() and ((kept.income > 0) | (kept.status == "student")).all()
    good = create_snapshot(store, result.dataset, "mem://people", validation=result.summary())
    assert load_manifest(store, good.id)["validation"]["rows_quarantined"] == exp["bad"]
    assert load_manifest(store, good.id)["validation"]["quarantine_snapshot"] == q.id


# -- snapshots: lineage, tags, atomic commit ------------------------------------------------------


def test_manifest_lineage_tags_and_unchanged_data(ray_session: None, tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    table = people_table(800)
    transforms = resolve(_data_config(transforms=[{"filter": "age > 20"}]).transforms)
    first = create_snapshot(store, apply(_ds(table), transforms), "s3://bucket/p.csv?endpoint_override=h:9",
                            tags=["train-2026-11"], transform_hash=code_hash(transforms),
                            transforms=[t.describe() for t in transforms])
    assert first.new and first.tags == ("latest", "train-2026-11") and first.parent is None
    m = load_manifest(store, first.id)
    assert m["format_version"] == 2 and m["transform_hash"] == code_hash(transforms)
    assert m["sources"] == ["s3://bucket/p.csv?endpoint_override=h%3A9"]
    assert {f["path"] for f in m["files"]} >= {"profile.json"} and m["profile"]["rows"] == first.rows
    assert m["schema"][3]["domain"] == ["employed", "retired", "student"]  # inferred from all rows
    prof = load_profile(store, first.id)
    assert prof is not None and prof.rows == first.rows == int((table.column("age").to_numpy() > 20).sum())

    files_before = sorted(store.artifacts.list_files("snapshots"))
    again = create_snapshot(store, apply(_ds(table, 2), transforms), "s3://bucket/p.csv?endpoint_override=h:9")
    assert again.id == first.id and not again.new
    assert sorted(store.artifacts.list_files("snapshots")) == files_before  # stored nothing new
    assert list(store.artifacts.list_files("staging")) == []

    changed = table.set_column(2, "income", pa.array([999.0] + table.column("income").to_pylist()[1:]))
    second = create_snapshot(store, apply(_ds(changed), transforms), "s3://bucket/p.csv?endpoint_override=h:9")
    assert second.id != first.id and second.new and second.parent == first.id
    assert resolve_snapshot(store, "latest") == second.id and resolve_snapshot(store, "train-2026-11") == first.id
    # re-snapshotting the first data moves `latest` back (audited), storing nothing
    back = create_snapshot(store, apply(_ds(table), transforms), "s3://bucket/p.csv?endpoint_override=h:9")
    assert back.id == first.id and not back.new and resolve_snapshot(store, "latest") == first.id
    assert tag_snapshot(store, second.id[:10], "candidate") == (second.id, None)
    actions = [r.action for r in audit.records(store.metadata, action="snapshot.")]
    assert actions == ["snapshot.created", "snapshot.created", "snapshot.tagged", "snapshot.tagged"]
    with pytest.raises(ValidationError, match="set by raymlops itself"):
        tag_snapshot(store, first.id, "latest")
    with pytest.raises(ValidationError, match="looks like a snapshot id prefix"):
        tag_snapshot(store, first.id, "abcdef")
    assert [s["parent"] for s in list_snapshots(store)] == [None, first.id]


@pytest.mark.parametrize("where", ["promote", "metadata"])
def test_crash_between_data_and_commit_leaves_nothing_visible(ray_session: None, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    from raymlops.store.artifacts import ArtifactStore
    from raymlops.store.metadata import MetadataStore

    store = Store.open(tmp_path)
    table = people_table(300)
    if where == "promote":  # data and manifest written to staging; the move never happens
        monkeypatch.setattr(ArtifactStore, "promote", lambda self, s, f: (_ for _ in ()).throw(OSError("killed")))
    else:  # the folder is moved into place; the process dies before SQLite records it
        real = MetadataStore.transaction
        monkeypatch.setattr(MetadataStore, "transaction", lambda self: (_ for _ in ()).throw(OSError("killed")))
    with pytest.raises(OSError, match="killed"):
        create_snapshot(store, _ds(table), "mem://p")
    assert list_snapshots(store) == []
    with pytest.raises(NotFound):
        resolve_snapshot(store, "latest")
    assert list(store.artifacts.list_files("staging")) == []
    if where == "metadata":
        monkeypatch.setattr(MetadataStore, "transaction", real)
        assert list(store.artifacts.list_files("snapshots"))  # an unrecorded folder: invisible
    monkeypatch.undo()
    snap = create_snapshot(store, _ds(table), "mem://p")  # the next run commits it
    assert snap.new and verify_snapshot(store, snap.id) == [] and read_snapshot(store, snap.id)[1].num_rows == 300


def test_corruption_is_named_and_reading_fails(ray_session: None, tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    snap = create_snapshot(store, _ds(people_table(500)), "mem://p")
    prof_path = Path(store.artifacts.path(f"snapshots/{snap.id}/profile.json"))
    prof_path.write_text(prof_path.read_text().replace('"rows":500', '"rows":501'))
    assert verify_snapshot(store, snap.id) == ["profile.json: changed (sha256 differs from the manifest)"]
    with pytest.raises(IntegrityError, match="profile.json: changed"):
        load_profile(store, snap.id)
    part = next(k for k, _ in store.artifacts.list_files(f"snapshots/{snap.id}/data"))
    Path(store.artifacts.path(part)).unlink()
    with pytest.raises(IntegrityError, match=rf"corrupted: {part.split('/', 2)[2]}: missing"):
        snapshot_dataset(store, snap.id)
    with pytest.raises(IntegrityError, match="missing"):
        read_snapshot(store, snap.id)


# -- profiles and drift ----------------------------------------------------------------------------


def test_ray_profile_equals_the_pure_one_whatever_the_partitioning(ray_session: None) -> None:
    table = people_table(20_000)
    pure = profile_table(table)
    for blocks in (1, 6):
        got = profile(_ds(table, blocks))
        for name in pure.columns:
            a, b = pure.column(name).to_dict(), got.column(name).to_dict()
            for key in ("mean", "std"):
                va, vb = a.pop(key), b.pop(key)
                if va is None or vb is None:  # not finite (e.g. an inf column): both sides must say so
                    assert va is None and vb is None, (key, va, vb)
                else:
                    assert va == pytest.approx(vb, rel=1e-12), key
            assert a == b, (blocks, name)


def test_drift_check_is_recorded_and_gates(ray_session: None, tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    base = people_table(20_000)
    ref_snap = create_snapshot(store, _ds(base), "mem://people", tags=["train"])
    assert find_reference(store, pipeline="no-such-pipeline") is None  # no champion yet: nothing to compare
    ref = find_reference(store, ref="train")
    assert ref is not None and ref.snapshot_id == ref_snap.id

    shifted = base.set_column(2, "income", pa.array(base.column("income").to_numpy() + 15.0))
    # the pipeline's way: the profile counted on the reference's bins while snapshotting
    snap = create_snapshot(store, _ds(shifted, 3), "mem://people", reference=ref.profile)
    assert not check_needs_ray(store, snap.id, ref)  # counted on the reference's bins already
    report = check_snapshot(store, snap.id, ref, DriftSettings(), reason="test")
    assert report.drifted_columns == ["income"] and not any(c.approximate for c in report.columns)
    income = next(c for c in report.columns if c.column == "income")
    assert income.test == "wasserstein" and income.score == pytest.approx(15.0 / 20.0, rel=0.1)
    stored = load_check(store, snap.id, ref.snapshot_id, DriftSettings())
    assert stored is not None and stored.to_dict() == report.to_dict()
    assert check_snapshot(store, snap.id, ref).to_dict() == report.to_dict()  # read back, not recomputed
    recs = audit.records(store.metadata, action="snapshot.checked")
    assert len(recs) == 1 and recs[0].record["how"]["drifted_columns"] == ["income"]

    # a snapshot made without the reference: the exact tests read both snapshots' rows, no Ray pass;
    # the profile-based check (exact=False) needs one to count it on the reference's bins
    sample = np.sort(np.random.default_rng(0).choice(20_000, 15_000, replace=False))
    other = create_snapshot(store, _ds(shifted.take(sample)), "mem://people")
    assert not check_needs_ray(store, other.id, ref) and check_needs_ray(store, other.id, ref, exact=False)
    again = check_snapshot(store, other.id, ref, DriftSettings(correction="bh"))
    assert again.drifted_columns == ["income"] and not any(c.approximate for c in again.columns)
    assert all(c.scores.get("exact") for c in again.tested)
    approximate = check_snapshot(store, other.id, ref, DriftSettings(correction="bh"), exact=False)
    assert approximate.drifted_columns == ["income"] and any(c.approximate for c in approximate.columns)

    # the gate looks at dataset drift. The default rule ("any", family-wise): one drifted column
    # (here 1 of 4) is dataset drift
    assert report.dataset_drift and apply_gate(report, "off") == "off"
    assert apply_gate(report, "warn", ref) == "warned"
    with pytest.raises(DriftDetected, match=r"data drift against .*: 1 of 4 columns drifted \(income\); "
                                            r"dataset drift: yes"):
        apply_gate(report, "fail", ref)
    # Evidently's rule ("share"): at least drift_share of the columns; 1 of 4 is under 0.5, over 0.2
    half = check_snapshot(store, snap.id, ref, DriftSettings(dataset_rule="share"))
    assert half.drifted_columns == ["income"] and not half.dataset_drift
    assert apply_gate(half, "fail", ref) == "passed"
    fifth = check_snapshot(store, snap.id, ref, DriftSettings(dataset_rule="share", drift_share=0.2))
    assert apply_gate(fifth, "warn", ref) == "warned"
    with pytest.raises(DriftDetected, match=r"data drift against .*: 1 of 4 columns drifted \(income\)"):
        apply_gate(fifth, "fail", ref)
    assert apply_gate(check_snapshot(store, ref_snap.id, ref), "fail") == "passed"


def test_the_runner_snippet_flow(ray_session: None, tmp_path: Path) -> None:
    """What the runner's validate and data_drift steps do (see the report's snippet)."""
    from raymlops.data.drift import settings_from_config
    from raymlops.data.sources import sklearn_table

    store = Store.open(tmp_path)
    data = _data_config(rules=["sepal_length_cm > 4.5"], on_invalid="quarantine", drift_gate="fail",
                        reference="latest")
    first = create_snapshot(store, open_source(data), data.source)
    ref = find_reference(store, "iris", data.reference)
    assert ref is not None and ref.snapshot_id == first.id
    result = validate(open_source(data), checks_from_config(data), data.on_invalid, specs=data.expected_schema,
                      store=store, source=data.source, reason="run x")
    n_bad = int((sklearn_table("iris").column("sepal_length_cm").to_numpy() <= 4.5).sum())
    assert result.rows_quarantined == n_bad and result.rows_kept == 150 - n_bad
    snap = create_snapshot(store, result.dataset, data.source, reason="run x", reference=ref.profile,
                           validation=result.summary())
    report = check_snapshot(store, snap.id, ref, settings_from_config(data.drift), reason="run x")
    assert report.tested and apply_gate(report, data.drift_gate, ref) == "passed"
    assert Reference(ref.snapshot_id, ref.profile, ref.why) == ref
