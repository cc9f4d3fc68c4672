"""Pages of the model registry: every model with its versions (gate verdict, metrics, aliases),
a model's alias history, and one version with its lineage graph code → data → model →
deployments (:func:`raymlops.registry.trace.lineage_of`, what ``raymlops lineage`` prints) and
any recorded ``reproduce`` results (audit records under ``model.reproduc``)."""

from __future__ import annotations

import json
from typing import Any

from raymlops import audit
from raymlops.exceptions import NotFound
from raymlops.registry.registry import alias_history, aliases_of, list_models
from raymlops.registry.trace import lineage_of
from raymlops.store.home import Store
from raymlops.ui.page import Page, badge, esc, fmt, kv, link, num, table, url, when
from raymlops.ui.runs import model_link, snapshot_link


def _metrics(m: dict[str, Any]) -> str:
    return esc(", ".join(f"{k} {fmt(v)}" for k, v in m.items() if not isinstance(v, (dict, list))) or "-")


def _version_rows(store: Store, versions: list[Any]) -> list[list[str]]:
    rows = []
    for v in versions:
        gate = v.gate
        rows.append([model_link(v.id), badge(gate.get("status") or v.status), esc(", ".join(aliases_of(store, v.id)))
                     or "-", _metrics(v.metrics), snapshot_link(v.snapshot_id),
                     esc(when(v.created_at)), esc("; ".join(gate.get("reasons") or []))])
    return rows


HEAD = ["version", "gate", "aliases", "metrics", "snapshot", "created", "gate reasons"]


def models_page(store: Store) -> Page:
    versions = list_models(store)
    names = sorted({v.name for v in versions})
    body = [f'<h1>Models</h1><p class="meta">{len(names)} model(s), {len(versions)} version(s).</p>']
    if not names:
        body.append('<p class="meta">no model versions registered yet</p>')
    for name in names:
        body.append(f"<h2>{link(url('models', name), name)}</h2>"
                    + table(HEAD, _version_rows(store, [v for v in versions if v.name == name]), "versions"))
    return Page("Models", "".join(body))


def model_page(store: Store, name: str) -> Page:
    versions = list_models(store, name)
    if not versions:
        raise NotFound(f"model {name!r} not found")
    with store.metadata.read() as conn:
        aliases = conn.execute("SELECT alias, model_id, updated_at FROM aliases WHERE name = ? ORDER BY alias",
                               (name,)).fetchall()
    body = [f'<h1>Model <span id="model-name">{esc(name)}</span></h1><h2>Versions</h2>',
            table(HEAD, _version_rows(store, versions), "versions"),
            "<h2>Aliases</h2>" + table(["alias", "version", "since"],
                                       [[esc(a[0]), model_link(a[1]), esc(when(a[2]))] for a in aliases], "aliases",
                                       empty="no aliases"),
            "<h2>Alias history</h2>" + table(
                ["when", "alias", "from", "to", "reason"],
                [[esc(when(h["ts"])), esc(h["alias"]), model_link(h["from_model"]) if h["from_model"] else "-",
                  model_link(h["to_model"]), esc(h["reason"] or "")] for h in alias_history(store, name)],
                "history", empty="no alias moves recorded")]
    return Page(f"Model {name}", "".join(body))


def _node(kind: str, title: str, detail: str) -> str:
    return (f'<div class="node" data-kind="{esc(kind)}"><strong>{esc(kind)}</strong><br>{title}<br>'
            f"<small>{detail}</small></div>")


def version_page(store: Store, name: str, version: str) -> Page:
    number = version[1:] if version.startswith("v") else version
    model_id = f"{name}:v{number}"
    if not number.isdigit():
        raise NotFound(f"model version {name}:{version} not found")
    try:
        info = lineage_of(store, model_id)
    except NotFound:
        raise NotFound(f"model version {model_id!r} not found") from None
    v = next(m for m in list_models(store, name) if m.id == model_id)
    m = info["model"]
    code, data = info["code"], info["data"]
    code_text = (f"git {str(code['git_commit'])[:12]}" + (" (uncommitted changes)" if code.get("dirty") else "")
                 if "git_commit" in code else f"raymlops {code.get('package_version', '?')}")
    run = info.get("run_id")
    arrow = '<span class="arrow"> → </span>'
    deployments = "<br>".join(esc(f"{d['deployment']} at {d['endpoint'] or '-'} as {d['role']} ({when(d['ts'])})")
                              for d in info["deployments"]) or "none recorded"
    graph = arrow.join([
        _node("code", esc(code_text), f"config {esc(str(info['config_hash'])[:12])}, seed {esc(info['seed'])}"
              + (f", run {link(url('runs', run), run)}" if run else "")),
        _node("data", snapshot_link(data["snapshot_id"]),
              esc(f"{data.get('rows', '?')} rows from {data.get('source', '?')}") + (
                  f' <span class="bad">{esc(data["problem"])}</span>' if data.get("problem") else "")),
        _node("model", esc(m["id"]), esc(f"gate {m['gate']}, aliases {', '.join(m['aliases']) or '-'}")),
        _node("deployments", esc(f"{len(info['deployments'])} recorded"), deployments)])
    gate = v.gate
    facts = [("id", f'<code id="model-id">{esc(model_id)}</code>'), ("status", badge(v.status)),
             ("gate", badge(gate.get("status"))), ("gate reasons", esc("; ".join(gate.get("reasons") or []) or "-")),
             ("created", esc(when(v.created_at))), ("artifact sha256", f"<code>{esc(v.artifact_sha256)}</code>"),
             ("aliases", esc(", ".join(m["aliases"]) or "-")), ("model", link(url("models", name), name))]
    metrics = v.metrics
    body = [f"<h1>Model version {esc(model_id)}</h1>", kv(facts), '<h2>Lineage</h2><div id="lineage">', graph, "</div>",
            "<h2>Metrics</h2>" + table(["metric", "value"], [[esc(k), num(val)] for k, val in metrics.items()
                                                           if not isinstance(val, (dict, list))], "metrics"),
            "<h2>Packages</h2>" + table(["package", "version"], [[esc(k), esc(val)] for k, val in
                                                              (info.get("packages") or {}).items()], "packages")]
    reproduced = [r for r in audit.records(store.metadata, action="model.", id=model_id)
                  if r.action.startswith("model.reproduc")]
    body.append("<h2>Reproduce results</h2>" + table(
        ["when", "result", "details"],
        [[esc(when(r.ts)), esc(r.action), f"<code>{esc(json.dumps(r.record.get('how') or {}, default=str))}</code>"]
         for r in reproduced], "reproduce",
        empty=f"none recorded (raymlops reproduce {model_id} re-trains it and compares)"))
    return Page(f"Model {model_id}", "".join(body))
