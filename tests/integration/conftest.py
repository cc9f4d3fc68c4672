"""One local Ray for the whole integration session; Serve apps are shut down by each test."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from raymlops.config import PipelineConfig, load_config

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    import ray

    os.environ.pop("RAY_ADDRESS", None)
    from raymlops.ray_session import NAMESPACE, ensure_ray, quiet_ray_logs
    from raymlops.serve.throughput import fast_ingress_for_private_ray

    quiet_ray_logs()
    fast_ingress_for_private_ray(None)  # the default ingress, as `raymlops run` gets it (HAProxy where it exists)
    ray.init(address="local", include_dashboard=False, namespace=NAMESPACE, log_to_driver=False,
             logging_level=logging.ERROR)
    ensure_ray()  # reuses this Ray and applies raymlops' Ray Data settings (row order, no progress bars)
    yield
    from ray import serve

    serve.shutdown()
    ray.shutdown()


@pytest.fixture()
def quickstart(tmp_path: Path) -> PipelineConfig:
    """The shipped quickstart config on a free loopback port."""
    cfg = load_config(ROOT / "configs" / "quickstart.yaml")
    return cfg.model_copy(update={"serve": cfg.serve.model_copy(update={"port": free_port()})})
