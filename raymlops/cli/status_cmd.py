"""``raymlops status [--address A] [--json]``: one screen for an operator.

The cluster, its Serve deployments (status, model version from the route's ``/metadata``,
replicas, traffic), the drift monitors' verdicts, the registry's aliases, recent alerts
and audit records. A cluster is contacted only when ``--address`` or ``$RAY_ADDRESS`` names one;
this command never starts Ray.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from raymlops.cli.audit_cmd import format_record
from raymlops.cli.common import add_command, print_json
from raymlops.cli.webhooks_cmd import format_delivery
from raymlops.ray_session import NAMESPACE, clean_text, join_cluster, unwrap
from raymlops.serve.throughput import HAPROXY, PYTHON_PROXY, cluster_high_throughput


def register(sub: Any) -> None:
    p = add_command(sub, "status", help="one screen: cluster, deployments, monitor verdicts, recent alerts and audit")
    p.add_argument("--address", help="Ray cluster (GCS address host:port, or 'auto'); default $RAY_ADDRESS. "
                                     "Without either, no cluster is contacted")
    p.add_argument("--recent", type=int, default=10, metavar="N", help="recent audit records to show (default 10)")
    p.add_argument("--json", action="store_true", help="everything as one JSON object")


def run(args: argparse.Namespace) -> int:
    # pyarrow: only when this verb runs, not for `raymlops --help`
    from raymlops.store.home import Store

    address = args.address or os.environ.get("RAY_ADDRESS") or None
    cluster = _cluster(address) if address else None  # an unreachable cluster is said first, home or not
    store = Store.open(args.home, create=False)
    report = collect(store, None, max(0, args.recent))
    if cluster is not None:
        report["cluster"], report["deployments"] = cluster
    if args.json:
        print_json(report)
    else:
        print(render(report))
    return 0


# ---------------------------------------------------------------------------- gathering


def collect(store: Any, address: str | None, recent: int = 10) -> dict[str, Any]:
    """Everything ``status`` shows, as plain data."""
    # pyarrow: only when this verb runs, not for `raymlops --help`
    from raymlops import audit
    from raymlops.store import leases

    ok, message = audit.verify(store.metadata)
    records = audit.records(store.metadata, limit=recent)
    alerts = audit.records(store.metadata, action="alert.", limit=recent)
    report: dict[str, Any] = {
        "home": str(store.home),
        "artifact_root": _display_uri(store.artifacts.root_uri),
        "cluster": {"connected": False, "address": None},
        "deployments": [],
        "aliases": _aliases(store),
        "alerts": [audit.to_json(r) for r in alerts],
        "retraining": [{"route": lease["name"].split(":", 1)[1], "holder": lease["holder"],
                        "since": lease["acquired_at"]} for lease in leases.held(store.metadata, "retrain:")],
        "audit": {"ok": ok, "message": message, "recent": [audit.to_json(r) for r in records]},
    }
    report["webhooks"] = _webhooks(store, recent)
    if address:
        report["cluster"], report["deployments"] = _cluster(address)
    return report


def _webhooks(store: Any, recent: int) -> dict[str, Any]:
    # pydantic, pyarrow: only when this verb runs, not for `raymlops --help`
    from raymlops.hooks import WebhookDB, list_deliveries

    if not (store.home / "webhooks.db").exists():
        return {"receivers": 0, "counts": {}, "recent": []}
    db = WebhookDB(store.home)
    return {"receivers": len(db.subscriptions()), "counts": db.counts(),
            "recent": list_deliveries(store.home, min(recent, 5))}


def _display_uri(uri: str) -> str:
    return uri.split("?", 1)[0]


def _aliases(store: Any) -> list[dict[str, Any]]:
    with store.metadata.read() as conn:
        rows = conn.execute("SELECT name, alias, model_id, updated_at FROM aliases ORDER BY name, alias").fetchall()
    return [{"name": r[0], "alias": r[1], "model": r[2], "updated_at": r[3]} for r in rows]


def _cluster(address: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        join_cluster(address)
    try:
        nodes = ray.nodes()
        total, free = ray.cluster_resources(), ray.available_resources()
        cluster = {
            "connected": True,
            "address": address,
            "ray_version": ray.__version__,
            "nodes_alive": sum(1 for n in nodes if n.get("Alive")),
            "nodes_dead": sum(1 for n in nodes if not n.get("Alive")),
            "cpus": total.get("CPU", 0.0),
            "cpus_free": free.get("CPU", 0.0),
            "gpus": total.get("GPU", 0.0),
        }
        return cluster, _deployments(NAMESPACE)
    finally:
        if started_here:
            ray.shutdown()


def _plain(status: Any) -> Any:
    """Serve's status enums (``ApplicationStatus.RUNNING``) as their names (``RUNNING``)."""
    return getattr(status, "value", status)


