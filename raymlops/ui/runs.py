"""Pages of pipeline runs: the list (status, duration) and one run (timeline, config, inputs,
outputs, logs, the failure explained with the user's traceback). Reads the run history that
``raymlops runs`` reads (:mod:`raymlops.pipeline.history`)."""

from __future__ import annotations

import json
from typing import Any

from raymlops.exceptions import NotFound
from raymlops.pipeline.history import RUN_STATUSES, get_run, list_runs, run_logs
from raymlops.store.home import Store
from raymlops.ui.page import BadParam, Page, badge, esc, fmt, kv, link, num, table, timeline_svg, url, when


def runs_page(store: Store, status: str | None) -> Page:
    if status is not None and status not in RUN_STATUSES:
        raise BadParam("status", status, "one of " + ", ".join(RUN_STATUSES))
    runs = list_runs(store.metadata, status=status or None)
    rows = []
    for r in runs:
        result = ""
        if r["error"]:
            result = esc(f"{r['failed_step'] or 'start'}: {str(r['error']).splitlines()[0]}")
        elif r["model"]:
            result = model_link(r["model"]) + esc(f" (gate {r['gate'] or '-'})")
        rows.append([link(url("runs", r["run"]), r["run"]), badge(r["status"]), esc(r["pipeline"]),
                     esc(when(r["started_at"])), num(r["seconds"]), result])
    filters = " ".join(link("/runs", s, status=s) for s in RUN_STATUSES)
    body = (f"<h1>Runs</h1><p class=\"meta\">{len(runs)} run(s){' with status ' + esc(status) if status else ''}. "
            f"Only: {filters} · {link('/runs', 'all')}</p>"
            + table(["run", "status", "pipeline", "started", "seconds", "result"], rows, "runs",
                    empty="no runs recorded" + (f" with status {status}" if status else "")))
    return Page("Runs", body)


def model_link(model_id: str) -> str:
    name, _, version = str(model_id).partition(":")
    return link(url("models", name, version), model_id) if version else esc(model_id)


def snapshot_link(snap_id: Any) -> str:
    return link(url("snapshots", snap_id), str(snap_id)[:12]) if snap_id else "-"


def _value(key: str, v: Any) -> str:
    if key == "snapshot" and isinstance(v, str) and len(v) == 64:
        return snapshot_link(v)
    if key == "model" and isinstance(v, str) and ":v" in v:
        return model_link(v)
    if isinstance(v, (dict, list)):
        return f"<code>{esc(json.dumps(v, default=str, sort_keys=True))}</code>"
    return esc(v)


def _io(d: dict[str, Any] | None) -> str:
    if not d:
        return "-"
    return "<br>".join(f"{esc(k)}: {_value(k, v)}" for k, v in d.items())


def run_page(store: Store, run_id: str) -> Page:
    try:
        r = get_run(store.metadata, run_id)
    except NotFound:
        raise NotFound(f"run {run_id!r} not found") from None
    _, logs = run_logs(store.metadata, r["run"])
    steps = r.get("steps") or []
    who, where_, code = r.get("who") or {}, r.get("where") or {}, r.get("code") or {}
    secs = None if r.get("ended_at") is None else r["ended_at"] - r["started_at"]
    facts = [("status", badge(r["status"])), ("pipeline", esc(r["pipeline"])),
             ("started", esc(when(r.get("started_at")))), ("ended", esc(when(r.get("ended_at")))),
             ("seconds", fmt(secs)),
             ("who", esc(f"{who.get('user', '-')} on {who.get('host', '-')} (pid {who.get('pid', '-')})")),
             ("command", f"<code>{esc(' '.join(who.get('argv') or []))}</code>"),
             ("where", esc(", ".join(f"{k} {v}" for k, v in where_.items()) or "-")),
             ("code", esc(", ".join(f"{k} {v}" for k, v in code.items()) or "-")),
             ("config hash", f"<code>{esc(r.get('config_hash'))}</code>")]
    for key in ("snapshot", "model", "gate", "endpoint"):
        if r.get(key):
            facts.append((key, _value(key, r[key])))
    body = [f'<h1>Run <span id="run-id">{esc(r["run"])}</span></h1>', kv(facts)]
    if steps:
        start = min(float(s.get("started_at") or r["started_at"]) for s in steps)
        end = max(float(s.get("ended_at") or s.get("started_at") or start) for s in steps)
        body.append("<h2>Timeline</h2><figure>" + timeline_svg(steps, start, end) + "</figure>")
    step_rows = [[esc(s.get("name")), badge(s.get("status")), num(s.get("seconds")), num(s.get("rows")),
                  num(s.get("bytes")), esc(str(s.get("cache_key") or "")[:12]), _io(s.get("inputs")),
                  _io(s.get("outputs")), esc(s.get("detail"))] for s in steps]
    body.append("<h2>Steps</h2>" + table(["step", "status", "seconds", "rows", "bytes", "cache key", "inputs",
                                          "outputs", "detail"], step_rows, "steps", empty="no steps recorded"))
    error = r.get("error")
    if error:
        lines = [("step", esc(error.get("step") or "(before the first step)")),
                 ("error", esc(f"{error.get('type')}: {error.get('message')}"))]
        for key, label in (("context", "explanation"), ("where", "raised at"), ("wrapper", "seen by the driver as")):
            if error.get(key):
                lines.append((label, esc(error[key])))
        body.append('<h2>Failure</h2><div class="note bad" id="failure">' + kv(lines) + "</div>")
        body.append("<h3>Traceback" + (" (remote)" if error.get("remote") else "") + "</h3>"
                    f'<pre id="traceback">{esc(error.get("traceback") or "(none recorded)")}</pre>')
        if error.get("log_tail"):
            body.append(f"<h3>Last log lines of step {esc(error.get('step'))}</h3>"
                        f"<pre>{esc(chr(10).join(error['log_tail']))}</pre>")
    config = r.get("config")
    if config is not None:
        body.append("<h2>Config</h2><pre id=\"config\">" + esc(json.dumps(config, indent=2, default=str)) + "</pre>")
    body.append("<h2>Logs</h2>")
    for name, text in logs:
        body.append(f'<h3 id="log-{esc(name)}">{esc(name)}</h3><pre>{esc(text or "(no log lines)")}</pre>')
    if not logs:
        body.append('<p class="meta">no log lines recorded</p>')
    return Page(f"Run {r['run']}", "".join(body))
