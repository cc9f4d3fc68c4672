"""Pages of the live cluster: deployments (status, version, replicas, traffic) and their drift
monitors (drift per feature and slice with plots, performance realised and estimated, alerts,
SLOs). The cluster is the one named by ``RAY_ADDRESS`` (or the Ray this process already joined);
the deployments are read by :func:`raymlops.cli.status_cmd.collect` (what ``raymlops status``
prints) and a monitor by its actor's ``status()`` (what ``raymlops monitor status`` prints).
Without a reachable cluster the page says so and shows what the home folder holds."""

from __future__ import annotations

import json
import threading
from typing import Any, cast

from raymlops.cli.status_cmd import collect, traffic_text
from raymlops.exceptions import NotFound, RaymlopsError
from raymlops.monitor.names import monitor_name
from raymlops.monitor.plots import histogram_svg
from raymlops.monitor.report import live_model, plotted_features, render_html
from raymlops.ray_session import NAMESPACE, join_cluster
from raymlops.store.home import Store
from raymlops.ui.page import Page, badge, esc, fmt, kv, link, num, page, table, url, when
from raymlops.ui.runs import model_link

_LOCK = threading.Lock()
NO_CLUSTER = "No Ray cluster is configured: start raymlops ui with RAY_ADDRESS set to see deployments and monitors."


def connect(address: str | None) -> str | None:
    """The address of the Ray this process is joined to (joining ``address`` once); None when
    there is none. :class:`RaymlopsError` says why a named cluster cannot be reached."""
    import ray

    with _LOCK:
        if ray.is_initialized():
            return address or "this process's Ray"
        if not address:
            return None

        join_cluster(address)  # any failure (a signal handler outside the main thread too) is a RaymlopsError
        return address


def monitor_routes() -> list[str]:
    """Routes with a monitor actor on the joined cluster (as ``raymlops monitor status`` finds them)."""
    import ray

    prefix = monitor_name("")
    return sorted(a["name"][len(prefix):] for a in ray.util.list_named_actors(all_namespaces=True)
                  if a.get("namespace") == NAMESPACE and a["name"].startswith(prefix))


def monitor_status(route: str) -> dict[str, Any]:
    import ray

    try:
        handle = ray.get_actor(monitor_name(route), namespace=NAMESPACE)
    except ValueError:
        raise NotFound(f"no monitor for deployment {route!r} on this cluster") from None
    return cast(dict[str, Any], ray.get(handle.status.remote(), timeout=30))


def _cluster_note(address: str | None) -> tuple[str | None, str]:
    try:
        joined = connect(address)
    except RaymlopsError as exc:
        return None, f'<p class="note bad" id="cluster">{esc(exc)}. Showing only what the home folder holds.</p>'
    if joined is None:
        return None, f'<p class="note" id="cluster">{esc(NO_CLUSTER)}</p>'
    return joined, ""


