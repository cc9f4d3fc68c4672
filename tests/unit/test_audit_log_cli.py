"""The audit log beyond tests/unit/test_audit.py: the chain head (removal of the newest records),
the column checks, ``--since`` parsing, filters, and the ``raymlops audit`` command."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pytest

from raymlops import audit
from raymlops.cli import main
from raymlops.store.home import Store

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z
ACTIONS = [
    ("snapshot.created", {"snapshot": "ab" * 32}, "pipeline q run 1"),
    ("model.registered", {"model": "m:v1", "snapshot": "ab" * 32}, "pipeline q run 1"),
    ("alias.moved", {"model": "m:v1", "alias": "champion"}, "gate passed"),
    ("deployment.created", {"model": "m:v1", "deployment": "m"}, "pipeline q run 1"),
    ("model.registered", {"model": "m:v2", "snapshot": "cd" * 32}, "pipeline q run 2"),
    ("gate.rejected", {"model": "m:v2"}, "roc_auc >= 0.99 failed"),
]


@pytest.fixture()
def home(tmp_path: Path) -> Path:
    """A store with six records, one an hour from T0 (a fake clock)."""
    store = Store.open(tmp_path / "home")
    for i, (action, ids, reason) in enumerate(ACTIONS):
        with store.metadata.transaction() as conn:
            audit.append(conn, action, ids, reason, {"config_hash": "c0ffee"}, clock=lambda i=i: T0 + 3600 * i)
    return tmp_path / "home"


@contextmanager
def _db(home: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(home / "metadata.db", isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def _verify(home: Path) -> tuple[bool, str]:
    return audit.verify(Store.open(home).metadata)


def test_records_hold_when_who_what_why_how_and_chain(home: Path) -> None:
    recs = audit.records(Store.open(home).metadata)
    assert [r.action for r in recs] == [a for a, _, _ in ACTIONS]
    first = recs[0].record
    assert first["ts"] == T0 and first["ids"] == {"snapshot": "ab" * 32}
    assert first["reason"] == "pipeline q run 1" and first["how"] == {"config_hash": "c0ffee"}
    assert {"user", "host", "pid"} <= set(first["actor"])
    assert recs[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(recs, recs[1:], strict=False))
    assert _verify(home) == (True, f"audit chain valid (6 records, head 6:{recs[-1].hash})")


def test_verify_names_an_edited_and_rehashed_record(home: Path) -> None:
    with _db(home) as conn:
        prev, raw = conn.execute("SELECT prev_hash, record_json FROM audit WHERE seq = 2").fetchone()
        forged = raw.replace("m:v1", "m:v9")
        conn.execute("UPDATE audit SET record_json = ?, hash = ? WHERE seq = 2",
                     (forged, audit._digest(prev, forged)))
    ok, message = _verify(home)
    assert not ok and message.startswith("audit record 2: edited and re-hashed (record 3 links"), message


def test_verify_names_an_edited_action_column(home: Path) -> None:
    with _db(home) as conn:
        conn.execute("UPDATE audit SET action = 'alias.moved' WHERE seq = 6")
    ok, message = _verify(home)
    assert not ok and message.startswith("audit record 6:") and "column" in message


def test_verify_catches_removal_of_the_newest_records(home: Path) -> None:
    with _db(home) as conn:
        conn.execute("DELETE FROM audit WHERE seq >= 5")
    ok, message = _verify(home)
    assert not ok and message.startswith("audit record 6: missing") and "ends at record 4" in message
    with _db(home) as conn:
        conn.execute("DELETE FROM audit")
    ok, message = _verify(home)
    assert not ok and "no records" in message


def test_verify_catches_removal_of_the_newest_records_with_the_head_row(home: Path) -> None:
    """Two plain DELETEs (the newest records and the meta row of the head) passed as a valid chain;
    so did an emptied log beside the snapshots and models it should have recorded."""
    with _db(home) as conn:
        conn.execute("DELETE FROM audit WHERE seq >= 5")
        conn.execute("DELETE FROM meta WHERE key = ?", (audit.HEAD_KEY,))
    ok, message = _verify(home)
    assert not ok and message.startswith("audit head: missing; the log ends at record 4"), message
    store = Store.open(home)
    with store.metadata.transaction() as conn:  # a model version the home holds, as the registry writes it
        conn.execute("INSERT INTO models(id, name, version, created_at, status, snapshot_id, artifact_key,"
                     " artifact_sha256, record_json) VALUES ('m:v1', 'm', 1, 0, 'registered', ?, 'k', 's', '{}')",
                     ("ab" * 32,))
    with _db(home) as conn:
        conn.execute("DELETE FROM audit")
    ok, message = _verify(home)
    assert not ok and message.startswith("audit log: no record of model m:v1"), message
    with _db(home) as conn:
        conn.execute("DELETE FROM models")
    assert _verify(home) == (True, "audit chain valid (0 records)")  # a new, empty home


def test_a_head_kept_elsewhere_catches_a_removed_tail_with_the_head_row_fixed_and_a_rewrite(
        home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two plain SQL statements (delete the newest records, point the head row at the new last one)
    passed as a valid chain: nothing in the file can tell. A head kept elsewhere can."""
    code, out, _ = _cli(capsys, "audit", "verify", "--home", str(home))
    kept = out.split("head ", 1)[1].rstrip(")\n")  # as printed: SEQ:HASH
    assert kept.startswith("6:") and _cli(capsys, "audit", "verify", "--home", str(home), "--head", kept)[0] == 0
    assert _cli(capsys, "audit", "verify", "--home", str(home), "--head", kept[:14])[0] == 0  # 12 hex digits
    with _db(home) as conn:
        conn.execute("DELETE FROM audit WHERE seq >= 5")
        seq, digest = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", (json.dumps({"seq": seq, "hash": digest}),
                                                                   audit.HEAD_KEY))
    assert _verify(home)[0]  # the file alone cannot tell
    code, out, err = _cli(capsys, "audit", "verify", "--home", str(home), "--head", kept)
    assert code == 1 and err.startswith("audit record 6: missing; the head kept elsewhere (6:"), err
    assert "ends at record 4" in err
    # the whole log rewritten from record 1 (every hash recomputed): the kept record's hash differs
    older = f"4:{audit.records(Store.open(home).metadata)[3].hash}"
    with _db(home) as conn:
        prev = audit.GENESIS
        for seq, raw in conn.execute("SELECT seq, record_json FROM audit ORDER BY seq").fetchall():
            raw = raw.replace("c0ffee", "decaf")
            digest = audit._digest(prev, raw)
            conn.execute("UPDATE audit SET record_json = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                         (raw, prev, digest, seq))
            prev = digest
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", (json.dumps({"seq": 4, "hash": prev}), audit.HEAD_KEY))
    assert _verify(home)[0]
    code, _, err = _cli(capsys, "audit", "verify", "--home", str(home), "--head", older)
    assert code == 1 and err.startswith("audit record 4: its hash") and "rewritten" in err, err
    with pytest.raises(SystemExit) as exc:
        main(["audit", "verify", "--home", str(home), "--head", "4:xyz"])
    assert exc.value.code == 2 and "argument --head: expected SEQ:HASH" in capsys.readouterr().err


def test_until_takes_all_of_the_second_or_minute_written(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A time copied from the list (seconds shown, records stored with fractions) left its record out."""
    with _db(home) as conn:
        conn.execute("UPDATE audit SET ts = ts + 0.4")
        conn.execute("UPDATE audit SET record_json = json_set(record_json, '$.ts', ts)")
    shown = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(T0 + 3 * 3600 + 0.4))
    code, out, _ = _cli(capsys, "audit", "--home", str(home), "--until", shown)
    assert code == 0 and [int(line.split()[0]) for line in out.splitlines()] == [1, 2, 3, 4], out
    code, out, _ = _cli(capsys, "audit", "--home", str(home), "--since", shown, "--until", shown)
    assert [int(line.split()[0]) for line in out.splitlines()] == [4], out
    code, out, _ = _cli(capsys, "audit", "--home", str(home), "--until", shown[:-3])  # to the minute
    assert [int(line.split()[0]) for line in out.splitlines()] == [1, 2, 3, 4], out


def test_appending_after_verify_keeps_the_chain(home: Path) -> None:
    store = Store.open(home)
    with store.metadata.transaction() as conn:
        digest = audit.append(conn, "alert.raised", {"alert": "drift-1"}, "dataset drift")
    assert audit.head(store.metadata) == {"seq": 7, "hash": digest}
    assert _verify(home)[0]


@pytest.mark.parametrize(("text", "expected"), [
    ("30s", T0 - 30), ("15m", T0 - 900), ("1h", T0 - 3600), ("2d", T0 - 2 * 86400), ("1w", T0 - 7 * 86400),
    ("1.5h", T0 - 5400), ("2023-11-14T22:13:20Z", T0), ("2023-11-14T23:13:20+01:00", T0),
])
def test_parse_since(text: str, expected: float) -> None:
    assert audit.parse_since(text, now=T0) == pytest.approx(expected)


def test_parse_since_naive_is_local_time() -> None:
    assert audit.parse_since("2023-11-14") == datetime(2023, 11, 14).timestamp()
    assert audit.parse_since("2023-11-14 08:30") == datetime(2023, 11, 14, 8, 30).timestamp()


@pytest.mark.parametrize("text", ["yesterday", "1y", "-1h", "h", "2023-13-01", ""])
def test_parse_since_rejects_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="ISO date or time .* 30m, 1h, 2d"):
        audit.parse_since(text, now=T0)


def test_filters(home: Path) -> None:
    meta = Store.open(home).metadata
    assert [r.seq for r in audit.records(meta, action="model.registered")] == [2, 5]
    assert [r.seq for r in audit.records(meta, action="model.")] == [2, 5]
    assert [r.seq for r in audit.records(meta, action="model")] == []
    assert [r.seq for r in audit.records(meta, since=T0 + 3 * 3600)] == [4, 5, 6]
    assert [r.seq for r in audit.records(meta, id="m:v2")] == [5, 6]
    assert [r.seq for r in audit.records(meta, id="abababab")] == [1, 2]  # snapshot id prefix
    assert [r.seq for r in audit.records(meta, id="m:v")] == []  # no prefix match on names
    assert [r.seq for r in audit.records(meta, id="m:v1", since=T0 + 2 * 3600)] == [3, 4]
    assert [r.seq for r in audit.records(meta, limit=2)] == [5, 6]
    assert [r.seq for r in audit.records(meta, since=T0 + 3600, until=T0 + 3 * 3600)] == [2, 3, 4]  # both ends in


# ---------------------------------------------------------------------------- the CLI


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_lists_by_default_and_list_is_an_alias(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(capsys, "--home", str(home), "audit")
    assert code == 0 and len(out.splitlines()) == 6
    assert "gate.rejected" in out.splitlines()[5] and "roc_auc >= 0.99 failed" in out.splitlines()[5]
    assert _cli(capsys, "--home", str(home), "audit", "list")[1] == out


def test_cli_filters_and_json_lines(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    since = datetime.fromtimestamp(T0 + 3600, tz=timezone.utc).isoformat()
    code, out, _ = _cli(capsys, "audit", "--home", str(home), "--since", since, "--id", "m:v1", "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [r["seq"] for r in lines] == [2, 3, 4]
    assert {"seq", "prev_hash", "hash", "ts", "action", "actor", "ids", "reason", "how"} <= set(lines[0])
    assert lines[1]["prev_hash"] == lines[0]["hash"]
    code, out, _ = _cli(capsys, "audit", "list", "--home", str(home), "--action", "gate.rejected", "--json")
    assert [json.loads(line)["ids"] for line in out.splitlines()] == [{"model": "m:v2"}]
    until = datetime.fromtimestamp(T0 + 2 * 3600, tz=timezone.utc).isoformat()  # `audit --until` said "invalid choice"
    for argv in (("audit", "--until", until), ("audit", "list", "--until", until)):
        code, out, _ = _cli(capsys, *argv, "--home", str(home), "--json")
        assert code == 0 and [json.loads(line)["seq"] for line in out.splitlines()] == [1, 2, 3]
    code, out, err = _cli(capsys, "audit", "--home", str(home), "--since", "1h")  # records are from 2023
    assert code == 0 and out == "" and "no audit records match" in err


def test_cli_since_relative_finds_fresh_records(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store.open(tmp_path)
    with store.metadata.transaction() as conn:
        audit.append(conn, "old.thing", {"x": 1}, clock=lambda: time.time() - 7200)
        audit.append(conn, "new.thing", {"x": 2})
    code, out, _ = _cli(capsys, "audit", "--home", str(tmp_path), "--since", "1h", "--json")
    assert code == 0 and [json.loads(line)["action"] for line in out.splitlines()] == ["new.thing"]


def test_cli_bad_since_exits_2_with_one_clear_line(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["audit", "--home", str(home), "--since", "last tuesday"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "error: argument --since:" in err and "'last tuesday'" in err and "Traceback" not in err


def test_cli_verify_exit_codes(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _cli(capsys, "audit", "verify", "--home", str(home))
    assert code == 0 and out.startswith("audit chain valid (6 records")
    code, out, _ = _cli(capsys, "audit", "verify", "--home", str(home), "--json")
    verdict = json.loads(out)
    assert verdict["ok"] is True and verdict["head"]["seq"] == 6
    with _db(home) as conn:
        conn.execute("UPDATE audit SET record_json = replace(record_json, 'c0ffee', 'decaf') WHERE seq = 4")
    code, out, err = _cli(capsys, "audit", "verify", "--home", str(home))
    assert code == 1 and out == "" and err.startswith("audit record 4:")
