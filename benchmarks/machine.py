"""Machine facts every benchmark records (CPU model, memory, package versions)."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def mem_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def package_version(module: str) -> str:
    try:
        return version(module)
    except PackageNotFoundError:
        return "not installed"


def facts() -> dict[str, Any]:
    """What every benchmark's JSON records about the machine and the software, at the start."""
    import datetime as dt
    import os

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host_cpus": os.cpu_count(),
        "usable_cpus": usable,
        "cpu_model": cpu_model(),
        "mem_gib": mem_gib(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        **{name: package_version(name) for name in ("ray", "scikit-learn", "numpy", "scipy", "pyarrow", "raymlops")},
    }
