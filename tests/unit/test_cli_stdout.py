"""Commands whose standard output is their result (`raymlops run`, `reproduce`, `demo`): Ray's output goes to stderr."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from raymlops.cli.common import ray_output_to_stderr


def test_what_the_cluster_pushes_to_the_driver_goes_to_stderr_while_the_run_runs(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Ray's driver prints the cluster's warnings ("(raylet) WARNING: 10 PYTHON worker processes have
    been started ...") on sys.stdout from a thread, at any time: found after a Ray Train run's summary,
    and it would be the last stdout line of `raymlops run --json`."""
    from ray._private.worker import print_to_stdstream  # what the driver's error listener calls

    out = sys.stdout
    with ray_output_to_stderr():
        print_to_stdstream({"lines": ["WARNING: 10 PYTHON worker processes have been started"], "pid": "raylet",
                            "is_err": False}, ignore_prefix=False)
        print("a user step's print")
    assert sys.stdout is out
    print('{"model": "m:v1"}')
    captured = capsys.readouterr()
    assert captured.out == '{"model": "m:v1"}\n'
    assert "10 PYTHON worker processes" in captured.err and "a user step's print" in captured.err


def test_snapshot_show_lists_a_domain_one_line_and_unambiguously() -> None:
    """A category holding a comma or a line break is quoted, so `snapshot show` keeps one line per
    column and ``a,b`` does not read as two categories."""
    from raymlops.cli.snapshot_cmd import _shown

    shown = [_shown(v) for v in ("setosa", "versi,color", 'line one\nline "two"', " padded", 7)]
    assert shown == ["setosa", '"versi,color"', '"line one\\nline \\"two\\""', '" padded"', "7"]
    assert all("\n" not in s for s in shown)


@pytest.mark.parametrize("argv", [["models", "list"], ["audit"], ["audit", "verify"], ["runs", "list"],
                                  ["snapshot", "list"], ["status"], ["lineage", "m:v1"]])
def test_a_command_that_only_reads_a_missing_home_says_so_and_creates_nothing(
        argv: list[str], tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """A mistyped --home was made into a new empty home and answered "no models" / "audit chain
    valid (0 records)" with exit 0."""
    from raymlops.cli import main

    home = tmp_path / "typo"
    assert main(["--home", str(home), *argv]) == 2
    assert capsys.readouterr().err.strip() == f"error: no raymlops home at {home} (give --home, or set RAYMLOPS_HOME)"
    assert not home.exists()


def test_run_json_of_a_config_that_does_not_load_is_one_failed_line_and_no_run(
        tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from raymlops.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntrian: {}\n")
    assert main(["--home", str(tmp_path / "home"), "run", str(bad), "--json"]) == 2
    out, err = capsys.readouterr()
    line = json.loads(out.strip().splitlines()[-1])
    assert line["run"] is None and line["status"] == "failed" and line["error"]["exit_code"] == 2
    assert "trian" in line["error"]["message"] or "data" in line["error"]["message"]
    assert err.startswith("error: ") and not (tmp_path / "home").exists()  # no run: nothing written


def test_status_names_a_failing_monitors_own_error_without_ray_wrappers_or_colour(monkeypatch: Any) -> None:
    import ray

    from raymlops.cli import status_cmd

    class Wrapped(Exception):  # as Ray's RayTaskError: the cause inside, colour codes in the text
        def __init__(self) -> None:
            super().__init__("\x1b[36mray::DriftMonitor.summary()\x1b[39m (pid=1, ip=10.0.0.1)")
            self.cause = OverflowError("integer division result too large for a float")

    class Handle:
        class summary:  # noqa: N801 - an actor method's shape
            @staticmethod
            def remote() -> object:
                return object()

    def fail(*args: object, **kwargs: object) -> object:
        raise Wrapped()

    monkeypatch.setattr(ray, "get_actor", lambda *a, **k: Handle())
    monkeypatch.setattr(ray, "get", fail)
    got = status_cmd._monitor("r", "ns")
    assert got == {"error": "OverflowError: integer division result too large for a float"}
