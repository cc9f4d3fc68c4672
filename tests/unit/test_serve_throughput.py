"""Serve's HAProxy ingress made loopback-safe (raymlops.serve.throughput), without starting Ray."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from raymlops.exceptions import ConfigError
from raymlops.serve import throughput

RENDERED = """global
    stats socket /x/admin.sock mode 666 level admin expose-fd listeners
frontend prometheus
    bind :{metrics}
frontend http_frontend
    bind 127.0.0.1:8000
frontend other
    bind :{other}
listen stats
  bind *:{stats}
"""


def test_ray_still_renders_the_binds_the_wrapper_rewrites() -> None:
    """A canary: when Ray changes its template, this fails before a deployment listens wide."""
    from ray.serve._private.haproxy_templates import HAPROXY_CONFIG_TEMPLATE

    assert "bind :{{ config.metrics_port }}" in HAPROXY_CONFIG_TEMPLATE
    assert "bind *:{{ config.stats_port }}" in HAPROXY_CONFIG_TEMPLATE
    assert "mode 666 level admin" in HAPROXY_CONFIG_TEMPLATE


@pytest.mark.skipif(not Path("/bin/sh").exists(), reason="needs a POSIX shell")
def test_wrapper_moves_stats_and_metrics_to_loopback_then_runs_haproxy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "fake-haproxy"
    fake.write_text('#!/bin/sh\nprev=""\nfor a in "$@"; do [ "$prev" = "-f" ] && cp "$a" "$0.seen"; prev="$a"; done\n'
                    'echo "args: $*" > "$0.args"\n')
    fake.chmod(stat.S_IRWXU)
    monkeypatch.setenv("RAYMLOPS_HAPROXY_BINARY", str(fake))
    for name in list(os.environ):
        if name.startswith("RAY_SERVE_"):
            monkeypatch.delenv(name)
    env = throughput.prepare_high_throughput(stats_port=18404, metrics_port=19101)
    folder = Path(env["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"])
    try:
        assert env["RAY_SERVE_ENABLE_HA_PROXY"] == "1" and os.environ["RAY_SERVE_HAPROXY_STATS_PORT"] == "18404"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and len(str(folder)) <= throughput.MAX_BASE_DIR
        assert env["RAY_SERVE_HAPROXY_SOCKET_PATH"].startswith(str(folder))
        assert env["RAY_SERVE_FALLBACK_PROXY_HTTP_PORT"] != "8500"
        cfg = tmp_path / "haproxy.cfg"
        cfg.write_text(RENDERED.format(metrics=19101, stats=18404, other=7777))
        subprocess.run([env["RAY_SERVE_HAPROXY_BINARY_PATH"], "-db", "-f", str(cfg), "-sf", "12"], check=True)
        seen = Path(str(fake) + ".seen").read_text()
        assert "bind 127.0.0.1:19101" in seen and "bind 127.0.0.1:18404" in seen
        assert "bind 127.0.0.1:8000" in seen and "bind :7777" in seen  # other binds untouched
        assert "mode 600 level admin" in seen and "mode 666" not in seen
        assert Path(str(fake) + ".args").read_text().strip() == f"args: -db -f {cfg} -sf 12"
    finally:
        throughput.clear_high_throughput(env)
        shutil.rmtree(folder, ignore_errors=True)
    assert "RAY_SERVE_ENABLE_HA_PROXY" not in os.environ


def test_a_base_folder_too_long_for_haproxy_sockets_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="too long"):
        throughput.prepare_high_throughput(base_dir=tmp_path / ("x" * 40))


@pytest.fixture()
def no_serve_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No RAY_SERVE_* variables during the test, and none that the code under test set after it;
    no Ray connected either (in a full run the integration tiers' session Ray is up in this
    process, and raymlops leaves a running Ray's ingress alone)."""
    for name in list(os.environ):
        if name.startswith("RAY_SERVE_"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    if "ray" in sys.modules:
        monkeypatch.setattr(sys.modules["ray"], "is_initialized", lambda: False)
    yield
    for name in list(os.environ):
        if name.startswith("RAY_SERVE_"):
            os.environ.pop(name)


@pytest.fixture()
def short_dir() -> Iterator[Path]:
    """HAProxy's socket paths limit the base folder to a short path (tmp_path is too long)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="rmt-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_prepare_sets_the_quick_stop_drain_unless_the_environment_chose(
        short_dir: Path, monkeypatch: pytest.MonkeyPatch, no_serve_env: None) -> None:
    tmp_path = short_dir
    monkeypatch.setenv("RAYMLOPS_HAPROXY_BINARY", "/bin/true")
    env = throughput.prepare_high_throughput(base_dir=tmp_path / "a")
    try:
        assert env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "1"
        assert env["RAY_SERVE_PROXY_MIN_DRAINING_PERIOD_S"] == "1"
    finally:
        throughput.clear_high_throughput(env)
    monkeypatch.setenv("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "7")
    env = throughput.prepare_high_throughput(base_dir=tmp_path / "b")
    try:
        assert env["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "7"
    finally:
        throughput.clear_high_throughput(env)
    env = throughput.prepare_high_throughput(base_dir=tmp_path / "c", fast_stop=False)
    throughput.clear_high_throughput(env)
    assert "RAY_SERVE_PROXY_MIN_DRAINING_PERIOD_S" not in env


def test_fast_ingress_is_the_default_for_a_private_ray(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       no_serve_env: None) -> None:
    monkeypatch.setenv("RAYMLOPS_HAPROXY_BINARY", "/bin/true")
    assert throughput.fast_ingress_for_private_ray(False) is None  # serve.high_throughput: false
    assert "RAY_SERVE_ENABLE_HA_PROXY" not in os.environ
    assert os.environ["RAY_SERVE_PROXY_MIN_DRAINING_PERIOD_S"] == "1"  # Serve's proxy stops quickly too
    monkeypatch.setenv("RAY_ADDRESS", "auto")
    assert throughput.fast_ingress_for_private_ray(None) is None  # an existing cluster decides
    monkeypatch.delenv("RAY_ADDRESS")
    monkeypatch.setattr(throughput, "_private_folders", [])
    env = throughput.fast_ingress_for_private_ray(None)
    assert env is not None and os.environ["RAY_SERVE_ENABLE_HA_PROXY"] == "1"
    folder = Path(env["RAY_SERVE_HAPROXY_SERVER_STATE_BASE"])
    assert throughput._private_folders == [folder]  # removed at exit
    try:
        assert throughput.ingress_here() == throughput.HAPROXY
        assert throughput.fast_ingress_for_private_ray(None) is None  # prepared once
    finally:
        throughput.clear_high_throughput(env)
        throughput.remove_private_folders()
    assert throughput.ingress_here() == throughput.PYTHON_PROXY and not folder.exists()


def test_without_haproxy_the_default_falls_back_and_true_refuses(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, no_serve_env: None) -> None:
    def missing() -> str:
        raise ConfigError("serve.high_throughput: no HAProxy binary found")

    monkeypatch.setattr(throughput, "real_haproxy", missing)
    with caplog.at_level("WARNING", logger="raymlops.serve"):
        assert throughput.fast_ingress_for_private_ray(None) is None
    assert "Python proxy" in caplog.text and "RAY_SERVE_ENABLE_HA_PROXY" not in os.environ
    with pytest.raises(ConfigError, match="no HAProxy"):
        throughput.fast_ingress_for_private_ray(True)


def test_a_cluster_without_haproxy_is_named_once_or_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(throughput, "cluster_high_throughput", lambda: False)
    monkeypatch.setattr(throughput, "_told", set())
    note = throughput.check_cluster_ingress(None)
    assert note is not None and "python -m raymlops.serve.throughput --env" in note
    assert throughput.check_cluster_ingress(None) is None  # said once
    assert throughput.check_cluster_ingress(False) is None
    with pytest.raises(ConfigError, match="started without Serve's HAProxy"):
        throughput.check_cluster_ingress(True)
    monkeypatch.setattr(throughput, "cluster_high_throughput", lambda: True)
    assert throughput.check_cluster_ingress(True) is None


def test_env_command_prints_exports_for_ray_start(short_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str], no_serve_env: None) -> None:
    monkeypatch.setenv("RAYMLOPS_HAPROXY_BINARY", "/bin/true")
    base = short_dir / "rmh"
    try:
        assert throughput.main(["--env", "--base-dir", str(base)]) == 0
    finally:
        for name in list(os.environ):
            if name.startswith("RAY_SERVE_"):
                os.environ.pop(name)
    lines = capsys.readouterr().out.splitlines()
    exports = dict(ln.removeprefix("export ").split("=", 1) for ln in lines)
    assert exports["RAY_SERVE_ENABLE_HA_PROXY"] == "'1'" and exports["RAY_SERVE_HAPROXY_STATS_PORT"] == "'8404'"
    assert exports["RAY_SERVE_HAPROXY_BINARY_PATH"] == f"'{base / 'haproxy'}'" and (base / "haproxy").exists()
    assert exports["RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S"] == "'1'"


def test_deployments_stop_quickly_and_bounded() -> None:
    from raymlops.config import ServeConfig
    from raymlops.serve.settings import STOP_OPTIONS, deployment_options

    opts = deployment_options(ServeConfig())
    assert opts["graceful_shutdown_wait_loop_s"] == STOP_OPTIONS["graceful_shutdown_wait_loop_s"] <= 0.5
    assert 0 < opts["graceful_shutdown_timeout_s"] <= 10
    assert ServeConfig().high_throughput is None  # the fast ingress wherever raymlops starts Ray


def test_status_names_each_routes_ingress() -> None:
    from raymlops.cli.status_cmd import render

    report = {"home": "h", "artifact_root": "a", "aliases": [], "alerts": [], "retraining": [],
              "audit": {"ok": True, "message": "ok", "recent": []},
              "cluster": {"connected": True, "address": "auto", "ray_version": "2", "nodes_alive": 1,
                          "nodes_dead": 0, "cpus": 2.0, "cpus_free": 1.0, "gpus": 0.0},
              "deployments": [{"app": "toy", "status": "RUNNING", "url": "http://127.0.0.1:8000/toy",
                               "version": "toy:v1", "metadata_error": None, "traffic": {"toy:v1": 100},
                               "replicas_running": 1, "replicas_target": 1, "ingress": "haproxy", "monitor": None}]}
    assert "ingress haproxy" in render(report)