def deployments_page(store: Store, address: str | None) -> Page:
    joined, note = _cluster_note(address)
    body = ["<h1>Deployments and monitors</h1>", note]
    try:
        report = collect(store, joined)
    except RaymlopsError as exc:
        report, joined = collect(store, None), None
        body.append(f'<p class="note bad" id="cluster">{esc(exc)}</p>')
    routes: list[str] = []
    if joined is not None:
        c = report["cluster"]
        body.append(f'<p class="note ok" id="cluster">cluster {esc(c.get("address"))}: Ray {esc(c.get("ray_version"))}'
                    f", {fmt(c.get('nodes_alive'))} node(s) alive, CPU {fmt(c.get('cpus_free'))} of "
                    f"{fmt(c.get('cpus'))} free</p>")
        try:
            routes = monitor_routes()
        except Exception as exc:  # the cluster went away meanwhile
            body.append(f'<p class="note bad">cannot list the monitors: {esc(exc)}</p>')
        rows = []
        for d in report["deployments"]:
            traffic = traffic_text(d)
            mon = link(url("monitors", d["app"]), "monitor") if d["app"] in routes else "-"
            rows.append([esc(d["app"]), badge(d["status"]), esc(d["url"]), model_link(d["version"]) if d["version"]
                         else esc(d["metadata_error"] or "?"), esc(f"{d['replicas_running']}/{d['replicas_target']}"),
                         esc(traffic), esc(d.get("ingress") or "?"), mon])
        body.append("<h2>Traffic</h2>" + table(["route", "status", "url", "version", "replicas", "traffic",
                                                 "ingress", "monitor"], rows, "deployments",
                                                empty="none: Serve is not running on this cluster"))
        mons = [[esc(r), link(url("monitors", r), "status")] for r in routes]
        body.append("<h2>Monitors</h2>" + table(["route", ""], mons, "monitors", empty="no monitors running"))
    body.append("<h2>Aliases (home folder)</h2>" + table(
        ["model", "alias", "version", "since"],
        [[link(url("models", a["name"]), a["name"]), esc(a["alias"]), model_link(a["model"]),
          esc(when(a["updated_at"]))] for a in report["aliases"]], "aliases", empty="no aliases"))
    body.append("<h2>Recent alerts (audit log)</h2>" + table(
        ["when", "action", "ids", "reason"],
        [[esc(when(a["ts"])), esc(a["action"]), f"<code>{esc(json.dumps(a.get('ids') or {}))}</code>",
          esc(a.get("reason") or "")] for a in report["alerts"]], "alerts", empty="none recorded"))
    return Page("Deployments", "".join(body))


def _feature_rows(columns: list[dict[str, Any]]) -> list[list[str]]:
    return [[esc(c["column"]), esc(c.get("test")), num(c.get("statistic")), num(c.get("p_value")),
             num(c.get("adjusted_p_value")), num(c.get("psi")),
             f'<span class="{"bad" if c.get("drift") else "ok"}">{"DRIFT" if c.get("drift") else "no"}</span>']
            for c in columns]


FEATURE_HEAD = ["feature", "test", "statistic", "p-value", "adjusted p", "PSI", "drift"]


def monitor_page(route: str, address: str | None) -> Page:
    joined, note = _cluster_note(address)
    body = [f'<h1>Monitor of <span id="route">{esc(route)}</span></h1>', note]
    if joined is None:
        return Page(f"Monitor {route}", "".join(body))
    try:
        st = monitor_status(route)
    except NotFound:
        raise
    except Exception as exc:  # the actor died or is stuck: say so, never a 500
        body.append(f'<p class="note bad">the monitor did not answer: {esc(type(exc).__name__)}: '
                    f"{esc(str(exc).splitlines()[0] if str(exc) else '')}</p>")
        return Page(f"Monitor {route}", "".join(body))
    w = st.get("window") or {}
    verdict = w.get("verdict") or (st.get("last_window") or {})
    overall = verdict.get("overall") or {}
    drift = overall.get("dataset_drift")
    body.append(kv([("rows seen", fmt(st.get("rows_total"))), ("window", esc(f"#{w.get('index')}: {w.get('rows')} rows"
                                                                            f" of {w.get('window_rows')}")),
                    ("dataset drift", f'<span class="{"bad" if drift else "ok"}">{"DRIFT" if drift else "no"}</span>'),
                    ("restored", fmt(bool(st.get("restored")))), ("metrics", esc(st.get("metrics_url") or "-"))]))
    body.append(f'<p>{link(url("monitors", route, "report"), "full drift report")}</p>')
    body.append("<h2>Drift per feature</h2>" + table(FEATURE_HEAD, _feature_rows(overall.get("columns") or []),
                                                     "features", empty="no rows in the window yet"))
    for s in verdict.get("slices") or []:
        body.append(f"<h3>slice {esc(s.get('name'))} ({fmt(s.get('rows'))} rows)</h3>"
                    + table(FEATURE_HEAD, _feature_rows(s.get("columns") or []), "slice"))
    try:
        model = live_model(st, route)
    except RaymlopsError:
        model = None
    if model is not None:
        for k, name in enumerate(plotted_features(model, 3)):
            body.append(f'<figure class="plot" data-feature="{esc(name)}">'
                        f"{histogram_svg(model['histograms'][name], name, k)}</figure>")
    body.append("<h2>Performance</h2>" + performance_table(st.get("performance") or {}))
    alerts = (st.get("alerts") or {}).get("recent") or []
    body.append("<h2>Alerts</h2>" + table(["kind", "message"], [[esc(a.get("kind")), esc(a.get("message"))]
                                                               for a in alerts[-20:]], "alerts", empty="none"))
    body.append("<h2>SLOs</h2>" + _slo(st.get("slo")))
    return Page(f"Monitor {route}", "".join(body))


