"""``raymlops doctor [--repair] [--json] [--older-than SECONDS]``."""

from __future__ import annotations

import argparse
import os
from typing import Any

from raymlops.cli.common import add_command, print_json


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, found {text!r}") from None
    if not value >= 0 or value == float("inf"):  # (nan too)
        raise argparse.ArgumentTypeError(f"expected 0 or more seconds, found {text!r}")
    return value


def register(sub: Any) -> None:
    # pyarrow: only when this verb runs, not for `raymlops --help`
    from raymlops.store.artifacts import DEFAULT_STAGING_GRACE_S

    doc = add_command(sub, "doctor", help="check the home folder: metadata, snapshot and model hashes, "
                                          "orphaned staging folders, audit chain (exit 0 only when all is well)")
    doc.add_argument("--repair", action="store_true",
                     help="remove orphaned staging folders and record runs whose process is gone as abandoned "
                          "(and nothing else)")
    doc.add_argument("--older-than", type=_seconds, default=DEFAULT_STAGING_GRACE_S, metavar="SECONDS",
                     help=f"a staging folder untouched this long is orphaned (default {DEFAULT_STAGING_GRACE_S:.0f})")
    doc.add_argument("--json", action="store_true", help="the report as one JSON line")


def run(args: argparse.Namespace) -> int:
    # scipy, pydantic, pyarrow: only when this verb runs, not for `raymlops --help`
    from raymlops.registry.doctor import run_doctor
    from raymlops.store.home import existing_home

    home = existing_home(args.home)
    report = run_doctor(home, os.environ.get("RAYMLOPS_ARTIFACT_ROOT"), older_than_s=args.older_than,
                        fix=args.repair)
    if args.json:
        print_json(report.to_dict())
        return 0 if report.ok else 1
    for key in report.repaired:  # staging keys, and "run ID" for a run recorded abandoned
        print(f"repaired  runs      recorded {key} abandoned (its process is gone)" if key.startswith("run ")
              else f"repaired  staging   removed {key}")
    for f in report.findings:
        print(f"{'ok' if f.ok else 'PROBLEM':<9} {f.check:<9} {f.message}")
    if report.ok:
        print(f"{report.home}: all is well")
    else:
        n = len(report.problems)
        fixable = sum(1 for f in report.problems if f.repairable)
        advice = (" `raymlops doctor --repair` removes the orphaned staging folders and records runs whose "
                  "process is gone as abandoned." if fixable else "")
        print(f"{report.home}: {n} problem{'s' if n > 1 else ''} found.{advice}")
    return 0 if report.ok else 1
