"""Webhook events: their types, their JSON form and the HMAC signature of a delivery.

A delivery's body is ``{"id", "type", "created_at", "data"}``; ``id`` (a uuid4) is the same on
every retry, so a receiver can drop duplicates. The signature is
``sha256=`` + hex HMAC-SHA256 of ``f"{timestamp}.{body}"`` with the shared secret, sent in
:data:`SIGNATURE_HEADER`, the unix timestamp in :data:`TIMESTAMP_HEADER`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "EVENT_HEADER", "EVENT_ID_HEADER", "EVENT_TYPES", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "Event",
    "check_event_pattern", "matches", "sign", "verify_signature",
]

EVENT_TYPES = (
    "model.registered", "model.promoted", "model.rolled_back", "deployment.changed",
    "retrain.triggered", "retrain.trained", "retrain.rejected", "retrain.unchanged", "retrain.evaluated",
    "retrain.promoted", "retrain.retired", "retrain.failed", "monitor.rebaselined", "monitor.alert",
)
TIMESTAMP_HEADER = "X-Raymlops-Timestamp"
SIGNATURE_HEADER = "X-Raymlops-Signature"
EVENT_ID_HEADER = "X-Raymlops-Event-Id"
EVENT_HEADER = "X-Raymlops-Event"


def check_event_pattern(name: str) -> str:
    """``name`` if it is an event type, ``<prefix>.*`` of some types, or ``*``; else ValueError."""
    if name == "*" or name in EVENT_TYPES:
        return name
    if name.endswith(".*") and any(t.startswith(name[:-1]) for t in EVENT_TYPES):
        return name
    raise ValueError(f"expected an event type among {', '.join(EVENT_TYPES)} (or 'model.*', 'retrain.*', '*'), "
                     f"found {name!r}")


def matches(patterns: list[str], event_type: str) -> bool:
    return any(p == "*" or p == event_type or (p.endswith(".*") and event_type.startswith(p[:-1]))
               for p in patterns)


@dataclass(frozen=True)
class Event:
    type: str
    data: dict[str, Any]
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created_at: float = field(default_factory=time.time)

    def body(self) -> bytes:
        """The JSON body POSTed for this event (the same bytes on every attempt)."""
        payload = {"id": self.id, "type": self.type, "created_at": self.created_at, "data": self.data}
        return json.dumps(payload, sort_keys=True, default=str, separators=(",", ":")).encode()


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of ``f"{timestamp}.{body}"`` keyed with ``secret``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret: str, timestamp: str | int, body: bytes, signature: str,
                     tolerance_s: float = 300.0, now: float | None = None) -> bool:
    """True when ``signature`` is ``body``'s signature at ``timestamp``, made within ``tolerance_s``."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)