def _deployments(namespace: str) -> list[dict[str, Any]]:
    """Serve applications with their model version (from ``/metadata``), replicas and monitor."""
    try:
        from ray.serve.context import _get_global_client

        client = _get_global_client()
        details: dict[str, Any] = client.get_serve_details() if client is not None else {}
    except Exception:  # Serve is not running on this cluster
        return []
    http = details.get("http_options") or {}
    host = str(http.get("host") or "127.0.0.1")
    host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    port = int(http.get("port") or 8000)
    out = []
    for name, app in sorted((details.get("applications") or {}).items()):
        route = app.get("route_prefix") or f"/{name}"
        url = f"http://{host}:{port}{route.rstrip('/')}"
        replicas = running = 0
        deployments = {}
        for dname, dep in (app.get("deployments") or {}).items():
            target = int((dep.get("deployment_config") or {}).get("num_replicas") or 0)
            up = sum(1 for r in dep.get("replicas") or [] if r.get("state") == "RUNNING")
            deployments[dname] = {"status": _plain(dep.get("status")), "replicas_running": up,
                                  "replicas_target": target}
            replicas += target
            running += up
        version, error, ingress, table = _metadata_version(url)
        out.append({
            "app": name,
            "status": _plain(app.get("status")),
            "route": route,
            "url": url,
            "version": version,
            "metadata_error": error,
            # haproxy | serve-proxy (from the replica; a replica of an older raymlops: the cluster's)
            "ingress": ingress or _cluster_ingress(),
            # the route's traffic table as its replicas serve it: each version's share in percent, and
            # a shadow challenger (it answers no client)
            "traffic": _shares(table, version),
            "challenger": {k: table.get(k) for k in ("challenger", "mode", "weight", "key")}
            if table.get("challenger") else None,
            "replicas_running": running,
            "replicas_target": replicas,
            "deployments": deployments,
            "monitor": _monitor(name, namespace),
        })
    return out


def _metadata_version(url: str) -> tuple[str | None, str | None, str | None, dict[str, Any]]:
    """``(model version, error, ingress, traffic table summary)`` from the route's ``/metadata``."""
    # pydantic, PyYAML, pyarrow: only when this verb runs, not for `raymlops --help`
    from raymlops.serve.deploy import http_json

    try:
        status, body = http_json("GET", f"{url}/metadata", timeout=5)
    except OSError as exc:
        return None, f"{url}/metadata: {exc}", None, {}
    if status != 200 or not isinstance(body, dict):
        return None, f"{url}/metadata answered {status}", None, {}
    ingress, table = body.get("ingress"), body.get("traffic")
    return (str(body.get("model_version")), None, str(ingress) if ingress else None,
            table if isinstance(table, dict) else {})


def traffic_text(deployment: dict[str, Any]) -> str:
    """A deployment's traffic in one line (``status`` and the UI): each version's share, and a shadow."""
    text = ", ".join(f"{v} {p:g}%" for v, p in deployment["traffic"].items()) or "-"
    challenger = deployment.get("challenger")
    if challenger and challenger.get("mode") == "shadow":
        text += f", shadow {challenger['challenger']}"
    return text


def _shares(table: dict[str, Any], version: str | None) -> dict[str, float]:
    """Each version's share of the route's answers in percent (the champion's 100 without a table)."""
    shares = table.get("shares")
    if isinstance(shares, dict) and shares:
        return {str(v): round(float(s) * 100, 1) for v, s in shares.items()}
    return {version: 100.0} if version else {}


def _cluster_ingress() -> str | None:
    try:
        return HAPROXY if cluster_high_throughput() else PYTHON_PROXY
    except Exception:  # no worker could run the probe: unknown
        return None


