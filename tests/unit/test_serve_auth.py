"""The bearer token on ``/feedback``: when it is required, how it is compared, that it never shows
(pure: no Ray)."""

from __future__ import annotations

import pytest

from raymlops.config import ServeConfig
from raymlops.serve.auth import BearerAuth, is_loopback, token_required
from raymlops.serve.request import RequestError
from raymlops.serve.settings import ReplicaSettings

TOKEN = "s3cret-token-value"


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True),
                                               ("[::1]", True), ("localhost", True), ("0.0.0.0", False),
                                               ("::", False), ("10.0.0.5", False), ("example.org", False)])
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    assert token_required(host, False) is (not loopback)
    assert token_required(host, True)


def test_a_token_is_required_beyond_loopback_and_on_request_on_loopback() -> None:
    def settings(**kw: object) -> ReplicaSettings:
        return ReplicaSettings.of(ServeConfig(**kw), "r", namespace="n", monitor_actor=None)

    assert settings().token_required is False
    assert settings(require_token=True).token_required is True
    assert ReplicaSettings.of(ServeConfig(), "r", host="0.0.0.0").token_required is True  # where Serve listens
    s = settings(host="0.0.0.0", token_env="MY_TOKEN")
    assert s.token_required is True and s.serve.token_env == "MY_TOKEN"
    assert TOKEN not in repr(s) and TOKEN not in repr(s.to_dict())  # the variable's name travels, never a value
    with pytest.raises(ValueError, match="token_env"):
        ServeConfig(token_env="not a name")


def test_bearer_check() -> None:
    auth = BearerAuth(True, "T", environ={"T": TOKEN})
    auth.check(f"Bearer {TOKEN}")
    auth.check(f"bearer   {TOKEN} ")
    for bad in (None, "", TOKEN, f"Basic {TOKEN}", "Bearer ", "Bearer wrong", f"Bearer {TOKEN}x"):
        with pytest.raises(RequestError) as info:
            auth.check(bad)
        assert info.value.status == 401 and info.value.error == "unauthorized"
        assert TOKEN not in info.value.message
    assert TOKEN not in repr(auth) and "configured=True" in repr(auth)
    BearerAuth(False, "T", environ={}).check(None)  # not required: anything passes


def test_required_without_a_configured_token_refuses_everything() -> None:
    auth = BearerAuth(True, "T", environ={"T": ""})
    assert not auth.configured
    with pytest.raises(RequestError, match="set the environment variable T"):
        auth.check("Bearer anything")
