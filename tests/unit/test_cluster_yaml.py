"""cluster.yaml passes Ray's own cluster-config validation and keeps the house rules."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    return data


def _validated(config: dict[str, Any]) -> dict[str, Any]:
    from ray.autoscaler._private.util import prepare_config, validate_config

    prepared: dict[str, Any] = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def test_cluster_yaml_passes_rays_validator(raw: dict[str, Any]) -> None:
    prepared = _validated(raw)
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_validator_is_not_a_rubber_stamp(raw: dict[str, Any]) -> None:
    import jsonschema

    bad = copy.deepcopy(raw)
    bad["available_node_types"]["cpu-worker"]["min_wrokers"] = 0  # a typo Ray's schema refuses
    with pytest.raises(jsonschema.ValidationError, match="min_wrokers"):
        _validated(bad)


def test_autoscaling_head_plus_one_worker_type_from_zero(raw: dict[str, Any]) -> None:
    types = raw["available_node_types"]
    workers = {name: t for name, t in types.items() if name != raw["head_node_type"]}
    assert len(workers) == 1
    (worker,) = workers.values()
    assert worker["min_workers"] == 0 and worker["max_workers"] >= 1
    assert raw["max_workers"] >= worker["max_workers"]


def test_setup_installs_raymlops_and_start_keeps_token_auth_and_loopback_dashboard(raw: dict[str, Any]) -> None:
    setup = " ".join(raw["setup_commands"])
    assert "pip install" in setup and "raymlops" in setup
    assert "~/raymlops" in raw["file_mounts"]  # the repository the setup installs from
    assert raw["file_mounts"].get("~/.ray/auth_token") == "~/.ray/auth_token"
    head = " ".join(raw["head_start_ray_commands"])
    assert "ray start --head" in head
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in head
    for cmds in (raw["head_start_ray_commands"], raw["worker_start_ray_commands"]):
        text = " ".join(cmds)
        assert "RAY_AUTH_MODE=token" in text and "RAY_AUTH_MODE=disabled" not in text
    assert ".git" in raw["rsync_exclude"]


def test_gcp_instructions_are_there() -> None:
    text = (ROOT / "cluster.yaml").read_text()
    assert "GCP: type: gcp" in text and "project_id" in text and "machineType" in text


def test_every_node_starts_with_the_fast_loopback_safe_ingress(raw: dict[str, Any], tmp_path: Path) -> None:
    """Both start commands take raymlops' HAProxy variables before `ray start`, and that command works."""
    import os
    import re
    import shutil
    import subprocess
    import sys

    commands = []
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        text = " ".join(raw[key])
        m = re.search(r'eval "\$\((python -m raymlops\.serve\.throughput --env[^)]*)\)";', text)
        assert m is not None and text.index(m.group(0)) < text.index("ray start"), key
        commands.append(m.group(1))
    assert len(set(commands)) == 1  # the same wrapper path on every node
    base = re.search(r"--base-dir (\S+)", commands[0])
    assert base is not None and len(base.group(1)) <= 27  # HAProxy's socket paths fit under it
    short = tmp_path.name[-8:]
    folder = f"/tmp/rmc-{short}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_SERVE_")} | {
        "RAYMLOPS_HAPROXY_BINARY": "/bin/true"}
    cmd = commands[0].replace("python", sys.executable, 1).replace(base.group(1), folder)
    try:
        out = subprocess.run(["sh", "-c", f'eval "$({cmd})"; env'], capture_output=True, text=True, env=env,
                             check=True, timeout=120).stdout
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    got = dict(line.split("=", 1) for line in out.splitlines() if line.startswith("RAY_SERVE_"))
    assert got["RAY_SERVE_ENABLE_HA_PROXY"] == "1" and got["RAY_SERVE_HAPROXY_BINARY_PATH"] == f"{folder}/haproxy"
    assert got["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "1"
