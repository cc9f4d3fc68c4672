"""``raymlops audit [--since T] [--until T] [--action A] [--id X] [--json]`` (``audit list`` is the same)
and ``raymlops audit verify``."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from typing import Any

from raymlops.cli.common import add_command, one_line, print_json
from raymlops.exceptions import ConfigError


def _since(text: str) -> float:
    # pyarrow: only when this verb runs, not for `raymlops --help`
    from raymlops.audit import parse_since

    try:
        return parse_since(text)
    except (OverflowError, OSError) as exc:  # 9999-12-31T23:59 and beyond, or before what the system knows
        raise argparse.ArgumentTypeError(f"{text!r} is out of range: {exc}") from None
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _anchor(text: str) -> tuple[int, str]:
    # pyarrow: only when this verb runs, not for `raymlops --help`
    from raymlops.audit import parse_anchor

    try:
        return parse_anchor(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


#: an ISO date, or a time to the minute or the second (no fraction), with an optional zone
_PRECISION = re.compile(r"\s*(\d{4}-\d{2}-\d{2})(?:[T ]\d{2}:\d{2}(:\d{2})?)?(?:Z|z|[+-]\d{2}:?\d{2})?\s*")


def _until(text: str) -> float:
    """``--until``: all of the day, minute or second written (a date's midnight left the day out, and
    a time copied from the list, which shows seconds, left out its own records: they have fractions)."""
    import datetime as dt

    m = _PRECISION.fullmatch(text)
    if m is None:  # an age, or a time with a fraction: that instant
        return _since(text)
    if text.strip() == m.group(1):
        try:
            day = dt.datetime.fromisoformat(m.group(1))
            return (day + dt.timedelta(days=1)).timestamp() - 1e-6
        except (ValueError, OverflowError, OSError) as exc:  # 9999-12-31: its next day is past datetime's end
            raise argparse.ArgumentTypeError(f"{exc}; found {text!r}") from None
    return _since(text) + (1.0 if m.group(2) else 60.0) - 1e-6


def _filters(p: argparse.ArgumentParser, default: Any) -> None:
    # on `audit list` the options default to SUPPRESS, so `audit --since 1h list` keeps its value
    p.add_argument("--since", type=_since, default=default, metavar="T",
                   help="records at or after T: an ISO date/time (2026-05-01, 2026-05-01T12:30Z; local time "
                        "without a zone) or an age (30m, 1h, 2d, 1w)")
    p.add_argument("--until", type=_until, default=default, metavar="T",
                   help="records at or before T (the same forms as --since; a date alone: that whole day)")
    p.add_argument("--action", default=default, metavar="A",
                   help="one action (model.registered), or all under a prefix ending in a dot (model.)")
    p.add_argument("--id", default=default, metavar="X",
                   help="records that touched X: a model version, snapshot id (or 6+ character prefix), "
                        "deployment, alias or alert")
    p.add_argument("--json", action="store_true", default=default,
                   help="JSON Lines: one record per line, with seq, prev_hash and hash")


def register(sub: Any) -> None:
    aud_parser = add_command(sub, "audit", help="the audit log: list (the default) or verify")
    _filters(aud_parser, None)
    aud = aud_parser.add_subparsers(dest="verb", metavar="[list | verify]")
    _filters(add_command(aud, "list", help="list audit records (same as plain 'raymlops audit')"), argparse.SUPPRESS)
    v = add_command(aud, "verify", help="check the hash chain (exit 1 and the first bad record if broken)")
    v.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="the verdict as one JSON line")
    v.add_argument("--head", type=_anchor, default=None, metavar="SEQ:HASH",
                   help="a head printed by an earlier verify and kept elsewhere: the log must still hold that "
                        "record with that hash (catches a rewrite of the whole log, or its newest records removed "
                        "with the head row fixed)")
    aud_parser.set_defaults(verb="list")  # after add_subparsers: plain `raymlops audit` lists


def run(args: argparse.Namespace) -> int:
    # pyarrow: only when this verb runs, not for `raymlops --help`
    from raymlops import audit
    from raymlops.store.home import Store

    store = Store.open(args.home, create=False)
    if args.verb == "verify":
        ok, message = audit.verify(store.metadata, args.head)
        if args.json:
            print_json({"ok": ok, "message": message, "head": audit.head(store.metadata)})
        else:
            print(message, file=sys.stdout if ok else sys.stderr)
        return 0 if ok else 1
    if args.since is not None and args.until is not None and args.since > args.until:
        raise ConfigError("audit: --since is after --until: no record can match (check the order of the dates)")
    found = audit.records(store.metadata, action=args.action, since=args.since, id=args.id, until=args.until)
    for r in found:
        if args.json:
            print_json(audit.to_json(r))
        else:
            print(format_record(r))
    if not found and not args.json:
        print("no audit records match", file=sys.stderr)
    return 0


def format_record(r: Any) -> str:
    """One line: seq, local time, action, ids, reason, user@host."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.ts))
    actor = r.record.get("actor") or {}
    who = f"{actor.get('user', '?')}@{actor.get('host', '?')}"
    ids = json.dumps(r.record.get("ids") or {}, separators=(",", ":"))
    reason = one_line(r.record.get("reason") or "-")
    return f"{r.seq:>5} {when} {one_line(r.action):<18} {ids} {reason} ({one_line(who)})"
