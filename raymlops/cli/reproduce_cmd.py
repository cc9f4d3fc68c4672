"""``raymlops reproduce REF [--seed N] [--json]``: exit 0 when identical, 1 with what changed."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from raymlops.cli.common import add_command, print_json, ray_output_to_stderr
from raymlops.exceptions import ConfigError


def register(sub: Any) -> None:
    rep = add_command(sub, "reproduce", help="re-train a model version from its recorded data, config and seeds")
    rep.add_argument("ref", help="name:vN or name@alias")
    rep.add_argument("--seed", type=int, help="override the recorded seed (to see what it changes)")
    rep.add_argument("--json", action="store_true", help="one JSON document on stdout")


def run(args: argparse.Namespace) -> int:
    # scikit-learn, pandas, scipy: only when this verb runs, not for `raymlops --help`
    from raymlops.registry.reproduce import reproduce
    from raymlops.store.home import Store

    if args.seed is not None and not 0 <= args.seed <= 2**32 - 1:  # numpy's and scikit-learn's range, as seed:
        raise ConfigError(f"reproduce: --seed: expected 0 to 4294967295 (numpy and scikit-learn take no other), "
                          f"found {args.seed}")
    with ray_output_to_stderr():
        report = reproduce(Store.open(args.home, create=False), args.ref, seed=args.seed,
                           progress=lambda line: print(line, file=sys.stderr, flush=True))
    if args.json:
        print_json(report.to_dict())
    else:
        verdict = "identical" if report.identical else "NOT identical"
        if report.predictions_equal is None:  # nothing was compared
            print(f"{report.model}: {verdict} (not re-trained: the recorded data or model file is not what it was)")
        else:
            print(f"{report.model}: {verdict} (holdout predictions equal: {report.predictions_equal},"
                  f" model content equal: {report.model_equal}, artifact hash equal: {report.artifact_hash_equal})")
        for line in report.differences:
            print(f"  - {line}")
    return 0 if report.identical else 1
