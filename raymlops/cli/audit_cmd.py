"""``raymlops audit list | verify``."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from raymlops.cli.common import add_command, print_json


def register(sub: Any) -> None:
    aud = add_command(sub, "audit", help="the audit log").add_subparsers(dest="verb", metavar="VERB")
    a_list = add_command(aud, "list", help="list audit records")
    a_list.add_argument("--action")
    a_list.add_argument("--json", action="store_true", help="JSON Lines, one record per line")
    add_command(aud, "verify", help="check the hash chain (exit 1 and the first bad record if broken)")


def run(args: argparse.Namespace) -> int:
    from raymlops import audit
    from raymlops.store.home import Store

    store = Store.open(args.home)
    if args.verb == "verify":
        ok, message = audit.verify(store.metadata)
        print(message)
        return 0 if ok else 1
    for r in audit.records(store.metadata, action=args.action):
        if args.json:
            print_json({"seq": r.seq, "hash": r.hash, **r.record})
        else:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.ts))
            print(f"{r.seq:>5} {when} {r.action:<20} {json.dumps(r.record['ids'])} {r.record.get('reason') or ''}")
    return 0
