"""``raymlops ui [--port N] [--host H] [--address A]``: serve the read-only web UI.

Runs, snapshots, models, deployments and monitors, and the audit log of the home folder
(``--home`` / ``$RAYMLOPS_HOME``) and, when ``--address`` / ``$RAY_ADDRESS`` names one, the live
cluster. Binds 127.0.0.1 by default; ``--port 0`` takes a free port. Prints the URL on stdout.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
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


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    from raymlops.ui import LOOPBACK_HOSTS, create_app

    if not args.host.strip():  # an unset variable (`--host "$UI_HOST"`) would bind every interface
        raise ConfigError("--host: empty; give an interface address (default 127.0.0.1: this machine only)")
    local = _loopback(args.host)
    app = create_app(args.home, args.address or os.environ.get("RAY_ADDRESS") or None,
                     hosts=(*LOOPBACK_HOSTS, args.host) if local else None)
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
        sock.listen(128)  # connections are accepted (queued) from the moment the URL is printed
    except OSError as exc:
        sock.close()
        option = "--port" if exc.errno in (errno.EADDRINUSE, errno.EACCES) else "--host"  # else: the address
        raise ConfigError(f"{option} {args.port if option == '--port' else args.host}: cannot listen on "
                          f"{args.host}:{args.port}: {exc.strerror or exc}") from None
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"raymlops ui: http://{host}:{port}/", flush=True)
    if not local:
        print(f"note: the UI has no authentication, and on {args.host} it is reachable from the network",
              file=sys.stderr, flush=True)
    print("press Ctrl-C to stop", file=sys.stderr, flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))  # no startup work to wait on
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0