def _monitor(route: str, namespace: str) -> dict[str, Any] | None:
    """The named monitor actor's verdict for ``route`` (None when it has none)."""
    import ray

    # pandas, scipy, pydantic: only when this verb runs, not for `raymlops --help`
    from raymlops.monitor.names import monitor_name

    try:
        handle = ray.get_actor(monitor_name(route), namespace=namespace)
    except ValueError:
        return None
    try:
        summary: Any = ray.get(handle.summary.remote(), timeout=15)
    except Exception as exc:  # the actor died or is stuck: say so, do not fail the screen
        cause = unwrap(exc)  # the monitor's own exception, not Ray's wrapper (and no terminal colour codes)
        return {"error": clean_text(f"{type(cause).__name__}: {cause}").splitlines()[0]}
    return {
        "rows": summary.get("rows", 0),
        "dataset_drift": bool(summary.get("dataset_drift")),
        "drifted_features": list(summary.get("drifted_features") or []),
        "features": len(summary.get("features") or []),
        "share_drifted": summary.get("share_drifted"),
        "predictions": summary.get("predictions") or {},
    }


# ---------------------------------------------------------------------------- rendering


def render(report: dict[str, Any]) -> str:
    # pyarrow: only when this verb runs, not for `raymlops --help`
    from raymlops.audit import AuditRecord

    lines = [f"raymlops status   home {report['home']}   artifacts {report['artifact_root']}", ""]
    c = report["cluster"]
    if c["connected"]:
        lines.append(
            f"cluster      {c['address']}: Ray {c['ray_version']}, {c['nodes_alive']} node(s) alive"
            + (f", {c['nodes_dead']} dead" if c["nodes_dead"] else "")
            + f", CPU {c['cpus_free']:g} of {c['cpus']:g} free" + (f", GPU {c['gpus']:g}" if c["gpus"] else "")
        )
    else:
        lines.append("cluster      none contacted (set RAY_ADDRESS or pass --address)")
    lines.append("deployments" if report["deployments"] or c["connected"] else "deployments  unknown (no cluster)")
    if c["connected"] and not report["deployments"]:
        lines[-1] = "deployments  none (Serve is not running on this cluster)"
    for d in report["deployments"]:
        traffic = traffic_text(d)
        lines.append(
            f"  {d['app']:<20} {d['status']:<10} {d['url']}  version {d['version'] or '?'}"
            f"  replicas {d['replicas_running']}/{d['replicas_target']}  traffic {traffic}"
            f"  ingress {d.get('ingress') or '?'}"
        )
        if d["metadata_error"]:
            lines.append(f"  {'':<20} metadata: {d['metadata_error']}")
    lines.append("monitors" if any(d["monitor"] for d in report["deployments"]) else "monitors     none")
    for d in report["deployments"]:
        m = d["monitor"]
        if not m:
            continue
        if "error" in m:
            lines.append(f"  {d['app']:<20} unavailable: {m['error']}")
            continue
        drifted = m["drifted_features"]
        lines.append(
            f"  {d['app']:<20} {m['rows']} rows seen, {len(drifted)} of {m['features']} features drifted"
            f"{' (' + ', '.join(drifted[:5]) + (', …' if len(drifted) > 5 else '') + ')' if drifted else ''},"
            f" dataset drift: {'YES' if m['dataset_drift'] else 'no'}"
        )
    champs = report["aliases"]
    lines.append("aliases" if champs else "aliases      none")
    lines += [f"  {a['name']}@{a['alias']} -> {a['model']}" for a in champs]

    def _line(r: dict[str, Any]) -> str:
        rec = AuditRecord(r["seq"], r["ts"], r["action"], r, r["prev_hash"], r["hash"])
        return "  " + format_record(rec)

    lines.append("retraining" if report["retraining"] else "retraining   no cycle running")
    lines += [f"  /{r['route']}: a cycle held by {r['holder']} since "
              f"{time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime(r['since']))}" for r in report["retraining"]]
    lines.append("alerts" if report["alerts"] else "alerts       none recorded")
    lines += [_line(r) for r in report["alerts"]]
    w = report.get("webhooks") or {"receivers": 0, "counts": {}, "recent": []}
    if w["receivers"] or w["recent"]:
        c = w["counts"]
        lines.append(f"webhooks     {w['receivers']} receiver(s); {c.get('delivered', 0)} delivered, "
                     f"{c.get('failed', 0)} failed, {c.get('dropped', 0)} dropped, {c.get('queued', 0)} queued")
        lines += ["  " + format_delivery(r) for r in w["recent"]]
    else:
        lines.append("webhooks     none")
    a = report["audit"]
    lines.append(f"audit        {a['message'] if a['ok'] else 'CHAIN BROKEN: ' + a['message']}")
    lines += [_line(r) for r in a["recent"]]
    return "\n".join(lines)

