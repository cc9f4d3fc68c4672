"""Helpers shared by the CLI commands: JSON output and error paragraphs."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

from raymlops.exceptions import StepFailed
from raymlops.ray_session import kill_private_ray, private_ray_lost


def home_option() -> argparse.ArgumentParser:
    """``--home`` accepted after any command too (``raymlops run x.yaml --home h``)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--home", default=argparse.SUPPRESS,
                        help="raymlops home folder (default: $RAYMLOPS_HOME, else ./.raymlops)")
    return parent


def add_command(sub: Any, name: str, help: str) -> Any:
    return sub.add_parser(name, help=help, description=help, parents=[home_option()])


def print_json(obj: Any) -> None:
    """One JSON object on one line (scripts read the last stdout line)."""
    print(json.dumps(obj, default=str, separators=(",", ":")), flush=True)


def one_line(text: Any) -> str:
    """``text`` for a line of a listing: control characters (a line break, a terminal escape) shown
    escaped, as ``repr`` would, so a reason cannot print a line of its own or erase the real ones."""
    s = str(text)
    return s if s.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in s)


def explain(exc: BaseException) -> str:
    """One paragraph: what went wrong in the user's terms, and what to do."""
    text = str(exc)
    hint = " Fix the cause and run again." if isinstance(exc, StepFailed) else ""
    return f"error: {text}{hint}"


@contextlib.contextmanager
def ray_output_to_stderr(keep_ray: bool = False) -> Iterator[TextIO]:
    """For a command whose standard output is its result (``--json``: one JSON line), while it runs
    Ray work: yields the real standard output, and makes ``sys.stdout`` standard error meanwhile.
    Ray's driver prints what the cluster pushes to it on ``sys.stdout``, from a thread, whenever it
    comes ("(raylet) WARNING: 10 PYTHON worker processes have been started ...", found after a Ray
    Train run's summary), and so does any print of a user's step. A Ray started inside (no
    ``RAY_ADDRESS``, none running in this process before) is shut down on the way out, so that
    nothing of it can come after the result, unless ``keep_ray`` (``--serve``, ``--keep``)."""
    import ray

    started = not ray.is_initialized()
    out, sys.stdout = sys.stdout, sys.stderr
    try:
        yield out
    finally:
        try:
            if started and not keep_ray and ray.is_initialized():
                if private_ray_lost():  # a SIGTERM to the process group: Ray is stopping on its own
                    kill_private_ray()
                else:
                    ray.shutdown()
        finally:
            sys.stdout = out


def serve_until_interrupted(banner: str, stop: Callable[[], None]) -> None:
    """Keep serving in the foreground until Ctrl-C or SIGTERM, then ``stop()``.

    Standard output is the caller's result (``--json``: its last line is the JSON object), so while
    serving and stopping it is standard error: Ray's driver prints the errors the cluster pushes
    to it (e.g. Serve's controller killed as Serve shuts down) on standard output, after that line.
    The caller ends the process after this (``exit_after_serving``), with stdout still redirected."""
    print(banner, file=sys.stderr, flush=True)
    sys.stdout.flush()
    # a parent that started us in the background may have set SIGINT to "ignore": take it back
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.stdout = sys.stderr
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("stopping ...", file=sys.stderr, flush=True)
    finally:
        stop()
