"""The webhooks page: the receivers (``webhooks:`` of a config, ``raymlops webhooks add``) and
every delivery (delivered / failed / dropped / queued, attempts, last status code, error), read
from ``<home>/webhooks.db`` as ``raymlops webhooks deliveries`` reads it. Secrets are never
stored, so the page shows only the name of each secret's environment variable."""

from __future__ import annotations

from raymlops.hooks import WebhookDB, list_deliveries
from raymlops.hooks.records import DB_NAME
from raymlops.store.home import Store
from raymlops.ui.page import Page, badge, esc, table, when

LIMIT = 200


def webhooks_page(store: Store) -> Page:
    if not (store.home / DB_NAME).exists():
        body = ("<h1>Webhooks</h1><p class=\"note\">no webhook set up in this home: add <code>webhooks:</code> to a "
                "pipeline config or run <code>raymlops webhooks add URL --events model.promoted</code></p>")
        return Page("Webhooks", body)
    db = WebhookDB(store.home, create=False)
    subs = db.subscriptions()
    counts = db.counts()
    deliveries = list_deliveries(store.home, limit=LIMIT)
    sub_rows = [[f'<code id="webhook-{esc(s.id)}">{esc(s.id)}</code>', esc(s.config.url),
                 esc(", ".join(s.config.events)), esc(s.config.secret_env or "(unsigned)"), esc(s.key),
                 esc(when(s.created_at))] for s in subs]
    rows = [[esc(d["seq"]), esc(when(d["created_at"])), esc(d["event_type"]), f"<code>{esc(d['event_id'])}</code>",
             esc(d["url"]), badge(d["status"]), esc(d["attempts"]), esc(d["last_status_code"] or "-"),
             esc(d["error"] or "")] for d in deliveries]
    summary = ", ".join(f"{n} {esc(k)}" for k, n in sorted(counts.items())) or "no deliveries yet"
    body = ("<h1>Webhooks</h1>"
            + "<h2>Receivers</h2>" + table(["id", "url", "events", "secret (variable)", "from", "added"], sub_rows,
                                           "receivers", empty="no receivers")
            + f'<h2>Deliveries</h2><p class="meta" id="delivery-counts">{summary} (the newest {LIMIT} shown, '
              "newest first)</p>"
            + table(["seq", "when", "event", "event id", "url", "status", "attempts", "last status", "error"], rows,
                    "deliveries", empty="no deliveries yet"))
    return Page("Webhooks", body)
