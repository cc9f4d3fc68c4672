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
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    with pytest.raises(RaymlopsError) as err:
        join_cluster("127.0.0.1:46439")
    text = str(err.value)
    assert text.startswith("cannot reach the Ray cluster at 127.0.0.1:46439: unit tests must not start Ray.")
    assert "RAY_AUTH_MODE is not set here" in text and "RAY_AUTH_MODE=token" in text
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    with pytest.raises(RaymlopsError) as err:
        join_cluster("127.0.0.1:46439")
    assert "RAY_AUTH_MODE" not in str(err.value)


def test_monitor_status_and_status_say_it_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    for argv in (["monitor", "status", "--address", "127.0.0.1:1"], ["status", "--address", "127.0.0.1:1"]):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert "cannot reach the Ray cluster at 127.0.0.1:1" in err and "RAY_AUTH_MODE=token" in err, err
        assert "Traceback" not in err
