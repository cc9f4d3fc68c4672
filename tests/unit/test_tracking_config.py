"""``tracking:`` config (raymlops.tracking): validated at load; mlflow stays an optional extra."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from raymlops.config import parse_config
from raymlops.exceptions import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _pipeline(tracking: Any) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text(encoding="utf-8"))
    data["tracking"] = tracking
    return dict(data)


def test_tracking_is_off_by_default_and_typed_when_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("raymlops.tracking.settings.mlflow_installed", lambda: True)
    data = _pipeline(None)
    del data["tracking"]
    assert parse_config(data).tracking is None
    cfg = parse_config(_pipeline({"mlflow_uri": "http://127.0.0.1:5000", "register_model": True}))
    assert cfg.tracking is not None and cfg.tracking.register_model and cfg.tracking.experiment is None
    with pytest.raises(ConfigError, match=r"^cfg.yaml: tracking.register: unknown key; expected one of experiment"):
        parse_config(_pipeline({"mlflow_uri": "http://x", "register": True}), "cfg.yaml")


def test_tracking_without_mlflow_names_the_key_and_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("raymlops.tracking.settings.mlflow_installed", lambda: False)
    with pytest.raises(ConfigError) as info:
        parse_config(_pipeline({"mlflow_uri": "http://127.0.0.1:5000"}), "cfg.yaml")
    assert str(info.value).startswith(
        "cfg.yaml: tracking.mlflow_uri: expected the mlflow package to be installed for tracking "
        "(pip install 'raymlops[mlflow]'); it is not")


def test_raymlops_imports_and_runs_configs_without_mlflow() -> None:
    code = (
        "import sys; sys.modules['mlflow'] = None\n"  # import mlflow now fails, find_spec says absent
        "import raymlops, raymlops.cli, raymlops.pipeline, raymlops.hooks, raymlops.tracking, yaml\n"
        "from raymlops.config import parse_config\n"
        "data = yaml.safe_load(open('configs/quickstart.yaml'))\n"
        "parse_config(data)\n"
        "data['tracking'] = {'mlflow_uri': 'http://127.0.0.1:5000'}\n"
        "try:\n    parse_config(data, 'q.yaml')\nexcept Exception as exc:\n    print(exc)\n"
        "assert 'mlflow' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith("q.yaml: tracking.mlflow_uri: expected the mlflow package to be installed")
