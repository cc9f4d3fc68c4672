"""``raymlops ui [--port N] [--host H] [--address A]``: serve the read-only web UI.

Runs, snapshots, models, deployments and monitors, and the audit log of the home folder
(``--home`` / ``$RAYMLOPS_HOME``) and, when ``--address`` / ``$RAY_ADDRESS`` names one, the live
cluster. Binds 127.0.0.1 by default; ``--port 0`` takes a free port. Prints the URL on stdout.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any

from raymlops.cli.common import add_command
from raymlops.exceptions import ConfigError

DEFAULT_PORT = 8787  # not Ray's dashboard (8265), Serve (8000) nor Prometheus (9090)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535 (0: any free port), found {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535 (0: any free port), found {value}")
    return value


def register(sub: Any) -> None:
    p = add_command(sub, "ui", help="serve a read-only web UI: runs, snapshots, models, deployments, audit")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT,
                   help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free one and prints the URL)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--address", help="Ray cluster for the deployments and monitors pages; default $RAY_ADDRESS. "
                                     "Without either, those pages show only the home folder")


def run(args: argparse.Namespace) -> int:
    import uvicorn

    # the pipeline, FastAPI, pandas: only when this verb runs, not for `raymlops --help`
    from raymlops.ui import create_app

    app = create_app(args.home, args.address or os.environ.get("RAY_ADDRESS") or None)
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"--port {args.port}: cannot listen on {args.host}:{args.port}: "
                          f"{exc.strerror or exc}") from None
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"raymlops ui: http://{host}:{port}/", flush=True)
    print("press Ctrl-C to stop", file=sys.stderr, flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0
