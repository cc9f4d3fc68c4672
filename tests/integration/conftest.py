"""One local Ray and one Serve instance for the whole session (per test process).

Serve listens on one port per Ray: every in-process deploy uses :func:`serve_port`, so Serve
starts once and stays up; each module's apps are deleted when the module ends (autouse fixture
below), Serve itself is not restarted. Tests that need Serve fresh (a port taken by another
program) shut it down themselves."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path

import pytest

from raymlops.config import PipelineConfig, load_config
from tests.ports import free_port, start_session_ray

__all__ = ["ROOT", "free_port", "serve_port"]

ROOT = Path(__file__).resolve().parents[2]


@functools.cache
def serve_port() -> int:
    """The port of this test process's Serve (chosen once, free when chosen)."""
    return free_port()


def remove_serve_apps() -> None:
    """Delete every Serve app and its control actor, leaving Serve itself up (no-op without Ray)."""
    import sys

    if "ray" not in sys.modules:
        return
    import ray

    if not ray.is_initialized():
        return
    from ray import serve

    from raymlops.serve.deploy import undeploy

    try:
        apps = list(serve.status().applications)
    except Exception:  # noqa: BLE001 - Serve not running
        return
    for name in apps:
        undeploy(name, shutdown=False)


@pytest.fixture(autouse=True, scope="module")
def _module_serve_apps_removed() -> Iterator[None]:
    """What a module deployed does not outlive it (idle replicas would slow the modules after it)."""
    yield
    remove_serve_apps()


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    import ray

    start_session_ray()
    yield
    from ray import serve

    serve.shutdown()
    ray.shutdown()


@pytest.fixture()
def quickstart(tmp_path: Path) -> PipelineConfig:
    """The shipped quickstart config on the session's Serve port."""
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    return cfg.model_copy(update={"serve": cfg.serve.model_copy(update={"port": serve_port()})})
