"""``raymlops models list | show | promote | rollback | verify | history`` and ``raymlops lineage``."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from raymlops.cli.common import add_command, one_line, print_json
from raymlops.cli.deploy_cmd import follow_live
from raymlops.exceptions import NotFound


def register(sub: Any) -> None:
    models = add_command(sub, "models", help="model registry").add_subparsers(dest="verb", metavar="VERB")
    m_list = add_command(models, "list", help="list model versions")
    m_list.add_argument("name", nargs="?", help="only this model name")
    m_list.add_argument("--json", action="store_true", help="one JSON document on stdout")
    m_show = add_command(models, "show", help="show a model version (name:vN or name@alias)")
    m_show.add_argument("ref")
    m_show.add_argument("--json", action="store_true", help="one JSON document on one line (default: indented)")
    m_promote = add_command(models, "promote", help="point an alias (default: champion) at a version")
    m_promote.add_argument("ref", help="name:vN or name@alias")
    m_promote.add_argument("--alias", default="champion", help="the alias to move (default: champion)")
    m_promote.add_argument("--reason", help="why (recorded in the audit log)")
    m_promote.add_argument("--json", action="store_true", help="one JSON document on stdout")
    m_back = add_command(models, "rollback", help="return an alias to the version it pointed at before")
    m_back.add_argument("name", help="model name")
    m_back.add_argument("--alias", default="champion", help="the alias to move back (default: champion)")
    m_back.add_argument("--reason", help="why (recorded in the audit log)")
    m_back.add_argument("--json", action="store_true", help="one JSON document on stdout")
    m_verify = add_command(models, "verify", help="re-hash a version's artifact (exit 1 if changed or missing)")
    m_verify.add_argument("ref")
    m_verify.add_argument("--json", action="store_true", help="one JSON document on stdout")
    m_hist = add_command(models, "history", help="every alias move of a model: when, from, to, why")
    m_hist.add_argument("name")
    m_hist.add_argument("--json", action="store_true", help="one JSON document on stdout")


def register_lineage(sub: Any) -> None:
    lin = add_command(sub, "lineage", help="code → data → model → deployments of a model version")
    lin.add_argument("ref", help="name:vN or name@alias")
    lin.add_argument("--json", action="store_true", help="one JSON document on stdout")


def run(args: argparse.Namespace) -> int:
    # pydantic, pyarrow: only when this verb runs, not for `raymlops --help`
    from raymlops.registry import registry as reg
    from raymlops.store.home import Store

    store = Store.open(args.home, create=False)
    if args.verb == "list":
        versions = reg.list_models(store, args.name)
        if args.json:
            print_json([v.to_dict() for v in versions])
        elif not versions:
            print(f"no versions of model {args.name!r} registered" if args.name else "no model versions registered")
        else:
            for v in versions:
                metrics = v.metrics
                shown = "  ".join(f"{k}={metrics[k]:.4f}" for k in ("roc_auc", "accuracy", "r2") if k in metrics)
                aliases = ",".join(reg.aliases_of(store, v.id))
                print(f"{v.id:<28} {v.status:<10} {aliases:<20} {shown}  snapshot {v.snapshot_id[:12]}")
        return 0
    if args.verb == "show":
        record = reg.get_model(store, args.ref).to_dict()
        if args.json:
            print_json(record)
        else:
            print(json.dumps(record, indent=2, default=str))
        return 0
    if args.verb in ("promote", "rollback"):
        live: dict[str, Any] = {}
        note: str | None = None
        if args.verb == "promote":
            version = reg.get_model(store, args.ref)
            if _points_at(store, version.name, args.alias, version.id):  # nothing moves, nothing is recorded
                note = "unchanged"
                if args.alias == reg.CHAMPION and os.environ.get("RAY_ADDRESS"):  # live routes may lag the alias
                    note, live = follow_live(store, version.name, "deployment.promoted", args.reason)
                if args.json:
                    print_json({"model": version.id, "alias": args.alias, "deployments": live, "note": note})
                else:
                    print(f"{version.name}@{args.alias} is already {version.id}: "
                          + (note if live else "nothing changed"))
                return 0
            version = reg.promote(store, args.ref, alias=args.alias, reason=args.reason)
        else:
            version = reg.rollback(store, args.name, alias=args.alias, reason=args.reason)
        if args.alias == reg.CHAMPION:  # live deployments of this model follow the champion
            action = "deployment.promoted" if args.verb == "promote" else "deployment.rolled_back"
            note, live = follow_live(store, version.name, action, args.reason)
        if args.json:
            print_json({"model": version.id, "alias": args.alias, "deployments": live, "note": note})
        else:
            print(f"{version.name}@{args.alias} -> {version.id}" + (f"\n{note}" if note else ""))
        return 0
    if args.verb == "verify":
        problems = reg.verify_model(store, args.ref)
        if args.json:
            print_json({"model": args.ref, "ok": not problems, "problems": problems})
        else:
            print(f"{args.ref}: ok" if not problems else "\n".join(f"{args.ref}: {p}" for p in problems))
        return 0 if not problems else 1
    history = reg.alias_history(store, args.name)
    if args.json:
        print_json(history)
    else:
        import time

        for h in history:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h["ts"]))
            reason = one_line(h["reason"] or "")
            print(f"{when}  @{h['alias']:<12} {h['from_model'] or '-'} -> {h['to_model']}  {reason}")
    return 0


def run_lineage(args: argparse.Namespace) -> int:
    # scipy, pydantic, pyarrow: only when this verb runs, not for `raymlops --help`
    from raymlops.registry.trace import format_lineage, lineage_of
    from raymlops.store.home import Store

    info = lineage_of(Store.open(args.home, create=False), args.ref)
    if args.json:
        print_json(info)
    else:
        print(format_lineage(info))
    return 0


def _points_at(store: Any, name: str, alias: str, model_id: str) -> bool:
    # pydantic, pyarrow: only when this verb runs, not for `raymlops --help`
    from raymlops.registry import registry as reg

    try:
        return reg.get_model(store, f"{name}@{alias}").id == model_id
    except NotFound:
        return False
