"""The names of a route's monitor actors (no Ray): shard 0 is :func:`monitor_name`, shard i
:func:`shard_name`. The actors (:mod:`raymlops.monitor.actor`), their driver-side lifecycle and every
client that looks a monitor up by route (serve, the UI, the CLI) name them here."""

from __future__ import annotations

__all__ = ["PEER_TIMEOUT_S", "monitor_name", "shard_name"]

PEER_TIMEOUT_S = 30.0  # shard 0 waits this long for the other shards' snapshots; callers for shard names


def monitor_name(route: str) -> str:
    """The actor name of the monitor (shard 0) of ``route``."""
    return f"raymlops-monitor-{route}"


def shard_name(route: str, shard: int) -> str:
    """The actor name of ``shard`` of ``route``'s monitor (shard 0: :func:`monitor_name`; the
    others do not start with ``monitor_name("")``, so listing monitors by that prefix lists routes)."""
    return monitor_name(route) if shard == 0 else f"raymlops-monitor.shard{shard}.{route}"
