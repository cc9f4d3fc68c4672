"""``raymlops deploy REF [--as champion|challenger] [--mode canary|shadow] [--weight W] [--key COLUMN]``.

Serves a registered version (``name:vN`` or ``name@alias``) on the Ray cluster named by
``RAY_ADDRESS`` (a deployment made without a cluster would end with this command; use
``--foreground`` to serve from this process until Ctrl-C instead):

- ``--as champion`` (default): a new deployment at ``/<route>``, or, when one is live there, the
  version that answers its traffic from now on (no request fails during the swap);
- ``--as challenger --mode canary --weight 0.1 [--key customer_id]``: a share of live traffic,
  sticky by the hashed value of the key field when given;
- ``--as challenger --mode shadow``: a copy of every request; its answers are recorded (monitor,
  shadow log), never returned.

``raymlops deploy ROUTE --status | --end-challenger | --stop`` show, end the challenger of, or
remove a live deployment; ``raymlops deploy ROUTE --sample-rate R`` sets the share of requests
handed to the monitor, live (``-1``: back to the configured rate). Every change is written to
the audit log.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from raymlops.cli.common import add_command, print_json, serve_until_interrupted
from raymlops.cli.run_cmd import exit_after_serving
from raymlops.exceptions import ConfigError, NotFound
from raymlops.ray_session import NAMESPACE, cluster_address, ensure_ray
from raymlops.serve.throughput import fast_ingress_for_private_ray


def register(sub: Any) -> None:
    d = add_command(sub, "deploy", help="serve a model version: champion, canary or shadow challenger")
    d.add_argument("ref", help="name:vN or name@alias (with --status/--stop/--end-challenger: the route)")
    d.add_argument("--as", dest="role", choices=("champion", "challenger"), default="champion",
                   help="champion (default) answers traffic; challenger gets a canary share or a shadow copy")
    d.add_argument("--mode", choices=("canary", "shadow"), help="how a challenger sees traffic")
    d.add_argument("--weight", type=float, default=None, help="canary: share of requests, 0..1 (default 0.1)")
    d.add_argument("--key", help="canary: a request field whose hashed value picks the model (sticky)")
    d.add_argument("--route", help="route /<route> (default: serve.name of --config, else the model name)")
    d.add_argument("--config", help="pipeline YAML whose serve: and monitor: sections apply")
    d.add_argument("--host", help="listen address (default 127.0.0.1)")
    d.add_argument("--port", type=int, help="HTTP port (default 8000)")
    d.add_argument("--reason", help="why (recorded in the audit log)")
    d.add_argument("--foreground", action="store_true",
                   help="without RAY_ADDRESS: start a private Ray and serve until Ctrl-C")
    action = d.add_mutually_exclusive_group()
    action.add_argument("--status", action="store_true", help="show the live deployment at route REF")
    action.add_argument("--end-challenger", action="store_true", help="retire the challenger of route REF")
    action.add_argument("--stop", action="store_true", help="remove the live deployment at route REF")
    action.add_argument("--sample-rate", type=float, metavar="R",
                        help="hand this share (0..1) of route REF's requests to its monitor from now on, live; "
                             "'--sample-rate -1' goes back to the configured monitor.sample_rate")
    d.add_argument("--json", action="store_true", help="print the result as one JSON line")


def _connect(foreground: bool = False, high_throughput: bool | None = None) -> bool:
    """Join ``RAY_ADDRESS``; True when connected to a cluster that outlives this command.
    ``foreground`` without ``RAY_ADDRESS``: a private Ray, with Serve's HAProxy ingress unless
    ``serve.high_throughput`` is false."""
    if not os.environ.get("RAY_ADDRESS") and not foreground:
        raise ConfigError(
            "raymlops deploy needs a running Ray cluster: set RAY_ADDRESS (e.g. `ray start --head` then "
            "RAY_ADDRESS=auto; clients of a token-auth cluster also need RAY_AUTH_MODE=token), or pass --foreground "
            "to serve from this process until Ctrl-C"
        )
    if foreground:
        fast_ingress_for_private_ray(high_throughput)
    return ensure_ray()


def follow_live(store: Any, name: str, action: str, reason: str | None) -> tuple[str, dict[str, Any]]:
    """After ``models promote|rollback`` moved ``name@champion``: update live deployments of
    ``name`` when a cluster is reachable (``RAY_ADDRESS``); ``(message, {route: traffic})``."""
    if not os.environ.get("RAY_ADDRESS"):
        return ("no Ray cluster (RAY_ADDRESS not set): moved the alias only; a running deployment keeps serving its "
                "version until updated (set RAY_ADDRESS and run this again)"), {}
    # Ray, pandas, scipy: only when this verb runs, not for `raymlops --help`
    from raymlops.pipeline.serve_steps import rebaseline_route
    from raymlops.serve.traffic import follow_champion

    _connect()
    changed = follow_champion(store, name, action, reason)
    if not changed:
        return f"no live deployment of {name} needed a change", {}
    # each route's monitor moves to the training rows of the champion it now serves (as after a
    # closed-loop promotion), or v1's traffic would be judged against v2's rows
    moved = [rebaseline_route(store, r, t.champion.model_id, reason) for r, t in changed.items()]
    return ("live: " + ", ".join(f"/{r} now serves {t.champion.model_id}" for r, t in changed.items())
            + "; " + "; ".join(moved), {r: t.summary() for r, t in changed.items()})


def _print_traffic(route: str, info: dict[str, Any]) -> None:
    t = info.get("traffic") or {}
    shares = ", ".join(f"{v} {s * 100:.1f}%" for v, s in (t.get("shares") or {}).items())
    print(f"/{route}: champion {t.get('champion')}, challenger {t.get('challenger') or '-'}"
          f"{' (' + str(t.get('mode')) + ')' if t.get('mode') else ''}; traffic: {shares}; epoch {t.get('epoch')}")
    if t.get("key"):
        print(f"  canary sticky by field {t['key']!r}" if t.get("mode") == "canary" else
              f"  routing key field {t['key']!r} (accepted; a canary is sticky by it)")
    replicas = info.get("replicas") or {}
    if replicas:
        print(f"  replicas: {len(replicas)} live, serving epochs "
              f"{sorted({r['epoch'] for r in replicas.values() if r['epoch'] is not None})}")
    if info.get("shadow"):
        s = info["shadow"]
        print(f"  shadow: {s['records']} recorded comparisons, agreement {s['agreement']:.3f}")


def _status(route: str) -> dict[str, Any]:
    import ray

    # Ray, pydantic, PyYAML: only when this verb runs, not for `raymlops --help`
    from raymlops.serve.control import get_control

    handle = get_control(route, NAMESPACE)
    if handle is None:
        raise NotFound(f"no live deployment at route {route!r} on this Ray cluster (deploy it first)")
    info: dict[str, Any] = ray.get(handle.status.remote())
    traffic = info.get("traffic") or {}
    if traffic.get("mode") != "shadow" or not traffic.get("challenger"):
        return info  # the log's comparisons are of an earlier shadow (promoted or ended): not this route's now
    # the comparisons of this shadow with this champion, not those of an earlier pair
    log = [r for r in ray.get(handle.shadow_log.remote(1000))
           if (r.get("challenger"), r.get("champion")) == (traffic["challenger"], traffic["champion"])]
    rows = [r for r in log if "agreement" in r]
    if rows:
        total = sum(r["rows"] for r in rows)
        info["shadow"] = {"records": len(log),
                          "agreement": sum(r["agreement"] * r["rows"] for r in rows) / max(total, 1)}
    return info


def _start_monitor(store: Any, cfg: Any, ref: str, route: str, persistent: bool) -> None:
    """A new deployment under a config with ``monitor.enabled``: its monitor, as ``raymlops run``'s
    deploy step starts it (the model's training rows as reference, the settings for this model)."""
    # pyarrow, scikit-learn, Ray: only when this verb runs
    from raymlops.data.snapshot import snapshot_info
    from raymlops.data.snapshot_read import read_snapshot
    from raymlops.monitor.lifecycle import start_monitor
    from raymlops.pipeline.serve_steps import monitor_settings, training_reference
    from raymlops.registry import get_model

    version = get_model(store, ref)
    _, table = read_snapshot(store, version.snapshot_id)
    reference = training_reference(table, list(version.features), cfg, snapshot_info(store, version.snapshot_id).schema)
    start_monitor(route, reference, monitor_settings(cfg, version), NAMESPACE, detached=persistent,
                  home=str(store.home), artifact_root=store.artifacts.root_uri)


def run(args: argparse.Namespace) -> int:
    # pydantic, PyYAML, pyarrow: only when this verb runs, not for `raymlops --help`
    from raymlops.config import ServeConfig, load_config
    from raymlops.config.base import NAME_PATTERN
    from raymlops.serve import traffic
    from raymlops.store.home import Store

    if args.port is not None and not 1 <= args.port <= 65535:  # before Ray, Serve or the home
        raise ConfigError(f"deploy: --port: expected a port from 1 to 65535, found {args.port}")
    if args.route is not None and not NAME_PATTERN.match(args.route):
        raise ConfigError(f"deploy: --route {args.route!r}: expected lowercase letters, digits and '-' (a URL path "
                          "segment)")
    store = Store.open(args.home)
    cfg = load_config(args.config) if args.config else None
    serve_cfg = cfg.serve if cfg else ServeConfig()
    updates = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    if updates:
        serve_cfg = serve_cfg.model_copy(update=updates)
    name = args.ref.split("@", 1)[0].split(":", 1)[0]
    route = args.route or (cfg.route if cfg else None) or name

    if args.status or args.stop or args.end_challenger or args.sample_rate is not None:
        _connect()
        route = args.route or args.ref
        if args.sample_rate is not None:
            rate = None if args.sample_rate == -1 else args.sample_rate
            table = traffic.set_sample_rate(store, route, rate, reason=args.reason)
            print_json({"route": route, "traffic": table.summary()}) if args.json else \
                print(f"/{route}: monitor sample rate {'as configured' if rate is None else rate}; epoch {table.epoch}")
            return 0
        if args.status:
            info = _status(route)
            print_json(info) if args.json else _print_traffic(route, info)
            return 0
        if args.end_challenger:
            table = traffic.set_challenger(store, route, None, reason=args.reason)
            print_json({"route": route, "traffic": table.summary()}) if args.json else \
                _print_traffic(route, {"traffic": table.summary()})
            return 0
        current = traffic.current_table(route)
        traffic.stop_route(store, route, reason=args.reason)
        print_json({"route": route, "stopped": True}) if args.json else \
            print(f"/{route}: stopped (was serving {current.champion.model_id})")
        return 0

    if args.role == "champion" and (args.mode or args.weight is not None or args.key):
        raise ConfigError("--mode, --weight and --key are for --as challenger")
    if args.role == "challenger":
        if args.mode is None:
            raise ConfigError("--as challenger needs --mode canary or --mode shadow")
        if args.mode == "shadow" and (args.weight is not None or args.key):
            raise ConfigError("--mode shadow copies every request: --weight and --key do not apply")
        if args.foreground:
            raise ConfigError("--foreground starts a new deployment: deploy the champion first")
        _connect()
        weight = 0.1 if args.weight is None else args.weight
        table = traffic.set_challenger(store, route, args.ref, args.mode, weight, args.key, reason=args.reason)
        print_json({"route": route, "traffic": table.summary()}) if args.json else \
            _print_traffic(route, {"traffic": table.summary()})
        return 0

    persistent = _connect(args.foreground, serve_cfg.high_throughput)
    # Ray, pydantic, PyYAML: only when this verb runs, not for `raymlops --help`
    from raymlops.serve.control import get_control

    if get_control(route, NAMESPACE) is not None and not args.foreground:
        table = traffic.set_champion(store, route, args.ref, reason=args.reason)
        print_json({"route": route, "traffic": table.summary()}) if args.json else \
            _print_traffic(route, {"traffic": table.summary()})
        return 0
    sample_rate = cfg.monitor.sample_rate if cfg else 1.0
    if cfg is not None and cfg.monitor.enabled:
        _start_monitor(store, cfg, args.ref, route, persistent)
    endpoint = traffic.deploy_model(store, args.ref, route=route, serve_config=serve_cfg, sample_rate=sample_rate,
                                    reason=args.reason)
    if args.json:
        print_json({"route": route, "endpoint": endpoint, "traffic": traffic.current_table(route).summary()})
    else:
        print(f"serving {args.ref} at {endpoint}/predict")
    if persistent and not args.foreground:
        return 0
    banner = "serving in the foreground — press Ctrl-C to stop"
    address = cluster_address()
    if address and not os.environ.get("RAY_ADDRESS"):  # this process's private Ray: how other shells reach it
        banner += ("\n  from another shell (a challenger, promote, its monitor): RAY_AUTH_MODE=token RAY_ADDRESS="
                   f"{address} raymlops deploy {route} --status")
    serve_until_interrupted(banner,
                            lambda: traffic.stop_route(store, route, reason="foreground deploy ended", shutdown=True))

    exit_after_serving(0)  # drained and recorded: skip the interpreter's slow teardown
    return 0
