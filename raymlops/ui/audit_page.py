"""The audit page: the hash-chained log with filters (event kind, actor, time range, touched id)
and the chain's verification (:func:`raymlops.audit.verify`, what ``raymlops audit verify`` runs)."""

from __future__ import annotations

import json
from typing import Any

from raymlops import audit
from raymlops.store.home import Store
from raymlops.ui.page import BadParam, Page, esc, link, table, url, when
from raymlops.ui.runs import model_link

LIMIT = 500


def _time(name: str, text: str | None) -> float | None:
    if not text:
        return None
    try:
        return audit.parse_since(text)
    except ValueError as exc:
        raise BadParam(name, text, str(exc).split("; found")[0].removeprefix("expected ")) from None


def _ids(ids: dict[str, Any]) -> str:
    out = []
    for k, v in ids.items():
        text = str(v)
        if k in ("snapshot", "reference") and len(text) == 64:
            out.append(f"{esc(k)} {link(url('snapshots', text), text[:12])}")
        elif k == "model" and ":v" in text:
            out.append(f"{esc(k)} {model_link(text)}")
        elif k == "run":
            out.append(f"{esc(k)} {link(url('runs', text), text)}")
        else:
            out.append(esc(f"{k} {text}"))
    return "<br>".join(out) or "-"


def audit_page(store: Store, action: str | None, actor: str | None, since: str | None, until: str | None,
               id: str | None) -> Page:
    t0, t1 = _time("since", since), _time("until", until)
    ok, message = audit.verify(store.metadata)
    records = audit.records(store.metadata, action=action or None, since=t0, id=id or None, until=t1)
    if actor:
        records = [r for r in records if actor in (f"{(r.record.get('actor') or {}).get('user', '')}@"
                                                   f"{(r.record.get('actor') or {}).get('host', '')}")]
    shown = records[-LIMIT:][::-1]
    kinds = sorted({r.action for r in audit.records(store.metadata)})
    options = "".join(f'<option value="{esc(k)}"{" selected" if k == action else ""}>{esc(k)}</option>' for k in kinds)
    prefixes = sorted({k.split(".")[0] + "." for k in kinds})
    options += "".join(f'<option value="{esc(p)}"{" selected" if p == action else ""}>{esc(p)}*</option>'
                       for p in prefixes)

    def field(name: str, value: str | None, hint: str) -> str:
        return (f'<label>{name} <input name="{name}" value="{esc(value or "")}" placeholder="{esc(hint)}" '
                'size="14"></label>')

    form = ('<form method="get" action="/audit"><label>kind <select name="action"><option value="">any</option>'
            f"{options}</select></label>{field('actor', actor, 'user@host')}{field('since', since, '1h, 2026-05-01')}"
            f"{field('until', until, '2026-05-02T12:00')}{field('id', id, 'model, snapshot …')}"
            '<button type="submit">filter</button></form>')
    chain = (f'<p id="chain" class="note {"ok" if ok else "bad"}" data-ok="{str(ok).lower()}">'
             f'{esc(message if ok else "CHAIN BROKEN: " + message)}</p>')
    rows = []
    for r in shown:
        a = r.record.get("actor") or {}
        rows.append([f'<span id="seq-{r.seq}">{r.seq}</span>', esc(when(r.ts)), esc(r.action),
                     esc(f"{a.get('user', '?')}@{a.get('host', '?')}"), _ids(r.record.get("ids") or {}),
                     esc(r.record.get("reason") or ""), f"<code>{esc(json.dumps(r.record.get('how') or {}))}</code>",
                     f"<code>{esc(r.hash[:12])}</code>"])
    more = f" (the newest {LIMIT} shown)" if len(records) > LIMIT else ""
    body = (f"<h1>Audit log</h1>{chain}{form}<p class=\"meta\">{len(records)} record(s) match{more}, newest first. "
            f"{link('/audit', 'clear the filters')}</p>"
            + table(["seq", "when", "action", "actor", "ids", "reason", "how", "hash"], rows, "audit",
                    empty="no audit records match"))
    return Page("Audit", body)
