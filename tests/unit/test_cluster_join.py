"""Joining a named Ray cluster (``monitor status``, ``status``, the UI, a pipeline under
RAY_ADDRESS): a cluster that cannot be reached is one line naming it and the usual causes; the
CLI exits 1 with it, no traceback."""

from __future__ import annotations

import pytest

from raymlops.cli import main
from raymlops.exceptions import RaymlopsError
from raymlops.ray_session import join_cluster


def test_the_message_names_the_address_and_says_when_token_auth_is_off_here(
    monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    with socket.socket() as listening:  # something listens: the join goes on to ray.init (which fails here)
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        address = f"127.0.0.1:{listening.getsockname()[1]}"
        with pytest.raises(RaymlopsError) as err:
            join_cluster(address)
        text = str(err.value)
        assert text.startswith(f"cannot reach the Ray cluster at {address}: unit tests must not start Ray.")
        assert "RAY_AUTH_MODE is not set here" in text and "RAY_AUTH_MODE=token" in text
        monkeypatch.setenv("RAY_AUTH_MODE", "token")
        with pytest.raises(RaymlopsError) as err:
            join_cluster(address)
        assert "RAY_AUTH_MODE" not in str(err.value)


def test_an_address_nothing_listens_at_is_said_at_once(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: pytest.TempPathFactory) -> None:
    """Ray retried such an address for minutes (`raymlops status --address 127.0.0.1:1` hung over
    6 minutes). And `status` says so in a folder without a home (it said "no raymlops home": the
    newcomer check's fresh clone has none)."""
    import time

    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    t0 = time.monotonic()
    with pytest.raises(RaymlopsError, match=r"cannot reach the Ray cluster at 127.0.0.1:1: nothing accepts "
                                            r"connections at 127.0.0.1:1"):
        join_cluster("127.0.0.1:1")
    assert time.monotonic() - t0 < 5
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    monkeypatch.delenv("RAYMLOPS_HOME", raising=False)
    assert main(["status", "--address", "127.0.0.1:1"]) == 1


def test_monitor_status_and_status_say_it_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    for argv in (["monitor", "status", "--address", "127.0.0.1:1"], ["status", "--address", "127.0.0.1:1"]):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert "cannot reach the Ray cluster at 127.0.0.1:1" in err and "RAY_AUTH_MODE=token" in err, err
        assert "Traceback" not in err
