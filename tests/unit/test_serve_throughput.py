"""Serve's HAProxy ingress made loopback-safe (raymlops.serve.throughput), without starting Ray."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
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
