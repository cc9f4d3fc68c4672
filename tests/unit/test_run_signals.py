"""Signals and pipes around a run: its progress lines after the reader of stderr left (``raymlops
run ... 2>&1 | head``) let the run go on, quietly (the next line raised BrokenPipeError in whichever
step printed it, and the run was recorded as failed there); SIGTERM is an interruption."""

from __future__ import annotations

import os
import sys

import pytest

from raymlops.pipeline.context import stderr_line


def test_a_closed_pipe_on_stderr_ends_the_lines_not_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    read, write = os.pipe()
    saved = os.dup(2)
    try:
        os.dup2(write, 2)
        os.close(write)
        os.close(read)  # the reader left
        stream = os.fdopen(os.dup(2), "w")
        monkeypatch.setattr(sys, "stderr", stream)
        stderr_line("[1/12] ingest ...")  # EPIPE here: stderr goes to /dev/null
        stderr_line("[2/12] schema ...")  # and nothing raises after
        assert os.path.samefile(f"/proc/self/fd/{sys.stderr.fileno()}", os.devnull)
    finally:
        monkeypatch.undo()
        os.dup2(saved, 2)
        os.close(saved)


def test_the_sigterm_of_rays_driver_handler_is_an_interruption_too() -> None:
    """Ray's driver turns SIGTERM into ``SystemExit(15)``: the run takes it as raymlops' own."""
    from raymlops.exceptions import Terminated
    from raymlops.pipeline.runner import _interrupted, _terminated

    wrapped = RuntimeError("cleanup failed")
    wrapped.__context__ = SystemExit(15)
    for exc in (SystemExit(15), Terminated("x"), wrapped):
        assert _terminated(exc) and _interrupted(exc)
    for exc in (SystemExit(1), SystemExit(0), RuntimeError("x")):
        assert not _terminated(exc) and not _interrupted(exc)
