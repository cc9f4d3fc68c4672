"""What a model came from: code version, config, data, seeds and package versions (pure)."""

from __future__ import annotations

import functools
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
    """``{"git_commit", "dirty", "dirty_hash"}`` of the git work tree at ``cwd`` (the project: a run
    passes its config file's folder), else the package version; and ``raymlops_source``, a hash of
    raymlops' own source files, so the code that trained is named wherever it was installed from
    (an editable install's edits neither showed in the lineage nor invalidated a cached model)."""
    where = Path(cwd).resolve()
    commit = _git(["rev-parse", "HEAD"], where)
    source = {"raymlops_source": raymlops_source()}
    if commit:
        diff = _git(["diff", "HEAD"], where) or ""
        status = _git(["status", "--porcelain", "--untracked-files=no"], where) or ""
        dirty = bool(status.strip())
        return {
            "git_commit": commit.strip(),
            "dirty": dirty,
            "dirty_hash": hashlib.sha256(diff.encode()).hexdigest()[:16] if dirty else None,
        } | source
    return {"package_version": package_versions(("raymlops",))["raymlops"]} | source


@functools.lru_cache(maxsize=1)
def raymlops_source() -> str:
    """sha256 (16 hex) of every .py file of the raymlops package, by relative path (once a process)."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(f"{f.relative_to(root)}\n".encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]
