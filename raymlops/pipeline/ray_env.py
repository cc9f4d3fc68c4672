"""Connecting to Ray: reuse a running session, join ``RAY_ADDRESS``, or start a quiet local one."""

from __future__ import annotations

import logging
import os

from raymlops.exceptions import RaymlopsError

NAMESPACE = "raymlops"


def quiet_ray_logs() -> None:
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    for name in ("ray", "ray.data", "ray.tune", "ray.train", "ray.serve"):
        logging.getLogger(name).setLevel(logging.WARNING if name == "ray" else logging.ERROR)


def ensure_ray() -> bool:
    """Make sure this process is connected to Ray. Returns True when the cluster outlives this
    driver (``RAY_ADDRESS`` given, e.g. under ``ray job submit``, or ``auto`` for the cluster
    ``ray start`` left on this machine), False for a private local Ray started here."""
    import ray

    quiet_ray_logs()
    address = os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        _after_init()
        return bool(address)
    try:
        if address:
            ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.ERROR)
            _after_init()
            return True
        ray.init(
            address="local",  # a private Ray, even when a `ray start` cluster runs on this machine
            include_dashboard=False,
            namespace=NAMESPACE,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
    except ConnectionError as exc:
        raise RaymlopsError(
            f"cannot reach the Ray cluster at {address or 'a new local Ray'}: {exc}. "
            "Is it running (`ray status`)? Clients of a cluster with token auth need RAY_AUTH_MODE=token."
        ) from None
    _after_init()
    return False


def _after_init() -> None:
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    # row order is part of a snapshot's content id and of the index-based split: keep it
    # deterministic from the first read on, not only once a snapshot is written
    ctx.execution_options.preserve_order = True
    ctx.print_on_execution_start = False
    quiet_ray_logs()  # Ray Data sets its own log levels on import
