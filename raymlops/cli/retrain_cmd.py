"""``raymlops retrain run CONFIG --reason TEXT`` and ``raymlops retrain watch CONFIG``.

The closed loop of a live route (see :mod:`raymlops.loop.controller`) on the Ray cluster named
by ``RAY_ADDRESS``, where the pipeline's deployment and monitor run:

- ``run``: one cycle now, by hand (the reason is recorded as ``manual: TEXT``): a fresh
  snapshot of ``retrain.source``, training and the gate, the new version as shadow challenger,
  the differential check, then promotion or retirement by the ``retrain.promote`` rules;
- ``watch``: read the route's monitor alerts every ``retrain.interval_s`` and run a cycle for
  each alert of a ``retrain.triggers`` kind (``retrain.enabled`` must be true), at most one per
  ``retrain.cooldown_s``; until Ctrl-C, ``--max-cycles`` or ``--duration``.

Every step is written to the audit log with the alert (or the manual reason) as its reason.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from raymlops.cli.common import add_command, print_json
from raymlops.exceptions import ConfigError, ServeError
from raymlops.ray_session import ensure_ray


def register(sub: Any) -> None:
    r = add_command(sub, "retrain", help="closed loop: alerts -> retraining -> shadow challenger -> promotion")
    verbs = r.add_subparsers(dest="verb", metavar="VERB")
    once = add_command(verbs, "run", help="run one retraining cycle of a live deployment now")
    once.add_argument("config", help="pipeline YAML (its retrain: section applies)")
    once.add_argument("--reason", required=True, help="why (every audit record of the cycle gives it)")
    once.add_argument("--json", action="store_true", help="print the cycle as one JSON line")
    watch = add_command(verbs, "watch", help="run a retraining cycle whenever the monitor raises a trigger alert")
    watch.add_argument("config", help="pipeline YAML with retrain.enabled: true")
    watch.add_argument("--max-cycles", type=int, default=None, help="stop after this many cycles")
    watch.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    watch.add_argument("--json", action="store_true", help="one JSON line per cycle")


def _connect() -> None:
    if not os.environ.get("RAY_ADDRESS"):
        raise ConfigError("raymlops retrain needs the Ray cluster its deployment runs on: set RAY_ADDRESS (e.g. "
                          "RAY_ADDRESS=auto after `ray start --head`; clients of a token-auth cluster also need "
                          "RAY_AUTH_MODE=token); `raymlops demo` shows the loop without one")
    ensure_ray()


def _print_cycle(result: Any, as_json: bool) -> None:
    if as_json:
        print_json(result.to_dict())
        return
    print(f"cycle {result.cycle}: {result.status}; champion {result.champion_before} -> {result.champion_after}"
          + (f" (challenger {result.challenger})" if result.challenger else ""), flush=True)
    if result.decision is not None:
        for c in result.decision.checks:
            print(f"  {'pass' if c.passed else 'FAIL'}  {c.rule}: {c.detail}", flush=True)


def _check_watchable(cfg: Any, path: str) -> None:
    if not cfg.retrain.enabled:
        raise ConfigError(f"{path}: retrain.enabled: expected true for `raymlops retrain watch` (alerts may start "
                          "retraining only when the config says so), found false")
    if not cfg.monitor.enabled:
        raise ConfigError(f"{path}: monitor.enabled: expected true (the watcher reads the monitor's alerts)")
    if not cfg.serve.enabled:
        raise ConfigError(f"{path}: serve.enabled: expected true (the challenger is served in shadow)")


def run(args: argparse.Namespace) -> int:
    # Ray, the pipeline, scikit-learn: only when this verb runs, not for `raymlops --help`
    from raymlops.config import load_config
    from raymlops.loop.controller import RetrainController, Watcher
    from raymlops.loop.policy import Trigger
    from raymlops.store.home import Store

    cfg = load_config(args.config)
    progress = (lambda line: print(line, file=sys.stderr, flush=True)) if args.json else \
        (lambda line: print(line, flush=True))
    if args.verb == "run":
        if not args.reason.strip():
            raise ConfigError("--reason: expected a non-empty text (it is recorded in the audit log)")
        if not cfg.serve.enabled:
            raise ConfigError(f"{args.config}: serve.enabled: expected true (the challenger is served in shadow)")
        _connect()
        controller = RetrainController(cfg, Store.open(args.home), progress=progress)
        result = controller.run_cycle(Trigger.manual(args.reason.strip()))
        _print_cycle(result, args.json)
        return 0
    _check_watchable(cfg, args.config)
    if args.max_cycles is not None and args.max_cycles < 1:
        raise ConfigError(f"--max-cycles: expected at least 1, found {args.max_cycles}")
    if args.duration is not None and args.duration <= 0:
        raise ConfigError(f"--duration: expected a positive number of seconds, found {args.duration}")
    _connect()
    watcher = Watcher(RetrainController(cfg, Store.open(args.home), progress=progress))
    status = watcher.controller._monitor_status()
    if status is None:  # watching nothing would look like "no alerts" forever
        raise ServeError(f"no monitor for /{cfg.route} on this Ray cluster: deploy the pipeline with "
                         "monitor.enabled first, and point RAY_ADDRESS at the cluster that serves it")
    alerts = status.get("alerts") or {}
    progress(f"watching the monitor of /{cfg.route} ({status.get('rows_total', 0)} rows seen, "
             f"{sum((alerts.get('totals') or {}).values())} alerts so far) every {cfg.retrain.interval_s:g}s for "
             f"{', '.join(sorted(cfg.retrain.trigger_kinds()))} alerts (Ctrl-C to stop)")
    try:
        watcher.run(max_cycles=args.max_cycles, duration_s=args.duration,
                    on_result=lambda result: _print_cycle(result, args.json))
    except KeyboardInterrupt:
        print("stopped watching", file=sys.stderr)
    for failure in watcher.failures:
        print(f"error: a retraining cycle failed: {failure}", file=sys.stderr)
    return 1 if watcher.failures else 0
