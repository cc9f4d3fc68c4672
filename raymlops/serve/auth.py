"""Who may change a route's state: a bearer token on ``/feedback`` (pure: no Ray).

Labels can start a retraining cycle, so whoever posts them steers the model. A route that
listens beyond loopback (``serve.host`` not 127.0.0.1 / ::1 / localhost) therefore takes labels
only with ``Authorization: Bearer <token>``; ``serve.require_token: true`` asks for it on
loopback too. The token is read from the environment variable ``serve.token_env`` (default
``RAYMLOPS_FEEDBACK_TOKEN``) of the replica's process (set it where Ray starts, or in the
job's runtime environment), never from the config or the deployment's arguments, is compared in
constant time (:func:`hmac.compare_digest`) and never logged or echoed. Without a token the
route answers 401 (``WWW-Authenticate: Bearer``); when a token is required but the variable is
unset or empty, every label is refused (fail closed).

The prediction routes are not guarded: they answer, and what they hand to the monitor is what
was served. ``/feedback`` is the one route of the deployment that changes what the monitor
believes about the model.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Mapping

from raymlops.serve.request import RequestError

__all__ = ["DEFAULT_TOKEN_ENV", "BearerAuth", "is_loopback", "token_required"]

DEFAULT_TOKEN_ENV = "RAYMLOPS_FEEDBACK_TOKEN"


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, ``localhost``)."""
    h = host.strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def token_required(host: str, require_token: bool) -> bool:
    """A token is needed beyond loopback always, and on loopback when configured."""
    return bool(require_token) or not is_loopback(host)


class BearerAuth:
    """Checks ``Authorization`` headers against the token in ``environ[env]`` (read once)."""

    def __init__(self, required: bool, env: str = DEFAULT_TOKEN_ENV,
                 environ: Mapping[str, str] | None = None) -> None:
        self.required = bool(required)
        self.env = env
        token = (os.environ if environ is None else environ).get(env, "")
        self._token = token.encode("utf-8") if token else None

    @property
    def configured(self) -> bool:
        """Whether a token was found (False means: every guarded request is refused)."""
        return self._token is not None

    def __repr__(self) -> str:  # never the token
        return f"BearerAuth(required={self.required}, env={self.env!r}, configured={self.configured})"

    def check(self, authorization: str | None) -> None:
        """Return when the request may pass; :class:`RequestError` 401 otherwise."""
        if not self.required:
            return
        if self._token is None:
            raise RequestError(401, "unauthorized", f"this route takes labels only with a bearer token, and the "
                               f"server has none: set the environment variable {self.env} where Ray runs")
        scheme, _, given = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise RequestError(401, "unauthorized", "send 'Authorization: Bearer <token>' to post labels")
        if not hmac.compare_digest(given.strip().encode("utf-8"), self._token):
            raise RequestError(401, "unauthorized", "the bearer token is not valid for this route")
