"""The order in which the suite's two test processes take the modules.

With ``-n 2 --dist loadscope`` (pyproject's addopts) a module runs whole in one process, and the
processes take modules in collection order. The longest modules go first, so that the many short
ones fill in at the end; xdist's own order (``--loadscope-reorder``: the modules with the most
tests first) had left the one-minute modules for last, one process running them while the other
waited. The rest keep their collection order (integration, reliability, unit)."""

from __future__ import annotations

import compileall
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: modules that take a minute or more, longest first (``--durations`` in benchmarks/RESULTS.md)
LONGEST_FIRST = (
    "integration/test_multinode.py",
    "integration/test_train_distributed.py",
    "integration/test_runs.py",
    "integration/test_job_submit.py",
    "integration/test_train_ray.py",
    "integration/test_mlflow_tracking.py",
    "integration/test_traffic.py",
    "integration/test_feedback.py",
)


def _rank(item: pytest.Item) -> int:
    module = item.nodeid.split("::", 1)[0]
    return next((i for i, name in enumerate(LONGEST_FIRST) if module.endswith(name)), len(LONGEST_FIRST))


def pytest_configure(config: pytest.Config) -> None:
    """Byte-compile ``raymlops`` and ``tests`` once, in the first pytest process (xdist's
    controller, or the only one). The session starts a few hundred Python processes (Ray's
    trial, replica and monitor actors, CLI and driver subprocesses) that import them; where
    ``PYTHONDONTWRITEBYTECODE`` is set (this CI's machines set it) none of them writes a ``.pyc``,
    so each compiled the modules it imports again: measured 0.1-0.3 CPU-s a process, about 7 % of
    the fault-injection modules' CPU in a fresh clone. Only missing or stale files are written;
    a read-only checkout is left as it is."""
    if hasattr(config, "workerinput"):  # an xdist worker: its controller did it
        return
    for folder in ("raymlops", "tests"):
        compileall.compile_dir(str(ROOT / folder), quiet=2)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: within a rank, collection order
