"""Whether the process that recorded something is still alive (a run killed by SIGKILL or the
out-of-memory killer never records its end; its record says ``running`` for good)."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

__all__ = ["gone"]


def gone(who: Mapping[str, Any] | None) -> bool:
    """True when ``who`` (``{"host", "pid"}``, as a run records its process) names a process of
    this host that no longer exists; False when it is alive, or on another host (not known here)."""
    if not who or who.get("host") != socket.gethostname():
        return False
    try:
        pid = int(who["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False
