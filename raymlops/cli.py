"""The ``raymlops`` command line: thin; parses arguments, calls the Python API, prints.

Exit codes: 0 success, 1 failure, 2 bad input (config, arguments, data that fails validation).
Errors are one paragraph on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from raymlops import __version__
from raymlops.exceptions import RaymlopsError, StepFailed


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="raymlops",
        description="The whole life of a tabular ML model on Ray: versioned data, Tune training, "
        "a gated registry with lineage, Ray Serve, and drift monitoring.",
    )
    p.add_argument("--version", action="version", version=f"raymlops {__version__}")
    p.add_argument("--home", help="raymlops home folder (default: $RAYMLOPS_HOME, else ./.raymlops)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="run a pipeline config end to end")
    run.add_argument("config", help="pipeline YAML, e.g. configs/quickstart.yaml")
    run.add_argument("--json", action="store_true", help="print the result as one JSON line (last line of stdout)")
    run.add_argument("--serve", action="store_true",
                     help="keep serving in the foreground after the run (until Ctrl-C)")

    snap = sub.add_parser("snapshot", help="data snapshots").add_subparsers(dest="verb", metavar="VERB")
    s_list = snap.add_parser("list", help="list snapshots")
    s_list.add_argument("--json", action="store_true")
    s_verify = snap.add_parser("verify", help="re-hash a snapshot's files")
    s_verify.add_argument("id")
    s_verify.add_argument("--json", action="store_true")

    models = sub.add_parser("models", help="model registry").add_subparsers(dest="verb", metavar="VERB")
    m_list = models.add_parser("list", help="list model versions")
    m_list.add_argument("--json", action="store_true")
    m_show = models.add_parser("show", help="show a model version (name:vN or name@alias)")
    m_show.add_argument("ref")

    aud = sub.add_parser("audit", help="the audit log").add_subparsers(dest="verb", metavar="VERB")
    a_list = aud.add_parser("list", help="list audit records")
    a_list.add_argument("--action")
    a_list.add_argument("--json", action="store_true")
    aud.add_parser("verify", help="check the hash chain (exit 1 if broken)")
    return p


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, default=str, separators=(",", ":")), flush=True)


def _cmd_run(args: argparse.Namespace) -> int:
    from raymlops.config import load_config
    from raymlops.pipeline.runner import run_pipeline, stop_serving

    cfg = load_config(args.config)
    result = run_pipeline(cfg, home=args.home, keep_serving=True if args.serve else None)
    summary = result.to_dict()
    if args.json:
        _print_json(summary)
    else:
        print(f"run {result.run_id} succeeded in {result.seconds:.1f}s")
        print(f"  snapshot  {result.snapshot}")
        print(f"  model     {result.model} (gate {result.gate})")
        print(f"  endpoint  {result.endpoint or '-'}")
    if args.serve and result.endpoint:
        print(f"serving {result.endpoint}/predict — press Ctrl-C to stop", file=sys.stderr, flush=True)
        # a parent that started us in the background may have set SIGINT to "ignore": take it back
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print("stopping ...", file=sys.stderr, flush=True)
        finally:
            stop_serving(cfg)
    return 0


def _cmd_snapshot(args: argparse.Namespace) -> int:
    from raymlops.data.snapshot import list_snapshots, verify_snapshot
    from raymlops.store.home import Store

    store = Store.open(args.home)
    if args.verb == "list":
        snaps = list_snapshots(store)
        if args.json:
            _print_json(snaps)
        else:
            for s in snaps:
                print(f"{s['id'][:12]}  {s['rows']:>10} rows  {','.join(s['tags']) or '-':<12} {s['source']}")
        return 0
    if args.verb == "verify":
        problems = verify_snapshot(store, args.id)
        if args.json:
            _print_json({"snapshot": args.id, "ok": not problems, "problems": problems})
        else:
            print("ok" if not problems else "\n".join(problems))
        return 0 if not problems else 1
    raise SystemExit(2)


def _cmd_models(args: argparse.Namespace) -> int:
    from raymlops.registry.registry import get_model, list_models
    from raymlops.store.home import Store

    store = Store.open(args.home)
    if args.verb == "list":
        versions = list_models(store)
        if args.json:
            _print_json([v.to_dict() for v in versions])
        else:
            for v in versions:
                m = v.record.get("metrics", {})
                auc = m.get("roc_auc", float("nan"))
                print(f"{v.id:<28} {v.status:<10} roc_auc={auc:.4f}  snapshot {v.snapshot_id[:12]}")
        return 0
    if args.verb == "show":
        print(json.dumps(get_model(store, args.ref).to_dict(), indent=2, default=str))
        return 0
    raise SystemExit(2)


def _cmd_audit(args: argparse.Namespace) -> int:
    from raymlops import audit
    from raymlops.store.home import Store

    store = Store.open(args.home)
    if args.verb == "verify":
        ok, message = audit.verify(store.metadata)
        print(message)
        return 0 if ok else 1
    if args.verb == "list":
        recs = audit.records(store.metadata, action=args.action)
        for r in recs:
            if args.json:
                _print_json({"seq": r.seq, "hash": r.hash, **r.record})
            else:
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.ts))
                print(f"{r.seq:>5} {when} {r.action:<20} {json.dumps(r.record['ids'])} {r.record.get('reason') or ''}")
        return 0
    raise SystemExit(2)


def _explain(exc: BaseException) -> str:
    """One paragraph: what went wrong in the user's terms, and what to do."""
    text = str(exc)
    hint = ""
    if isinstance(exc, StepFailed):
        hint = " Fix the cause and run again."
    if "port" in text and "in use" in text:
        hint = ""
    return f"error: {text}{hint}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if getattr(args, "verb", "") is None:
        parser.parse_args([args.command, "--help"])
    handlers = {"run": _cmd_run, "snapshot": _cmd_snapshot, "models": _cmd_models, "audit": _cmd_audit}
    try:
        return handlers[args.command](args)
    except RaymlopsError as exc:
        print(_explain(exc), file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
