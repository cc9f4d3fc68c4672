"""Helpers shared by the CLI commands: JSON output and error paragraphs."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from raymlops.exceptions import StepFailed


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


def explain(exc: BaseException) -> str:
    """One paragraph: what went wrong in the user's terms, and what to do."""
    text = str(exc)
    hint = " Fix the cause and run again." if isinstance(exc, StepFailed) else ""
    return f"error: {text}{hint}"


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
