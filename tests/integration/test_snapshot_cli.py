"""`raymlops snapshot create | list | show | verify | diff | tag` with exit codes, and sources on
S3 whose credentials (given in data.options) end up nowhere raymlops writes."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pytest
import yaml

from raymlops import ConfigError, Store, parse_config
from raymlops.audit import records as audit_records
from raymlops.audit import verify as audit_verify
from raymlops.cli import main
from raymlops.data.snapshot import create_snapshot, list_snapshots, load_manifest, snapshot_info
from raymlops.data.sources import open_source

from .conftest import ROOT
from .datafns import people_table
from .moto_s3 import moto_server

pytestmark = pytest.mark.integration


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_snapshot_commands_and_exit_codes(ray_session: None, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    home = str(tmp_path / "home")
    table = people_table(3000)
    pacsv.write_csv(table, tmp_path / "a.csv")
    shifted = table.set_column(2, "income", pa.array(table.column("income").to_numpy() * 1.5 + 20))
    pacsv.write_csv(shifted, tmp_path / "b.csv")

    rc, out, _ = _run(capsys, "snapshot", "create", "--source", str(tmp_path / "a.csv"), "--tag", "train",
                      "--json", "--home", home)
    first = json.loads(out.strip().splitlines()[-1])
    assert rc == 0 and set(first) == {"snapshot", "rows", "new"} and first["rows"] == 3000 and first["new"] is True
    rc, out, _ = _run(capsys, "snapshot", "create", "--source", str(tmp_path / "a.csv"), "--home", home)
    assert rc == 0 and "stored nothing new" in out and first["snapshot"] in out
    rc, out, _ = _run(capsys, "snapshot", "create", "--source", str(tmp_path / "b.csv"), "--json", "--home", home)
    second = json.loads(out.strip().splitlines()[-1])
    assert rc == 0 and second["new"] and second["snapshot"] != first["snapshot"]

    rc, out, _ = _run(capsys, "snapshot", "list", "--json", "--home", home)
    listed = json.loads(out)
    assert rc == 0 and [s["id"] for s in listed] == [first["snapshot"], second["snapshot"]]
    assert listed[0]["tags"] == ["train"] and listed[1]["tags"] == ["latest"]

    rc, out, _ = _run(capsys, "snapshot", "show", "train", "--json", "--home", home)
    shown = json.loads(out)
    assert rc == 0 and shown["snapshot"] == first["snapshot"] and shown["manifest"]["rows"] == 3000
    assert [c["name"] for c in shown["manifest"]["schema"]] == ["id", "age", "income", "status"]
    rc, out, _ = _run(capsys, "snapshot", "show", first["snapshot"][:8], "--home", home)
    assert rc == 0 and "status" in out and "employed, retired, student" in out

    rc, out, _ = _run(capsys, "snapshot", "diff", "train", "latest", "--json", "--home", home)
    diff = json.loads(out)
    drifted = diff["report"]["drifted_columns"]
    # the default dataset rule ("any", family-wise): one drifted column is dataset drift
    assert rc == 0 and drifted == ["income"] and diff["schema_changes"] == [] and diff["dataset_drift"]
    rc, out, _ = _run(capsys, "snapshot", "diff", "train", "latest", "--home", home)
    assert rc == 0 and "1 of 4 columns drifted (income); dataset drift: yes (rule: any column drifted" in out
    # a p-value test's row shows the corrected p-value its verdict compared with the threshold
    assert "adj. p threshold  drift" in out, out
    # Evidently's rule ("share"): at least drift_share of the columns; 1 of 4 is under 0.5, not under 0.25
    config = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    for share, code, verdict in ((0.5, 0, "no"), (0.25, 1, "yes")):
        config["data"]["drift"] = {"dataset_rule": "share", "drift_share": share}
        (tmp_path / "p.yaml").write_text(yaml.safe_dump(config))
        rc, out, _ = _run(capsys, "snapshot", "diff", "train", "latest", "--config", str(tmp_path / "p.yaml"),
                          "--fail-on-drift", "--home", home)
        assert rc == code and "1 of 4 columns drifted (income)" in out and f"dataset drift: {verdict}" in out, out
        assert f"(rule: at least {share:.0%} of the columns drifted, share 0.25" in out, out  # the rule it applied
        assert "corrected (" not in out, out  # the share rule counts uncorrected flags
    rc, out, _ = _run(capsys, "snapshot", "show", "latest", "--json", "--home", home)
    assert len(json.loads(out)["checks"]) == 3  # one record per (reference, settings)

    rc, out, _ = _run(capsys, "snapshot", "tag", "latest", "candidate", "--json", "--home", home)
    assert rc == 0 and json.loads(out) == {"snapshot": second["snapshot"], "tag": "candidate", "previous": None}

    store = Store.open(home)
    part = next(k for k, _ in store.artifacts.list_files(f"snapshots/{first['snapshot']}/data"))
    path = Path(store.artifacts.path(part))
    path.write_bytes(path.read_bytes()[:-8] + b"tampered")
    rc, out, _ = _run(capsys, "snapshot", "verify", "train", "--home", home)
    assert rc == 1 and f"{Path(part).name}: changed" in out
    rc, out, _ = _run(capsys, "snapshot", "verify", "latest", "--json", "--home", home)
    assert rc == 0 and json.loads(out)["ok"] is True

    for argv, message in (
        (("snapshot", "create", "--source", str(tmp_path / "missing.csv")), "not found"),
        (("snapshot", "create", "--source", "callable:no_such_module:f"), "cannot import module"),
        (("snapshot", "create", "--source", str(tmp_path / "a.csv"), "--tag", "latest"), "set by raymlops itself"),
        (("snapshot", "show", "nope-tag"), "snapshot 'nope-tag' not found"),
        (("snapshot", "diff", "train", "zzzz"), "not found"),
        (("snapshot", "tag", "latest", "bad tag"), "expected letters, digits"),
    ):
        rc, out, err = _run(capsys, *argv, "--home", home)
        assert rc == 2 and err.startswith("error: ") and message in err, (argv, err)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    # a create that cannot work makes no home (it was made first, and a missing file was found after Ray)
    for argv in (("--source", str(tmp_path / "missing.csv")), ("--source", str(tmp_path / "a.csv"), "--tag", "latest")):
        rc, _, err = _run(capsys, "snapshot", "create", *argv, "--home", str(tmp_path / "never"))
        assert rc == 2 and not (tmp_path / "never").exists(), err
    assert "--source: " in err or "set by raymlops itself" in err
    rc, _, err = _run(capsys, "snapshot", "create", "--source", str(tmp_path / "missing.csv"), "--home", home)
    assert err.startswith(f"error: --source: '{tmp_path / 'missing.csv'}' not found"), err


def test_a_damaged_snapshot_is_written_again_from_its_intact_source(ray_session: None, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A part file changed (still valid Parquet) or removed: re-ingesting the intact source found the
    content id stored and wrote nothing ('unchanged'), and every run failed on the snapshot again."""
    import pyarrow.parquet as pq

    home = str(tmp_path / "home")
    pacsv.write_csv(people_table(300), tmp_path / "a.csv")
    rc, out, _ = _run(capsys, "snapshot", "create", "--source", str(tmp_path / "a.csv"), "--tag", "train",
                      "--json", "--home", home)
    snap = json.loads(out.strip().splitlines()[-1])["snapshot"]
    store = Store.open(home)
    before = load_manifest(store, snap)
    part = store.artifacts.path(f"snapshots/{snap}/{before['files'][0]['path']}")
    table = pq.read_table(part)
    pq.write_table(table.set_column(0, table.column_names[0], pa.array(
        [v + 1 if isinstance(v, int) else v for v in table.column(0).to_pylist()], table.schema.field(0).type)), part)
    assert _run(capsys, "snapshot", "verify", snap, "--home", home)[0] == 1

    rc, out, _ = _run(capsys, "snapshot", "create", "--source", str(tmp_path / "a.csv"), "--json", "--home", home)
    got = json.loads(out.strip().splitlines()[-1])
    assert rc == 0 and got["snapshot"] == snap and got["new"] is False
    assert got["repaired"] and "changed" in got["repaired"][0]
    assert _run(capsys, "snapshot", "verify", snap, "--home", home)[0] == 0
    after = load_manifest(store, snap)
    assert after["created_at"] == before["created_at"] and after["rows"] == 300 and after["parent"] == before["parent"]
    assert [s["id"] for s in list_snapshots(store)] == [snap] and snapshot_info(store, "train").id == snap
    actions = [r.action for r in audit_records(store.metadata)]
    assert actions[-1] == "snapshot.repaired" and audit_verify(store.metadata)[0]
    # an intact copy is left as it is: nothing written, nothing recorded
    rc, out, _ = _run(capsys, "snapshot", "create", "--source", str(tmp_path / "a.csv"), "--home", home)
    assert rc == 0 and out.startswith("unchanged:") and len(audit_records(store.metadata)) == len(actions)


