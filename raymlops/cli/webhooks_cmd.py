"""``raymlops webhooks add URL --events E [E ...] [--secret-env NAME]``, ``webhooks list``,
``webhooks remove ID`` and ``webhooks deliveries``: signed event receivers kept in the home."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from raymlops.cli.common import add_command, print_json
from raymlops.exceptions import ConfigError, NotFound


def register(sub: Any) -> None:
    hooks = add_command(sub, "webhooks", help="signed webhooks: add, list, remove receivers; see deliveries")
    verbs = hooks.add_subparsers(dest="verb", metavar="VERB")
    add = add_command(verbs, "add", help="POST signed JSON events to URL")
    add.add_argument("url", help="http(s) URL of the receiver")
    add.add_argument("--events", nargs="+", required=True, metavar="E",
                     help="event types (model.promoted, monitor.alert, ...), 'retrain.*' or '*'")
    add.add_argument("--secret-env", metavar="NAME",
                     help="environment variable holding the HMAC secret (the secret itself is never stored)")
    add.add_argument("--max-attempts", type=int, default=5, metavar="N", help="tries per delivery (default 5)")
    add.add_argument("--timeout", type=float, default=5.0, metavar="S", help="seconds per try (default 5)")
    add.add_argument("--json", action="store_true", help="the new subscription as JSON")
    lst = add_command(verbs, "list", help="the receivers of this home")
    lst.add_argument("--json", action="store_true", help="one JSON array")
    rm = add_command(verbs, "remove", help="stop sending to a receiver")
    rm.add_argument("id", help="its id (from 'webhooks list')")
    dl = add_command(verbs, "deliveries", help="the newest deliveries: event, url, tries, outcome")
    dl.add_argument("--limit", type=int, default=20, metavar="N", help="the newest N deliveries (default 20)")
    dl.add_argument("--json", action="store_true", help="one JSON array")


def run(args: argparse.Namespace) -> int:
    from pydantic import ValidationError as PydanticValidationError

    # pydantic, pyarrow: only when this verb runs, not for `raymlops --help`
    from raymlops.hooks import WebhookConfig, WebhookDB, list_deliveries
    from raymlops.store.home import existing_home, resolve_home

    if args.verb != "add":
        existing_home(args.home)  # a mistyped --home is said, not listed as a home without webhooks
    if args.verb == "add":
        raw = {"url": args.url, "events": args.events, "secret_env": args.secret_env,
               "max_attempts": args.max_attempts, "timeout_s": args.timeout}
        try:
            cfg = WebhookConfig.model_validate(raw)
        except PydanticValidationError as exc:  # reworded as one line naming the option
            first = exc.errors()[0]
            key = {"url": "URL", "events": "--events", "secret_env": "--secret-env",
                   "max_attempts": "--max-attempts", "timeout_s": "--timeout"}.get(str(first["loc"][0]) if
                                                                                 first["loc"] else "", "webhook")
            raise ConfigError(f"{key}: {str(first['msg']).removeprefix('Value error, ')}") from None
        db = WebhookDB(args.home)
        same = [s for s in db.subscriptions() if s.config.url == cfg.url]
        if same:  # two receivers of one URL: every event it wants is sent to it twice
            raise ConfigError(f"URL: {cfg.url} is already a receiver ({same[0].id}, for "
                              f"{', '.join(same[0].config.events)}, from {same[0].source}); remove it first "
                              "(`raymlops webhooks remove ID`) to change its events")
        sub = db.add(cfg)
        if cfg.secret_env and not os.environ.get(cfg.secret_env):
            print(f"warning: ${cfg.secret_env} is not set here; every process that sends events (pipeline, "
                  "monitor, retrain loop) needs it, or its deliveries are recorded failed", file=sys.stderr)
        if args.json:
            print_json(sub.to_dict())
        else:
            print(f"added {sub.id}: {cfg.url} for {', '.join(cfg.events)}"
                  + (f", signed with ${cfg.secret_env}" if cfg.secret_env else ", unsigned"))
        return 0
    if args.verb == "list":
        subs = WebhookDB(args.home).subscriptions() if (resolve_home(args.home) / "webhooks.db").exists() else []
        if args.json:
            print_json([s.to_dict() for s in subs])
            return 0
        if not subs:
            print("no webhooks")
        for s in subs:
            print(f"{s.id}  {s.config.url}  events {','.join(s.config.events)}  "
                  f"secret {'$' + s.config.secret_env if s.config.secret_env else '-'}  from {s.source}")
        return 0
    if args.verb == "remove":
        if not (resolve_home(args.home) / "webhooks.db").exists() or not WebhookDB(args.home).remove(args.id):
            raise NotFound(f"no webhook {args.id!r} (see 'raymlops webhooks list')")
        print(f"removed {args.id}")
        return 0
    if not 1 <= args.limit <= 10**9:  # SQLite's integers end at 2^63
        raise ConfigError(f"webhooks deliveries: --limit: expected 1 to 1000000000, found {args.limit}")
    rows = list_deliveries(args.home, args.limit)
    if args.json:
        print_json(rows)
        return 0
    if not rows:
        print("no deliveries")
    for r in rows:
        print(format_delivery(r))
    return 0


def format_delivery(r: dict[str, Any]) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(r["created_at"]))
    code = f" HTTP {r['last_status_code']}" if r["last_status_code"] else ""
    err = f"  {r['error']}" if r["error"] and r["status"] != "delivered" else ""
    return (f"{when}  {r['status']:<9} {r['event_type']:<20} {r['url']}  {r['attempts']} tr"
            f"{'y' if r['attempts'] == 1 else 'ies'}{code}{err}")
