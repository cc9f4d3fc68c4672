"""Reliability tests: faults, load and bad input (``pytest -m reliability`` runs only these).

Counts here are small so the suite stays within CI's few minutes on 2 cores;
``benchmarks/reliability.py`` runs the same scenarios with the full counts and writes the figures.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).resolve().is_relative_to(HERE):
            item.add_marker(pytest.mark.reliability)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def ray_local() -> Iterator[str]:
    """A local Ray for this session (or the one the integration tests already started); its GCS
    address, for driver processes that connect to it and get killed."""
    import ray

    from raymlops.ray_session import NAMESPACE, ensure_ray, quiet_ray_logs

    started = False
    if not ray.is_initialized():
        os.environ.pop("RAY_ADDRESS", None)
        from raymlops.serve.throughput import fast_ingress_for_private_ray

        quiet_ray_logs()
        fast_ingress_for_private_ray(None)  # the default ingress, as `raymlops run` gets it
        ray.init(address="local", include_dashboard=False, namespace=NAMESPACE, log_to_driver=False,
                 logging_level=logging.ERROR)
        started = True
    ensure_ray()
    yield str(ray.get_runtime_context().gcs_address)
    if started:
        from ray import serve

        serve.shutdown()
        ray.shutdown()
