"""``raymlops snapshot list | verify ID``."""

from __future__ import annotations

import argparse
from typing import Any

from raymlops.cli.common import add_command, print_json


def register(sub: Any) -> None:
    snap = add_command(sub, "snapshot", help="data snapshots").add_subparsers(dest="verb", metavar="VERB")
    s_list = add_command(snap, "list", help="list snapshots")
    s_list.add_argument("--json", action="store_true")
    s_verify = add_command(snap, "verify", help="re-hash a snapshot's files (exit 1 names what changed)")
    s_verify.add_argument("id", help="id, unique id prefix, or tag")
    s_verify.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from raymlops.data.snapshot import list_snapshots, resolve_snapshot, verify_snapshot
    from raymlops.store.home import Store

    store = Store.open(args.home)
    if args.verb == "list":
        snaps = list_snapshots(store)
        if args.json:
            print_json(snaps)
        else:
            for s in snaps:
                print(f"{s['id'][:12]}  {s['rows']:>10} rows  {','.join(s['tags']) or '-':<12} {s['source']}")
        return 0
    snap_id = resolve_snapshot(store, args.id)
    problems = verify_snapshot(store, snap_id)
    if args.json:
        print_json({"snapshot": snap_id, "ok": not problems, "problems": problems})
    else:
        print(f"{snap_id[:12]}: ok" if not problems else "\n".join(f"{snap_id[:12]}: {p}" for p in problems))
    return 0 if not problems else 1
