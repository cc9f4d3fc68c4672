"""``webhooks:`` in a pipeline config: where events are POSTed, and how hard to try.

Each entry is validated at load like the rest of the config (errors name the key path, e.g.
``webhooks[0].events[1]``). The signing secret is never part of the config: ``secret_env`` names
the environment variable that holds it, read only when a delivery is signed.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from raymlops.hooks.events import check_event_pattern

__all__ = ["ENV_NAME", "WebhookConfig", "check_url"]

EventPattern = Annotated[str, AfterValidator(check_event_pattern)]
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL with a host (no space in it), a port that exists, and
    no credentials (they would be stored, shown in ``webhooks list`` and in every failed delivery's
    warning: sign with ``secret_env`` instead); else ValueError saying so."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.netloc:
        if "@" in parts.netloc:
            raise ValueError("expected no credentials in the URL (they would be stored and shown; sign the events with "
                             f"secret_env instead), found {parts.scheme}://***@{parts.netloc.rsplit('@', 1)[1]}"
                             f"{parts.path}")
        if any(c.isspace() for c in parts.netloc):
            raise ValueError(f"expected a host without spaces, found {parts.netloc!r}")
        try:
            parts.port  # noqa: B018 - raises ValueError for a port out of 0-65535 or not a number
        except ValueError:
            raise ValueError(f"expected a port from 1 to 65535, found {parts.netloc.rsplit(':', 1)[-1]!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected an http:// or https:// URL with a host, found {url!r}")
    return url


class WebhookConfig(BaseModel):
    """One receiver: ``url`` gets a signed JSON POST for every event matching ``events``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    url: str = Field(description="http(s) URL the events are POSTed to")
    events: list[EventPattern] = Field(min_length=1, description="event types, 'retrain.*' or '*' for all")
    secret_env: str | None = Field(None, description="environment variable holding the HMAC secret; unset: unsigned")
    max_attempts: int = Field(5, ge=1, le=50, description="tries per delivery (the first one included)")
    backoff_s: float = Field(1.0, ge=0.0, description="wait before the 2nd try; doubles after each failed try")
    max_backoff_s: float = Field(60.0, ge=0.0, description="longest wait between two tries")
    timeout_s: float = Field(5.0, gt=0.0, le=300.0, description="per try: connect + answer")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return check_url(v)

    @field_validator("secret_env")
    @classmethod
    def _secret_env(cls, v: str | None) -> str | None:
        if v is not None and not ENV_NAME.match(v):
            raise ValueError(f"expected an environment variable name (letters, digits, '_'), found {v!r}")
        return v
