"""``raymlops run CONFIG [--json] [--serve]``."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any

from raymlops.cli.common import add_command, print_json


def register(sub: Any) -> None:
    run = add_command(sub, "run", help="run a pipeline config end to end")
    run.add_argument("config", help="pipeline YAML, e.g. configs/quickstart.yaml")
    run.add_argument("--json", action="store_true", help="print the result as one JSON line (last line of stdout)")
    run.add_argument("--serve", action="store_true", help="keep serving in the foreground after the run (until Ctrl-C)")


def run(args: argparse.Namespace) -> int:
    from raymlops.config import load_config
    from raymlops.pipeline.runner import run_pipeline, stop_serving

    cfg = load_config(args.config)
    result = run_pipeline(cfg, home=args.home, keep_serving=True if args.serve else None)
    if args.json:
        print_json(result.to_dict())
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
