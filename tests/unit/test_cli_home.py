"""Commands that only read never make a home of a folder, a lost database is said, not re-created,
and a broken or read-only database is one line and exit 1, not a traceback (every command but
``doctor`` died with sqlite3's traceback)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from raymlops import audit
from raymlops.cli import main
from raymlops.store.home import Store


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and len(err.splitlines()) == 1, err
    return err


@pytest.mark.parametrize("command", [["models", "list"], ["audit"], ["runs", "list"], ["audit", "verify"], ["doctor"]])
def test_a_folder_that_is_no_home_stays_untouched(tmp_path: Path, command: list[str],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    assert main(["--home", str(tmp_path), *command]) == 2
    assert "no metadata.db" in _one_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_a_lost_database_beside_artifacts_is_said(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store.open(tmp_path)
    (store.home / "artifacts" / "models").mkdir(parents=True, exist_ok=True)
    (store.home / "metadata.db").unlink()
    for command in (["audit", "verify"], ["models", "list"], ["doctor"]):
        assert main(["--home", str(tmp_path), *command]) == 2
        assert "metadata.db is missing" in _one_line(capsys)
    assert not (store.home / "metadata.db").exists()  # not re-created empty


def test_a_corrupted_database_is_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store.open(tmp_path)
    for name in ("metadata.db-wal", "metadata.db-shm"):
        (store.home / name).unlink(missing_ok=True)
    (store.home / "metadata.db").write_bytes(b"this is not a database" * 100)
    for command in (["models", "list"], ["audit", "verify"], ["runs", "list"]):
        assert main(["--home", str(tmp_path), *command]) == 1
        err = _one_line(capsys)
        assert "metadata.db" in err and "not a database" in err


def test_a_database_sqlite_cannot_open_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """(What a read-only home gives a user who is not root: SQLite cannot open its write-ahead log.)"""
    store = Store.open(tmp_path)
    with store.metadata.transaction() as conn:
        audit.append(conn, "x", {})
    for name in ("metadata.db-wal", "metadata.db-shm"):
        (store.home / name).unlink(missing_ok=True)
        (store.home / name).mkdir()  # no file SQLite can open there
    assert main(["--home", str(tmp_path), "models", "list"]) == 1
    assert "metadata.db" in _one_line(capsys)


def test_models_history_of_no_model_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    Store.open(tmp_path)
    assert main(["--home", str(tmp_path), "models", "history", "nosuch"]) == 2
    assert "no model named 'nosuch'" in _one_line(capsys)


@pytest.mark.parametrize("limit", ["0", "-1"])
def test_runs_list_limit_below_one_exits_2(tmp_path: Path, limit: str, capsys: pytest.CaptureFixture[str]) -> None:
    Store.open(tmp_path)
    assert main(["--home", str(tmp_path), "runs", "list", "--limit", limit]) == 2
    assert "--limit" in _one_line(capsys)


def test_runs_list_status_abandoned(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run recorded running whose process is gone is listed as abandoned, under --status
    abandoned (refused before) and not under --status running (it was)."""
    import json

    store = Store.open(tmp_path)
    dead = {"who": {"host": __import__("socket").gethostname(), "pid": 2 ** 22 + 12345}}
    live = {"who": {"host": __import__("socket").gethostname(), "pid": os.getpid()}}
    with sqlite3.connect(store.home / "metadata.db") as conn:
        for run_id, record, started in (("r-dead", dead, 1.0), ("r-live", live, 2.0)):
            conn.execute("INSERT INTO runs(id, pipeline, started_at, ended_at, status, config_hash, record_json) "
                         "VALUES (?, 'p', ?, NULL, 'running', 'h', ?)", (run_id, started, json.dumps(record)))
    assert main(["--home", str(tmp_path), "runs", "list", "--status", "abandoned", "--json"]) == 0
    assert [r["run"] for r in json.loads(capsys.readouterr().out)] == ["r-dead"]
    assert main(["--home", str(tmp_path), "runs", "list", "--status", "running", "--json"]) == 0
    assert [r["run"] for r in json.loads(capsys.readouterr().out)] == ["r-live"]


