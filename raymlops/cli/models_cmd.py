"""``raymlops models list | show REF``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from raymlops.cli.common import add_command, print_json


def register(sub: Any) -> None:
    models = add_command(sub, "models", help="model registry").add_subparsers(dest="verb", metavar="VERB")
    m_list = add_command(models, "list", help="list model versions")
    m_list.add_argument("--json", action="store_true")
    m_show = add_command(models, "show", help="show a model version (name:vN or name@alias)")
    m_show.add_argument("ref")


def run(args: argparse.Namespace) -> int:
    from raymlops.registry.registry import get_model, list_models
    from raymlops.store.home import Store

    store = Store.open(args.home)
    if args.verb == "list":
        versions = list_models(store)
        if args.json:
            print_json([v.to_dict() for v in versions])
        else:
            for v in versions:
                auc = v.record.get("metrics", {}).get("roc_auc", float("nan"))
                print(f"{v.id:<28} {v.status:<10} roc_auc={auc:.4f}  snapshot {v.snapshot_id[:12]}")
        return 0
    print(json.dumps(get_model(store, args.ref).to_dict(), indent=2, default=str))
    return 0
