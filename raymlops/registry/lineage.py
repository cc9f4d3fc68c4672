"""What a model came from: code version, config, data, seeds and package versions (pure)."""

from __future__ import annotations

import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("raymlops", "ray", "scikit-learn", "numpy", "scipy", "pyarrow", "pandas", "joblib")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        res = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return res.stdout.decode(errors="replace") if res.returncode == 0 else None


def code_version(cwd: str | Path = ".") -> dict[str, Any]:
    """``{"git_commit", "dirty", "dirty_hash"}`` inside a git work tree, else the package version."""
    where = Path(cwd).resolve()
    commit = _git(["rev-parse", "HEAD"], where)
    if commit:
        diff = _git(["diff", "HEAD"], where) or ""
        status = _git(["status", "--porcelain", "--untracked-files=no"], where) or ""
        dirty = bool(status.strip())
        return {
            "git_commit": commit.strip(),
            "dirty": dirty,
            "dirty_hash": hashlib.sha256(diff.encode()).hexdigest()[:16] if dirty else None,
        }
    return {"package_version": package_versions(("raymlops",))["raymlops"]}
