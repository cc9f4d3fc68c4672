"""Reliability tests: faults, load and bad input (``pytest -m reliability`` runs only these).

Counts here are small so the suite stays within CI's few minutes on 2 cores;
``benchmarks/reliability.py`` runs the same scenarios with the full counts and writes the figures.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ports import free_port, session_ray

__all__ = ["free_port"]

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.reliability)


@pytest.fixture(scope="session")
def ray_local() -> Iterator[str]:
    """The test process's Ray (:func:`tests.ports.session_ray`); its GCS address, for driver
    processes that connect to it and get killed."""
    import ray

    with session_ray():
        yield str(ray.get_runtime_context().gcs_address)
