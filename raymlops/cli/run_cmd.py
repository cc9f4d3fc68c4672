"""``raymlops run CONFIG [--json] [--serve] [--no-cache]``."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import textwrap
from typing import Any

from raymlops.cli.common import add_command, print_json, ray_output_to_stderr, serve_until_interrupted
from raymlops.exceptions import RaymlopsError, raise_terminated
from raymlops.ray_session import cluster_address
from raymlops.serve.throughput import remove_private_folders


def register(sub: Any) -> None:
    run = add_command(sub, "run", help="run a pipeline config end to end")
    run.add_argument("config", help="pipeline YAML, e.g. configs/quickstart.yaml")
    run.add_argument("--json", action="store_true", help="print the result as one JSON line (last line of stdout)")
    run.add_argument("--serve", action="store_true", help="keep serving in the foreground after the run (until Ctrl-C)")
    run.add_argument("--no-cache", action="store_true",
                     help="run every step, even those whose inputs did not change since a successful run")
    run.add_argument("--fail-on-reject", action="store_true",
                     help="exit 1 when the gate rejects the model (for CI: a run that shipped nothing is not green); "
                          "the run itself still succeeded and is recorded so")
    shown = run.add_mutually_exclusive_group()
    shown.add_argument("--progress", dest="progress", action="store_true", default=None,
                       help="show Ray Data's progress bars and Ray Tune's trial table (default: on a terminal)")
    shown.add_argument("--no-progress", dest="progress", action="store_false", help="only raymlops' step lines")


def _paragraph(text: str) -> str:
    """Wrap the explanation for a terminal; the ``Details:`` line stays whole."""
    head, _, details = text.partition("\nDetails: ")
    body = textwrap.fill(head, width=100, break_long_words=False, break_on_hyphens=False)
    return f"{body}\nDetails: {details}" if details else body


def run(args: argparse.Namespace) -> int:
    # the pipeline, pydantic, PyYAML: only when this verb runs, not for `raymlops --help`
    from raymlops.config import load_config
    from raymlops.pipeline.failures import explain
    from raymlops.pipeline.runner import end_serving, run_pipeline
    from raymlops.store.home import Store

    try:
        cfg = load_config(args.config)
    except RaymlopsError as exc:  # no run (nothing is written); a script reading --json still gets its line
        if args.json:
            print_json({"run": None, "status": "failed", "error": {"type": type(exc).__name__, "message": str(exc),
                                                                   "step": None, "exit_code": exc.exit_code}})
        raise
    try:
        progress = sys.stderr.isatty() if args.progress is None else args.progress
        # SIGTERM stops the run as Ctrl-C does (recorded interrupted, exit 143): until Ray's driver
        # installs its own handler (a SystemExit(15), which the run takes as the same)
        signal.signal(signal.SIGTERM, raise_terminated)
        with ray_output_to_stderr(keep_ray=args.serve):
            result = run_pipeline(cfg, home=args.home, keep_serving=True if args.serve else None,
                                  use_cache=not args.no_cache, ray_progress=progress)
    except RaymlopsError as exc:
        failure = getattr(exc, "failure", None)
        run_id = getattr(exc, "run_id", None)
        if failure is None or run_id is None:
            raise
        if args.json:
            print_json({"run": run_id, "status": "failed", "error": failure.to_dict() | {"traceback": None}})
        resumable = failure.step not in (None, "ingest")
        print(_paragraph(explain(failure, run_id, resumable=resumable)), file=sys.stderr, flush=True)
        return int(failure.exit_code)
    if args.json:
        print_json(result.to_dict())
    else:
        cached = sum(1 for s in result.steps if s.status == "cached")
        reused = f" ({cached} steps reused from the cache)" if cached else ""
        rejected = " (the gate rejected the model: --fail-on-reject, exit 1)" if (
            result.gate == "rejected" and args.fail_on_reject) else ""
        print(f"run {result.run_id} succeeded in {result.seconds:.1f}s{reused}{rejected}")
        print(f"  snapshot  {result.snapshot}")
        print(f"  model     {result.model} (gate {result.gate})")
        print(f"  endpoint  {result.endpoint or '-'}")
    if result.gate == "rejected":
        reasons = "; ".join(result.gate_reasons) or "see the gate rules"
        print(_paragraph(
            f"note: the gate rejected {result.model} ({reasons}); it is registered as rejected and was not "
            "deployed. Improve the model (train.candidates, more or better data) or review gate.rules, then run "
            f"again.\nDetails: raymlops runs show {result.run_id}"), file=sys.stderr, flush=True)
        if args.fail_on_reject:
            return 1
    if args.serve and result.endpoint:
        banner = f"serving {result.endpoint}/predict — press Ctrl-C to stop"
        address = cluster_address()
        if cfg.monitor.enabled and address and not os.environ.get("RAY_ADDRESS"):  # this process's private Ray
            banner += ("\n  its monitor, from another shell: RAY_AUTH_MODE=token raymlops monitor status --address "
                       + address)
        serve_until_interrupted(banner, lambda: end_serving(
            Store.open(args.home), cfg, result, f"pipeline {cfg.name} run {result.run_id}",
            "raymlops run --serve was stopped (Ctrl-C or SIGTERM)"))
        exit_after_serving(0)
    return 0


def exit_after_serving(code: int) -> None:
    """End the process once a foreground deployment has been stopped (drained): Ray shut down,
    output flushed, then ``os._exit``. The interpreter's own teardown after Serve ran took 3-4 s
    more (in C, after every atexit handler), which made Ctrl-C take 5-8 s instead of 2-4."""
    import logging
    import os

    import ray

    if ray.is_initialized():
        ray.shutdown()
    remove_private_folders()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
