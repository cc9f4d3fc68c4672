"""``raymlops runs list [--status S] [--json] | show RUN [--json] | logs RUN [--step NAME]``."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from raymlops.cli.common import add_command, print_json

_STATUSES = ("running", "succeeded", "failed", "interrupted", "abandoned")


def register(sub: Any) -> None:
    runs = add_command(sub, "runs", help="pipeline run history").add_subparsers(dest="verb", metavar="VERB")
    r_list = add_command(runs, "list", help="list runs, newest first")
    r_list.add_argument("--status", choices=_STATUSES, help="only runs with this status")
    r_list.add_argument("--limit", type=int, default=None, help="at most this many runs")
    r_list.add_argument("--json", action="store_true", help="one JSON array on one line")
    r_show = add_command(runs, "show", help="one run: who, where, config, steps, error with traceback")
    r_show.add_argument("run", help="run id, 4+ of its first or last characters, or 'latest'")
    r_show.add_argument("--json", action="store_true", help="the whole record as JSON")
    r_logs = add_command(runs, "logs", help="the log lines captured for each step of a run")
    r_logs.add_argument("run", help="run id, 4+ of its first or last characters, or 'latest'")
    r_logs.add_argument("--step", help="only this step (ingest, schema, snapshot, train, …)")


def _when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _size(n: Any) -> str:
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return ""


def run(args: argparse.Namespace) -> int:
    # the pipeline, pydantic, PyYAML: only when this verb runs, not for `raymlops --help`
    from raymlops.pipeline.history import get_run, list_runs, run_logs
    from raymlops.store.home import Store

    store = Store.open(args.home, create=False)
    if args.verb == "list":
        runs = list_runs(store.metadata, status=args.status, limit=args.limit)
        if args.json:
            print_json(runs)
            return 0
        if not runs:
            print("no runs recorded" + (f" with status {args.status}" if args.status else ""))
            return 0
        print(f"{'RUN':<23} {'STATUS':<11} {'PIPELINE':<20} {'STARTED':<19} {'SECONDS':>8}  RESULT")
        for r in runs:
            secs = "-" if r["seconds"] is None else f"{r['seconds']:.1f}"
            if r["error"]:
                note = f"{r['failed_step'] or 'start'}: {r['error']}"
            else:
                note = f"{r['model'] or '-'} (gate {r['gate'] or '-'})" if r["status"] == "succeeded" else ""
            note = note.splitlines()[0] if note else ""
            print(f"{r['run']:<23} {r['status']:<11} {r['pipeline']:<20} {_when(r['started_at']):<19} "
                  f"{secs:>8}  {note[:90]}")
        return 0
    if args.verb == "show":
        record = get_run(store.metadata, args.run)
        if args.json:
            print(json.dumps(record, indent=2, default=str))
        else:
            _print_run(record)
        return 0
    run_id, logs = run_logs(store.metadata, args.run, args.step)
    for name, text in logs:
        print(f"== {run_id} {name} ==")
        print(text if text else "(no log lines)")
    return 0


def _print_run(r: dict[str, Any]) -> None:
    who, where_, code = r.get("who") or {}, r.get("where") or {}, r.get("code") or {}
    secs = "" if r.get("ended_at") is None else f" in {r['ended_at'] - r['started_at']:.1f}s"
    print(f"run {r['run']}  {r['status']}{secs}  (pipeline {r['pipeline']})")
    argv = " ".join(who.get("argv") or [])
    print(f"  who       {who.get('user', '-')} on {who.get('host', '-')} (pid {who.get('pid', '-')})"
          + (f": {argv}" if argv else ""))
    print(f"  started   {_when(r.get('started_at'))}, ended {_when(r.get('ended_at'))}")
    if where_.get("ray_address"):
        job = f"job {where_.get('job_id')}"
        if where_.get("submission_id"):
            job += f", submission {where_['submission_id']} (ray job submit)"
        print(f"  where     {where_.get('cluster', '-')} at {where_['ray_address']}, {job}, "
              f"Ray {where_.get('ray_version', '-')}")
    elif where_:
        print(f"  where     {where_.get('host', '-')}, {where_.get('cluster', '-')}")
    if "git_commit" in code:
        version = f"git {str(code['git_commit'])[:12]}" + (f" (dirty {code.get('dirty_hash')})" if code.get("dirty")
                                                          else "")
    else:
        version = f"raymlops {code.get('package_version', '-')}"
    print(f"  config    sha256 {str(r.get('config_hash'))[:16]}…, code {version}, "
          f"cache {'on' if r.get('use_cache', True) else 'off'}")
    for key in ("snapshot", "model", "gate", "endpoint"):
        if r.get(key):
            print(f"  {key:<9} {r[key]}")
    print("  steps")
    width = max([9, *(len(s["name"]) for s in r.get("steps") or [])])  # user steps may have longer names
    for s in r.get("steps") or []:
        size = ", ".join(x for x in (f"{s['rows']} rows" if s.get("rows") is not None else "",
                                     _size(s.get("bytes"))) if x)
        key = f" key {s['cache_key'][:12]}" if s.get("cache_key") else ""
        print(f"    {s['name']:<{width}} {s['status']:<8} {s.get('seconds', 0):>7.1f}s{key}  {s.get('detail', '')}"
              + (f" [{size}]" if size else ""))
    error = r.get("error")
    if error:
        print(f"  error     step {error.get('step') or '(before the first step)'}: {error.get('type')}: "
              f"{(error.get('message') or '').splitlines()[0] if error.get('message') else ''}")
        if error.get("context"):
            print(f"            {error['context']}")
        if error.get("where"):
            print(f"            raised at {error['where']}")
        if error.get("wrapper"):
            print(f"            seen by the driver as {error['wrapper']}")
        print("  traceback" + (" (remote)" if error.get("remote") else ""))
        for line in (error.get("traceback") or "").splitlines():
            print(f"    {line}")
        tail = error.get("log_tail") or []
        if tail:
            print(f"  last log lines of step {error.get('step')}")
            for line in tail:
                print(f"    {line}")