def test_deep_verify_hashes_the_rows_again_and_finds_data_changed_with_its_manifest(
        ray_session: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A value changed, the file's sha256 written into the manifest and the manifest's into SQLite:
    `snapshot verify` (and doctor) said ok, and the model trained on it blamed other causes."""
    import hashlib
    import sqlite3

    import pyarrow.parquet as pq

    home = str(tmp_path / "home")
    pacsv.write_csv(people_table(300), tmp_path / "a.csv")
    rc, out, _ = _run(capsys, "snapshot", "create", "--source", str(tmp_path / "a.csv"), "--json", "--home", home)
    snap = json.loads(out.strip().splitlines()[-1])["snapshot"]
    assert _run(capsys, "snapshot", "verify", snap, "--deep", "--home", home)[0] == 0  # the rows are the id
    store = Store.open(home)
    manifest = load_manifest(store, snap)
    entry = manifest["files"][0]
    part = store.artifacts.path(f"snapshots/{snap}/{entry['path']}")
    table = pq.read_table(part)
    pq.write_table(table.set_column(1, table.column_names[1], pa.array(
        [v + 1 for v in table.column(1).to_pylist()], table.schema.field(1).type)), part)
    entry["sha256"] = store.artifacts.sha256(f"snapshots/{snap}/{entry['path']}")
    entry["size"] = Path(part).stat().st_size
    raw = json.dumps(manifest, indent=1, sort_keys=True).encode()
    store.artifacts.write_bytes(f"snapshots/{snap}/manifest.json", raw)
    conn = sqlite3.connect(Path(home) / "metadata.db", isolation_level=None)
    conn.execute("UPDATE snapshots SET manifest_sha256 = ? WHERE id = ?", (hashlib.sha256(raw).hexdigest(), snap))
    conn.close()
    assert _run(capsys, "snapshot", "verify", snap, "--home", home)[0] == 0  # what the files say
    rc, out, _ = _run(capsys, "snapshot", "verify", snap, "--deep", "--home", home)
    assert rc == 1 and f"{snap[:12]}: rows: hashed again they are" in out and "manifest rewritten" in out, out


@pytest.mark.parametrize(("text", "reason"), [
    ("a,b\n1,2,3\n4,5\n", "CSV parse error: Expected 2 columns, got 3: 1,2,3"),
    ("id;v;name\n1;2,5;a\n",
     "CSV parse error: Expected 1 columns, got 2: 1;2,5;a (raymlops reads comma-separated CSV: a ';' or tab"),
    # Ray Data's reader types a column from its first block (about 1 MB): text after that is an error
    ("id,m\n" + "".join(f"{i},{i}\n" for i in range(200_000)) + "200000,oops\n",
     "In CSV column #1: CSV conversion error to int64: invalid value 'oops'"),
])
def test_bad_csv_is_one_line_exit_2_with_pyarrows_reason(ray_session: None, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str], text: str,
                                                          reason: str) -> None:
    """Every CSV Ray Data could not read got the same words, without the reason ("Failed to read CSV
    file ... filter out non-CSV file with 'partition_filter' field", an option raymlops lacks)."""
    (tmp_path / "bad.csv").write_text(text)
    rc, out, err = _run(capsys, "snapshot", "create", "--source", str(tmp_path / "bad.csv"), "--home",
                        str(tmp_path / "h"))
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: data.source: cannot read {tmp_path / 'bad.csv'} as CSV: {reason}"), err
    assert "partition_filter" not in err


@pytest.mark.parametrize(("text", "reason"), [
    ('{"id":1,"v":2}\n{"id":2,"v":"x"}\n', "JSON parse error: Column(/v) changed from number to string in row 1"),
    ('{"id":1,"v":3}\n{"id":2,"v":', "JSON parse error: Invalid value. in row 1"),
])
def test_bad_json_lines_are_one_line_exit_2_with_pyarrows_reason(ray_session: None, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str], text: str,
                                                                  reason: str) -> None:
    """A field that changes type, and a truncated last line, both said Python's "JSONDecodeError:
    Extra data: line 2 column 1" (Ray's fallback reader), not the reason."""
    (tmp_path / "bad.jsonl").write_text(text)
    rc, out, err = _run(capsys, "snapshot", "create", "--source", str(tmp_path / "bad.jsonl"), "--home",
                        str(tmp_path / "h"))
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert err.strip() == f"error: data.source: cannot read {tmp_path / 'bad.jsonl'} as JSON lines: {reason}", err


# -- S3 source with credentials in data.options ----------------------------------------------------


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


def test_s3_source_options_and_secrets_never_stored(ray_session: None, tmp_path: Path, moto_s3: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    key_id = "AKIA" + secrets.token_hex(8).upper()
    secret = secrets.token_hex(20)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("RAYMLOPS_TEST_S3_SECRET", secret)
    fs = pafs.S3FileSystem(endpoint_override=moto_s3, scheme="http", access_key=key_id, secret_key=secret,
                           region="us-east-1", allow_bucket_creation=True)
    fs.create_dir("raw")
    table = people_table(400)
    with fs.open_output_stream("raw/people.csv") as f:
        pacsv.write_csv(table, f)

    config = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    config["data"] = {"source": "s3://raw/people.csv", "target": "status",
                      "options": {"endpoint_override": moto_s3, "scheme": "http", "region": "us-east-1",
                                  "access_key": key_id,  # literal in the config ...
                                  "secret_key": "${RAYMLOPS_TEST_S3_SECRET}"}}  # ... or from the environment
    cfg = parse_config(config, "s3.yaml")
    store = Store.open(tmp_path / "home")
    snap = create_snapshot(store, open_source(cfg.data), cfg.data.source, reason="s3 test")
    assert snap.rows == 400 and load_manifest(store, snap.id)["source"] == "s3://raw/people.csv"
    record = json.dumps(cfg.model_dump(mode="json"))  # what a run record keeps of the config
    assert key_id not in record and secret not in record and moto_s3 in record

    with pytest.raises(ConfigError) as info:  # errors name the source, never the secret
        open_source(cfg.data.model_copy(update={"source": "s3://raw/missing.csv"}))
    assert "s3://raw/missing.csv" in str(info.value) and secret not in str(info.value)

    for path in (tmp_path / "home").rglob("*"):  # metadata.db and its WAL, manifests, profiles, parquet
        if path.is_file():
            data = path.read_bytes()
            assert secret.encode() not in data and key_id.encode() not in data, path
    np.testing.assert_array_equal(
        pacsv.read_csv(fs.open_input_stream("raw/people.csv")).column("age").to_numpy(), table.column("age").to_numpy())
