"""The ``raymlops`` command line: thin; parses arguments, calls the Python API, prints.

``raymlops <noun> <verb>``; each noun lives in its own module here and registers its parser.
Exit codes: 0 success, 1 failure, 2 bad input (config, arguments, data that fails validation).
Errors are one paragraph on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from raymlops import __version__
from raymlops.cli import (
    audit_cmd,
    demo_cmd,
    deploy_cmd,
    doctor_cmd,
    lineage_cmd,
    models_cmd,
    monitor_cmd,
    reproduce_cmd,
    retrain_cmd,
    run_cmd,
    runs_cmd,
    snapshot_cmd,
    status_cmd,
    ui_cmd,
    webhooks_cmd,
)
from raymlops.cli.common import explain
from raymlops.exceptions import RaymlopsError, Terminated
from raymlops.ray_session import private_ray_lost

# each module: register(subparsers) -> None, and run(args) -> int
COMMANDS = {"run": run_cmd, "snapshot": snapshot_cmd, "models": models_cmd,
            "lineage": lineage_cmd, "reproduce": reproduce_cmd, "audit": audit_cmd, "status": status_cmd,
            "runs": runs_cmd, "doctor": doctor_cmd, "monitor": monitor_cmd, "deploy": deploy_cmd}
COMMANDS |= {"retrain": retrain_cmd, "demo": demo_cmd, "ui": ui_cmd}
COMMANDS |= {"webhooks": webhooks_cmd}


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one line naming the problem (its default, kept explicit)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="raymlops",
        description="The whole life of a tabular ML model on Ray: versioned data, Tune training, "
        "a gated registry with lineage, Ray Serve, and drift monitoring.",
    )
    p.add_argument("--version", action="version", version=f"raymlops {__version__}")
    p.add_argument("--home", help="raymlops home folder (default: $RAYMLOPS_HOME, else ./.raymlops)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in COMMANDS.values():
        module.register(sub)
    return p


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next((dict(a.choices) for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {})


def _check_options(parser: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    """An option no parser on the way knows is said by the parser of the command it was given to,
    with that command's usage (argparse's top-level parser said it with its own usage, and an
    optional verb took the typo's value for a verb: ``audit --sinse 2d``: "invalid choice: '2d'")."""
    chain, known = [parser], set(parser._option_string_actions)
    for token in argv:
        if token == "--":
            return
        nested = _subparsers(chain[-1])
        if not token.startswith("-") and token in nested:
            chain.append(nested[token])
            known |= set(nested[token]._option_string_actions)
        elif token.startswith("--"):
            name = token.split("=", 1)[0]
            if not any(option.startswith(name) for option in known):  # argparse takes unique prefixes
                chain[-1].error(f"unrecognized arguments: {name}")


def _exit_if_ray_lost(code: int) -> None:
    """End the process now when its private Ray went down with it (a SIGTERM to the whole process
    group: ``timeout``, systemd): Ray's shutdown at exit would wait 60 s for its GCS, then end the
    process with exit 1. The run is already recorded."""
    if "ray" in sys.modules and private_ray_lost():
        sys.stdout.flush()
        os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    # the user's own modules (a user step, a transform, an estimator) import from the working
    # directory, as Ray's workers import them (it puts the driver's directory on their path) and as
    # `python -m` would; appended, so nothing of the working directory shadows an installed module
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    parser = build_parser()
    _check_options(parser, sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if hasattr(args, "verb") and args.verb is None:
        print(f"error: 'raymlops {args.command}' needs a verb; see 'raymlops {args.command} --help'",
              file=sys.stderr)
        return 2
    handler: Callable[[argparse.Namespace], int] = COMMANDS[args.command].run
    try:
        code = handler(args)
        sys.stdout.flush()  # here, where a reader that left (`| head -1`) is caught below, not at exit
        return code
    except BrokenPipeError:  # the reader of stdout left: nothing more to say to it, and no traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the flush at exit must not fail again
        return 141  # as a shell reports a command ended by SIGPIPE
    except RaymlopsError as exc:
        print(explain(exc), file=sys.stderr, flush=True)
        return exc.exit_code
    except sqlite3.DatabaseError as exc:  # a corrupted, read-only or locked database: said, no traceback
        from raymlops.store.home import resolve_home  # pyarrow's filesystems: on this error only, not at start

        print(f"error: the home's database {_database_of(exc) or resolve_home(args.home) / 'metadata.db'}: {exc} "
              "(SQLite; `raymlops doctor` checks the home)", file=sys.stderr, flush=True)
        return 1
    except Terminated:  # SIGTERM (docker stop, an eviction, timeout): an interruption, as the shell reports it
        print("terminated", file=sys.stderr, flush=True)
        _exit_if_ray_lost(143)
        return 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _database_of(exc: BaseException) -> Path | None:
    """The database file the failed statement ran on: the path of the innermost ``MetadataStore``
    on the error's way (a damaged ``webhooks.db`` was named ``metadata.db``, the healthy one)."""
    from raymlops.store.metadata import MetadataStore  # on this error only, not at start (as resolve_home)

    found = None
    tb = exc.__traceback__
    while tb is not None:
        owner = tb.tb_frame.f_locals.get("self")
        if isinstance(owner, MetadataStore):
            found = owner.path
        tb = tb.tb_next
    return found