def test_a_reason_with_a_line_break_or_an_escape_prints_on_its_own_line(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A reason is shown escaped: a newline in it printed a forged audit line, an escape could erase real ones."""
    store = Store.open(tmp_path)
    forged = "ok\n    9 2026-12-07 12:00:00 model.promoted     {} approved by alice (alice@vm)\x1b[2K"
    with store.metadata.transaction() as conn:
        audit.append(conn, "model.promoted", {"model": "m:v1"}, reason=forged)
    assert main(["--home", str(tmp_path), "audit"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1 and "\\n" in out and "\x1b" not in out and "\\x1b" in out


@pytest.mark.parametrize(("argv", "usage", "typo"), [(["run", "--jsn", "x.yaml"], "usage: raymlops run", "--jsn"),
                                                      (["audit", "--sinse", "2d"], "usage: raymlops audit", "--sinse"),
                                                      (["models", "list", "--jsn"], "usage: raymlops models list",
                                                       "--jsn")])
def test_a_mistyped_option_is_named_with_its_commands_usage(argv: list[str], usage: str, typo: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """It was said with the top-level usage, and `audit --sinse 2d` took '2d' for a bad verb."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.startswith(usage) and f"unrecognized arguments: {typo}" in err, err


def test_audit_until_a_date_is_that_whole_day_and_since_after_until_is_said(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import datetime as dt
    import json

    store = Store.open(tmp_path)
    noon = dt.datetime(2026, 5, 1, 12, 0).timestamp()
    with store.metadata.transaction() as conn:
        audit.append(conn, "model.promoted", {"model": "m:v1"}, clock=lambda: noon)
    assert main(["--home", str(tmp_path), "audit", "--until", "2026-05-01", "--json"]) == 0
    assert [json.loads(line)["action"] for line in capsys.readouterr().out.splitlines()] == ["model.promoted"]
    assert main(["--home", str(tmp_path), "audit", "--since", "2026-05-02", "--until", "2026-05-01"]) == 2
    assert "--since is after --until" in _one_line(capsys)


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_doctor_older_than_takes_a_number_of_seconds(tmp_path: Path, value: str,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    Store.open(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["--home", str(tmp_path), "doctor", "--older-than", value])
    assert info.value.code == 2 and "0 or more seconds" in capsys.readouterr().err


def test_every_option_says_what_it_does() -> None:
    """`--help` of every command describes each of its options (a dozen --json, --alias, --format
    and --limit said nothing)."""
    import argparse

    from raymlops.cli import build_parser

    silent: list[str] = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif action.option_strings and not action.help:
                silent.append(f"{path} {action.option_strings[0]}")

    walk(build_parser(), "raymlops")
    assert not silent, silent


def test_a_file_that_is_not_text_is_said_in_one_whole_line() -> None:
    """Ray Data splices its retry note into a UnicodeDecodeError's text: the message read "'utf-8"."""
    from raymlops.cli.snapshot_cmd import _first_line

    exc = UnicodeDecodeError("utf-8\nFailed to read stream iteratively after 1/10 attempts", b"\xff", 0, 1,
                             "invalid start byte")
    assert _first_line(exc) == ("a file is not utf-8 text (byte 0: invalid start byte): give --format, or point "
                                "--source at the data files alone")


@pytest.mark.parametrize(("argv", "words"), [
    (["runs", "list", "--limit", str(2**63)], "--limit: expected a number of runs from 1 to 1000000000"),
    (["webhooks", "deliveries", "--limit", str(2**70)], "--limit: expected 1 to 1000000000"),
    (["reproduce", "m:v1", "--seed", "-1"], "--seed: expected 0 to 4294967295"),
    (["reproduce", "m:v1", "--seed", str(2**32)], "--seed: expected 0 to 4294967295"),
    (["deploy", "m@champion", "--port", "70000"], "--port: expected a port from 1 to 65535, found 70000"),
    (["deploy", "m@champion", "--route", "bad route"], "--route 'bad route': expected lowercase letters"),
])
def test_numbers_out_of_range_are_named_exit_2_before_anything_starts(
        tmp_path: Path, argv: list[str], words: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Each was a traceback (OverflowError, numpy's seed error, http.client's InvalidURL), exit 1,
    some only after Ray had started, or 'datatype mismatch ... run raymlops doctor'."""
    import sys

    Store.open(tmp_path)
    (tmp_path / "webhooks.db").touch()
    assert main(["--home", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err, err
    assert "ray" not in sys.modules or not __import__("ray").is_initialized()


def test_audit_until_the_end_of_time_is_named_not_a_traceback(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    Store.open(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["--home", str(tmp_path), "audit", "--until", "9999-12-31"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "argument --until" in err and "Traceback" not in err, err
