"""One local Ray and one Serve instance for the whole session (per test process).

Serve listens on one port per Ray: every in-process deploy uses :func:`serve_port`, so Serve
starts once and stays up; each module's apps are deleted when the module ends (autouse fixture
below), Serve itself is not restarted. Tests that need Serve fresh (a port taken by another
program) shut it down themselves."""

from __future__ import annotations

import functools
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from raymlops.config import PipelineConfig, load_config
from tests.ports import free_port, session_ray

__all__ = ["ROOT", "TRIALS_AT_ONCE", "free_port", "quickstart_data", "serve_port", "trained_quickstart"]

ROOT = Path(__file__).resolve().parents[2]
#: ``train.max_concurrent_trials`` of the quickstart as most tests run it. Every Tune trial actor is a
#: process that spends about 2.5 CPU-s importing Ray Tune and scikit-learn, and the suite is CPU-bound
#: on 2 cores: one actor per search runs the quickstart's four tiny trials in turn, in about the same
#: time. The shipped value (2) is what the quickstart test, the CLI smoke test and the tests whose
#: subject is concurrency (``test_train_ray``, ``test_multinode``) run.
TRIALS_AT_ONCE = 1


def quickstart_data() -> dict[str, Any]:
    """``configs/quickstart.yaml`` as a dict, trials one at a time (:data:`TRIALS_AT_ONCE`)."""
    import yaml

    data: dict[str, Any] = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text(encoding="utf-8"))
    data["train"]["max_concurrent_trials"] = TRIALS_AT_ONCE
    return data


def _trials_at_once(cfg: PipelineConfig) -> PipelineConfig:
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"max_concurrent_trials": TRIALS_AT_ONCE})})


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
    """This test process's Ray (:func:`tests.ports.session_ray`)."""
    with session_ray():
        yield


@pytest.fixture()
def quickstart(tmp_path: Path) -> PipelineConfig:
    """The shipped quickstart config on the session's Serve port, trials one at a time
    (:data:`TRIALS_AT_ONCE`)."""
    cfg = _trials_at_once(load_config(ROOT / "configs" / "quickstart.yaml"))
    return cfg.model_copy(update={"serve": cfg.serve.model_copy(update={"port": serve_port()})})


@pytest.fixture(scope="session")
def _quickstart_trained_once(ray_session: None, tmp_path_factory: pytest.TempPathFactory
                             ) -> tuple[Path, dict[str, Any]]:
    """The quickstart pipeline with serving off, run once for the whole test run: its home and its
    result. The two test processes share it (the folder above each one's base temp is the run's),
    and a lock makes the first one train it while the other waits. The home holds no absolute
    path (SQLite keys are relative to it), so a copy is a home of its own."""
    from filelock import FileLock

    from raymlops import run_pipeline

    base = tmp_path_factory.getbasetemp()
    # under xdist each process's base is a folder of the run's; without it the base is the run's own
    # (its parent holds every earlier run: a home trained by older code would be taken)
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    home, result_file = shared / "quickstart-home", shared / "quickstart-result.json"
    with FileLock(str(shared / "quickstart-home.lock")):
        if not result_file.exists():
            cfg = _trials_at_once(load_config(ROOT / "configs" / "quickstart.yaml"))
            cfg = cfg.model_copy(update={"serve": cfg.serve.model_copy(update={"enabled": False})})
            shutil.rmtree(home, ignore_errors=True)
            result = run_pipeline(cfg, home=str(home), progress=lambda _: None)
            assert result.status == "succeeded", result.error
            result_file.write_text(json.dumps(result.to_dict()))
    return home, json.loads(result_file.read_text())


@pytest.fixture()
def trained_quickstart(_quickstart_trained_once: tuple[Path, dict[str, Any]], tmp_path: Path
                       ) -> tuple[Path, dict[str, Any]]:
    """A copy of the quickstart's trained home (serving off) in this test's folder, and the run's
    result (``RunResult.to_dict()``): for tests whose subject is what comes after training."""
    shared, result = _quickstart_trained_once
    home = tmp_path / "home"
    shutil.copytree(shared, home)
    return home, result
