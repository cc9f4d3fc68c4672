"""Reliability tests: faults, load and bad input (``pytest -m reliability`` runs only these).

Counts here are small so the suite stays within CI's few minutes on 2 cores;
``benchmarks/reliability.py`` runs the same scenarios with the full counts and writes the figures.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ports import free_port, start_session_ray

__all__ = ["free_port"]

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.reliability)


@pytest.fixture(scope="session")
def ray_local() -> Iterator[str]:
    """A local Ray for this session (or the one the integration tests already started); its GCS
    address, for driver processes that connect to it and get killed."""
    import ray

    started = False
    if not ray.is_initialized():
        start_session_ray()
        started = True
    yield str(ray.get_runtime_context().gcs_address)
    if started:
        from ray import serve

        serve.shutdown()
        ray.shutdown()