def performance_table(perf: dict[str, Any]) -> str:
    """The monitor's realised quality (the open label window, each challenger's labelled rows, the
    last closed label window) and the estimated one (CBPE), overall and per slice."""
    rows = []
    current = perf.get("current") or {}
    if current.get("labels"):  # the open label window (the baseline's until it is full)
        rows.append([esc("realised (open label window)"), "all", num(current.get("labels")),
                     num(current.get("accuracy")), num(current.get("auc"))])
    for version, m in sorted((perf.get("challengers") or {}).items()):
        rows.append([esc(f"realised, challenger {version}"), "all", num(m.get("labels")), num(m.get("accuracy")), ""])
    for source, part in (("realised (last label window)", perf.get("last_window") or {}),
                         ("estimated (CBPE)", (perf.get("estimated") or {}).get("last_window") or {})):
        for name, m in [("all", part.get("overall") or {}), *(part.get("slices") or {}).items()]:
            if m:
                rows.append([esc(source), esc(name), num(m.get("rows")), num(m.get("accuracy")),
                             num(m.get("roc_auc", m.get("auc")))])
    return table(["source", "slice", "rows", "accuracy", "ROC AUC"], rows, "performance",
                 empty="no labels or estimates yet")


def _slo(slo: Any) -> str:
    """The SLO windows (requests, error rate, availability, latency) and the burn rates."""
    if not slo:
        return '<p class="meta">no SLOs configured</p>'
    windows = {k: v for k, v in slo.items() if isinstance(v, dict) and "requests" in v}
    cols = sorted({c for v in windows.values() for c in v})
    out = table(["window", *[c.replace("_", " ") for c in cols]],
                [[esc(k), *[num(v.get(c)) for c in cols]] for k, v in windows.items()], "slo")
    burn = slo.get("burn_rates") or {}
    if isinstance(burn, dict) and burn:
        out += table(["burn rate", "short", "long", "threshold"],
                     [[esc(k), num(v.get("short")), num(v.get("long")), num(v.get("threshold"))]
                      for k, v in burn.items() if isinstance(v, dict)], "burn")
    rest = {k: v for k, v in slo.items() if k not in windows and k != "burn_rates"}
    if rest:
        out += f"<pre>{esc(json.dumps(rest, indent=1, default=str))}</pre>"
    return out


def monitor_report(route: str, address: str | None) -> str:
    """The self-contained drift report of ``raymlops monitor report --route`` as a page."""
    joined, note = _cluster_note(address)
    if joined is not None:
        try:
            report = render_html(live_model(monitor_status(route), route))
            back = f'<p>{link(url("monitors", route), "back to the monitor")}</p>'
            # the report is made to stand alone: give it the UI's empty icon and a way back
            return report.replace("<head>", '<head><link rel="icon" href="data:,">', 1).replace("<body>",
                                                                                                "<body>" + back, 1)
        except NotFound:
            raise
        except Exception as exc:  # no rows yet, or the actor did not answer
            note = f'<p class="note">{esc(exc)}</p>'
    return page(Page(f"Report {route}", f"<h1>Drift report of {esc(route)}</h1>{note}"))
