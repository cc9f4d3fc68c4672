"""``raymlops demo [--rows N] [--port P] [--keep] [--json]``: the closed loop in one command.

Serves a model trained on synthetic data, replays traffic that drifts in one slice and then
globally, shows the alerts, the retraining on a fresh snapshot, the shadow challenger, the
differential check and the promotion, then the audit trail; shuts everything down. Runs in a
temporary home (removed afterwards unless ``--keep``) unless ``--home`` names one. See
:mod:`raymlops.loop.demo`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from raymlops.cli.common import add_command, print_json, ray_output_to_stderr
from raymlops.exceptions import ConfigError


def register(sub: Any) -> None:
    d = add_command(sub, "demo", help="the closed loop end to end: serve, drift, alerts, retrain, shadow, promote")
    d.add_argument("--rows", type=int, default=600, help="rows of traffic per phase (default 600, at least 100)")
    d.add_argument("--port", type=int, default=None, help="HTTP port on 127.0.0.1 (default: a free one)")
    d.add_argument("--keep", action="store_true", help="keep the temporary home (to browse with --home afterwards)")
    d.add_argument("--json", action="store_true", help="print the summary as one JSON line (stages go to stderr)")
    for action in d._actions:  # the demo's own default: never the user's $RAYMLOPS_HOME
        if action.dest == "home":
            action.help = "raymlops home folder (default: a temporary one, removed afterwards unless --keep; " \
                          "$RAYMLOPS_HOME is not used)"


def run(args: argparse.Namespace) -> int:
    # Ray, the pipeline, scikit-learn: only when this verb runs, not for `raymlops --help`
    from raymlops.loop.demo import run_demo

    if args.rows < 100:
        raise ConfigError(f"--rows: expected at least 100 rows per phase, found {args.rows}")
    if args.port is not None and not 1 <= args.port <= 65535:
        raise ConfigError(f"--port: expected 1-65535, found {args.port}")
    with ray_output_to_stderr(keep_ray=args.keep) as out:
        shown = sys.stderr if args.json else out  # the stages: stdout, or stderr beside --json's line
        summary = run_demo(home=getattr(args, "home", None), port=args.port, rows=args.rows, keep=args.keep,
                           say=lambda line: print(line, file=shown, flush=True))
    if args.json:
        print_json(summary)
    elif args.keep or getattr(args, "home", None):
        print(f"\nthe demo's home: {summary['home']} (e.g. raymlops audit --home {summary['home']})")
    return 0
