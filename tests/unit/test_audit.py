"""The hash-chained audit log (raymlops.audit): append, read back, and detect tampering."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
from pathlib import Path

import pytest

from raymlops import audit
from raymlops.store import Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store.open(tmp_path)
    clock = iter([1000.0, 1001.5, 1003.0])
    entries = [
        ("snapshot.created", {"snapshot": "s1"}, "ingest", {"rows": 10}),
        ("model.registered", {"model": "m:v1", "snapshot": "s1"}, "trained", {"config_hash": "abc"}),
        ("alias.moved", {"model": "m:v1", "alias": "champion"}, "gate passed", None),
    ]
    for action, ids, reason, how in entries:
        with store.metadata.transaction() as conn:
            audit.append(conn, action, ids, reason=reason, how=how, clock=lambda: next(clock))
    return store


def _db(store: Store) -> sqlite3.Connection:
    return sqlite3.connect(store.home / "metadata.db", isolation_level=None)


def _tamper(store: Store, *statements: tuple[str, tuple[object, ...]]) -> None:
    conn = _db(store)
    try:
        for sql, args in statements:
            conn.execute(sql, args)
    finally:
        conn.close()


def test_records_carry_who_what_why_and_how(store: Store) -> None:
    recs = audit.records(store.metadata)
    assert [r.seq for r in recs] == [1, 2, 3]
    assert [r.action for r in recs] == ["snapshot.created", "model.registered", "alias.moved"]
    assert [r.ts for r in recs] == [1000.0, 1001.5, 1003.0]  # the injected clock
    first, second, third = recs
    import pwd

    user = pwd.getpwuid(os.getuid()).pw_name
    for r in recs:
        assert {k: v for k, v in r.record["actor"].items() if k != "claimed"} == {
            "user": user, "uid": os.getuid(), "host": socket.gethostname(), "pid": os.getpid()}
        assert r.record["action"] == r.action and r.record["ts"] == r.ts
    assert second.record["ids"] == {"model": "m:v1", "snapshot": "s1"}
    assert second.record["reason"] == "trained"
    assert second.record["how"] == {"config_hash": "abc"}
    assert third.record["how"] == {}
    assert first.record["how"] == {"rows": 10}


def test_records_chain_by_hash(store: Store) -> None:
    recs = audit.records(store.metadata)
    assert recs[0].prev_hash == audit.GENESIS
    assert recs[1].prev_hash == recs[0].hash and recs[2].prev_hash == recs[1].hash
    assert len({r.hash for r in recs}) == 3
    with store.metadata.read() as conn:
        raw = conn.execute("SELECT prev_hash, record_json, hash FROM audit WHERE seq = 2").fetchone()
    assert hashlib.sha256(f"{raw[0]}\n{raw[1]}".encode()).hexdigest() == raw[2]


def test_records_filter_by_action(store: Store) -> None:
    assert [r.seq for r in audit.records(store.metadata, action="model.registered")] == [2]
    assert audit.records(store.metadata, action="no.such.action") == []


def test_append_returns_the_stored_hash(store: Store) -> None:
    with store.metadata.transaction() as conn:
        digest = audit.append(conn, "x.happened", {"id": 1})
    last = audit.records(store.metadata)[-1]
    assert last.hash == digest and last.seq == 4 and last.record["reason"] is None


def test_intact_chain_verifies(store: Store) -> None:
    ok, message = audit.verify(store.metadata)
    assert ok is True
    assert "3 records" in message


def test_empty_log_verifies(tmp_path: Path) -> None:
    ok, message = audit.verify(Store.open(tmp_path).metadata)
    assert ok and "0 records" in message


def test_rolled_back_append_leaves_the_chain_intact(store: Store) -> None:
    with pytest.raises(RuntimeError), store.metadata.transaction() as conn:
        audit.append(conn, "lost", {"id": 1})
        raise RuntimeError("the change failed")
    assert len(audit.records(store.metadata)) == 3
    with store.metadata.transaction() as conn:
        audit.append(conn, "kept", {"id": 2})
    assert audit.verify(store.metadata)[0]


def test_edited_record_is_detected(store: Store) -> None:
    with store.metadata.read() as conn:
        text = conn.execute("SELECT record_json FROM audit WHERE seq = 2").fetchone()[0]
    record = json.loads(text)
    record["reason"] = "nothing to see here"
    edited = json.dumps(record, sort_keys=True, separators=(",", ":"))
    _tamper(store, ("UPDATE audit SET record_json = ? WHERE seq = 2", (edited,)))
    ok, message = audit.verify(store.metadata)
    assert ok is False
    assert "audit record 2" in message and "edited" in message


def test_edited_last_record_is_detected(store: Store) -> None:
    _tamper(
        store, ("UPDATE audit SET record_json = replace(record_json, 'alias.moved', 'alias.deleted') WHERE seq = 3", ())
    )
    ok, message = audit.verify(store.metadata)
    assert not ok and "audit record 3" in message


def test_a_deleted_middle_record_is_named_missing(store: Store) -> None:
    _tamper(store, ("DELETE FROM audit WHERE seq = 2", ()))
    ok, message = audit.verify(store.metadata)
    assert ok is False
    assert message == "audit record 2: missing (removed); the log goes on with record 3"


def test_deleted_first_record_is_detected(store: Store) -> None:
    _tamper(store, ("DELETE FROM audit WHERE seq = 1", ()))
    ok, message = audit.verify(store.metadata)
    assert not ok and message.startswith("audit record 1: missing (removed)"), message


def test_swapped_records_are_detected(store: Store) -> None:
    cols = "ts, action, record_json, prev_hash, hash"
    with store.metadata.read() as conn:
        one = tuple(conn.execute(f"SELECT {cols} FROM audit WHERE seq = 1").fetchone())
        two = tuple(conn.execute(f"SELECT {cols} FROM audit WHERE seq = 2").fetchone())
    update = "UPDATE audit SET ts = ?, action = ?, record_json = ?, prev_hash = ?, hash = ? WHERE seq = ?"
    _tamper(store, (update, (*two, 1)), (update, (*one, 2)))
    ok, message = audit.verify(store.metadata)
    assert ok is False and "audit record 1" in message


def test_swapped_record_bodies_are_detected(store: Store) -> None:
    with store.metadata.read() as conn:
        one = conn.execute("SELECT record_json FROM audit WHERE seq = 1").fetchone()[0]
        two = conn.execute("SELECT record_json FROM audit WHERE seq = 2").fetchone()[0]
    update = "UPDATE audit SET record_json = ? WHERE seq = ?"
    _tamper(store, (update, (two, 1)), (update, (one, 2)))
    ok, message = audit.verify(store.metadata)
    assert ok is False and "audit record 1" in message


def test_rehashed_edit_breaks_the_link_to_the_next_record(store: Store) -> None:
    # an editor who also recomputes the edited record's own hash is caught by the record after it,
    # and the edited one is named
    with store.metadata.read() as conn:
        prev_hash, text = conn.execute("SELECT prev_hash, record_json FROM audit WHERE seq = 2").fetchone()
    record = json.loads(text)
    record["ids"]["model"] = "m:v999"
    edited = json.dumps(record, sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(f"{prev_hash}\n{edited}".encode()).hexdigest()
    _tamper(store, ("UPDATE audit SET record_json = ?, hash = ? WHERE seq = 2", (edited, digest)))
    ok, message = audit.verify(store.metadata)
    assert ok is False and message.startswith("audit record 2: edited and re-hashed (record 3 links"), message


@pytest.mark.parametrize("value", ["garbage", "[1, 2]", '"text"'])
def test_an_edited_head_row_is_said_not_a_traceback(store: Store, value: str) -> None:
    _tamper(store, ("UPDATE meta SET value = ? WHERE key = ?", (value, audit.HEAD_KEY)))
    ok, message = audit.verify(store.metadata)
    assert ok is False and message.startswith("audit head:") and "not valid" in message
    assert audit.head(store.metadata) is None


def _append_chained(store: Store, body: object) -> None:
    """A record appended with a correct chain hash, as a forger with the database would, head row untouched."""
    with store.metadata.read() as conn:
        prev = conn.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()[0]
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    ts = body.get("ts", 2000.0) if isinstance(body, dict) else 2000.0
    action = body.get("action", "x") if isinstance(body, dict) else "x"
    _tamper(store, ("INSERT INTO audit(ts, action, record_json, prev_hash, hash) VALUES (?, ?, ?, ?, ?)",
                    (ts, action, text, prev, hashlib.sha256(f"{prev}\n{text}".encode()).hexdigest())))


def test_a_chained_record_added_outside_raymlops_is_named(store: Store) -> None:
    _append_chained(store, {"ts": 2000.0, "action": "model.promoted", "actor": {"user": "mallory"},
                            "ids": {"model": "m:v1"}, "reason": "x", "how": {}})
    ok, message = audit.verify(store.metadata)
    assert ok is False and message.startswith("audit record 4: written after"), message


@pytest.mark.parametrize("body", [[1, 2], {"ts": 2000.0, "action": "x", "ids": ["m:v1"]}])
def test_a_chained_record_that_is_no_record_is_said_and_listing_survives_it(store: Store, body: object) -> None:
    _append_chained(store, body)
    _tamper(store, ("UPDATE meta SET value = ? WHERE key = ?",
                    (json.dumps({"seq": 4, "hash": _db(store).execute("SELECT hash FROM audit WHERE seq = 4")
                                 .fetchone()[0]}), audit.HEAD_KEY)))
    ok, message = audit.verify(store.metadata)
    assert ok is False and message == "audit record 4: content is not an audit record (edited)"
    assert [r.seq for r in audit.records(store.metadata, id="m:v1")] == [2, 3]  # listing and filtering still work
    if not isinstance(body, dict):
        assert "edited" in audit.records(store.metadata)[-1].record["reason"]


def test_renumbered_records_are_detected(store: Store) -> None:
    _tamper(store, ("UPDATE audit SET seq = seq + 100 WHERE seq >= 2", ()),
            ("UPDATE meta SET value = ? WHERE key = ?",
             (json.dumps({"seq": 103, "hash": audit.records(store.metadata)[-1].hash}), audit.HEAD_KEY)))
    ok, message = audit.verify(store.metadata)
    assert ok is False and message.startswith("audit record 102: numbered out of order"), message


def test_an_alias_in_the_registrys_notation_finds_that_models_alias_records(store: Store) -> None:
    with store.metadata.transaction() as conn:
        audit.append(conn, "alias.moved", {"model": "other:v1", "alias": "champion"}, clock=lambda: 1004.0)
    assert [r.seq for r in audit.records(store.metadata, id="m@champion")] == [3]
    assert [r.seq for r in audit.records(store.metadata, id="other@champion")] == [4]
    assert audit.records(store.metadata, id="m@staging") == []


def test_who_is_the_account_of_the_uid_not_what_the_environment_claims(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`LOGNAME=alice raymlops models promote ...` run as another account was recorded as alice."""
    import os
    import pwd

    from raymlops.pipeline.history import who

    account = pwd.getpwuid(os.getuid()).pw_name
    for name in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        monkeypatch.setenv(name, "mallory")
    store = Store.open(tmp_path / "home")
    with store.metadata.transaction() as conn:
        audit.append(conn, "alias.moved", {"model": "m:v1", "alias": "champion"}, "spoof test")
    actor = audit.records(store.metadata)[-1].record["actor"]
    assert actor["user"] == account != "mallory" and actor["uid"] == os.getuid() and actor["claimed"] == "mallory"
    assert who()["user"] == account and who()["claimed"] == "mallory"
    monkeypatch.setenv("LOGNAME", account)
    assert "claimed" not in audit.os_user()
