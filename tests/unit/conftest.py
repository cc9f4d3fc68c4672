"""Unit-test fixtures: the pure core is tested without Ray and without the user's environment."""

from __future__ import annotations

import importlib.util

import pytest


@pytest.fixture(autouse=True)
def _ray_init_forbidden(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests never start Ray: ``ray.init`` raises if anything calls it, and ``ray.is_initialized``
    says no. In a full run the integration tiers' session Ray is still up in this process; the
    code under test must not see it (it would, e.g., join it instead of saying there is no cluster)."""
    if importlib.util.find_spec("ray") is None:
        return
    import ray

    def _refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unit tests must not start Ray")

    monkeypatch.setattr(ray, "init", _refuse)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller's raymlops settings must not leak into a test (each test picks its own home)."""
    for name in ("RAYMLOPS_HOME", "RAYMLOPS_ARTIFACT_ROOT", "RAY_ADDRESS"):
        monkeypatch.delenv(name, raising=False)
