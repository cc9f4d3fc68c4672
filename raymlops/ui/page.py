"""The page frame and the small HTML pieces every page of the web UI is made of.

Server-rendered HTML, escaped with :func:`html.escape` as :mod:`raymlops.monitor.report` does:
one inline stylesheet, no scripts, no external references (fonts, CDNs), so every page works
offline and prints. Bars (a run's step timeline, a column's histogram) are plain SVG ``<rect>``
elements drawn here; drift plots are matplotlib's inline SVG from :mod:`raymlops.monitor.plots`.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from raymlops.exceptions import ValidationError

__all__ = ["BadParam", "Page", "bars_svg", "esc", "fmt", "kv", "link", "page", "table", "timeline_svg", "when"]

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#1f3b57;color:#fff;padding:.5rem 1.5rem;display:flex;gap:1.2rem;align-items:baseline}
header a{color:#fff;text-decoration:none} header a.brand{font-weight:700;margin-right:1rem}
main{max-width:78rem;margin:1rem auto;padding:0 1.5rem 3rem}
h1{font-size:1.5rem;margin:.6rem 0 .3rem} h2{font-size:1.15rem;margin-top:1.6rem} .meta{color:#666;margin-top:0}
table{border-collapse:collapse;margin:.4rem 0 1rem;background:#fff}
th,td{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
th{background:#f0f2f5} td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1d7a35;font-weight:600} .bad{color:#b3261e;font-weight:600} .warn{color:#9a6700;font-weight:600}
.note{padding:.5rem 1rem;border-radius:.4rem;background:#eef3f8;border:1px solid #c5d5e6}
.note.bad{background:#fde2e1;border-color:#e0827c} .note.ok{background:#e3f4e5;border-color:#7cbf86}
pre{background:#fff;border:1px solid #ddd;padding:.5rem;overflow:auto;max-height:30rem;font-size:.85rem}
form{margin:.5rem 0 1rem} form label{margin-right:.8rem} input,select{font:inherit}
#lineage{display:flex;align-items:flex-start;overflow-x:auto}
.node{flex:0 1 auto;border:1px solid #999;border-radius:.4rem;padding:.4rem .7rem;
margin:.2rem;background:#fff;max-width:22rem} .arrow{font-size:1.4rem;vertical-align:middle}
svg{max-width:100%;height:auto} figure{margin:.5rem 0 1rem;background:#fff;border:1px solid #e5e5e5;padding:.3rem}
"""

NAV = (("/runs", "Runs"), ("/snapshots", "Snapshots"), ("/models", "Models"), ("/deployments", "Deployments"),
       ("/webhooks", "Webhooks"), ("/audit", "Audit"))


class BadParam(ValidationError):
    """A query parameter with a value the page cannot use (answered 400, naming the parameter)."""

    def __init__(self, name: str, value: str, expected: str) -> None:
        super().__init__(f"query parameter {name!r}: expected {expected}, found {value!r}")
        self.param = name


class Page:
    """A rendered page: title and body HTML (the frame is added by :func:`page`)."""

    def __init__(self, title: str, body: str) -> None:
        self.title = title
        self.body = body


def esc(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def fmt(v: Any) -> str:
    """A value for a table cell: floats to 4 significant digits, None as '-'."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return esc(v)


def when(ts: float | None) -> str:
    return "-" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ts)))


def link(path: str, text: Any, **query: Any) -> str:
    """``<a>`` to a page of this UI (``path`` segments already quoted with :func:`url`)."""
    q = {k: v for k, v in query.items() if v not in (None, "")}
    href = path + ("?" + urlencode(q) if q else "")
    return f'<a href="{esc(href)}">{esc(text)}</a>'


def url(*segments: Any) -> str:
    """An absolute path from segments, each quoted (ids may hold ':' or '@')."""
    return "/" + "/".join(quote(str(s), safe="") for s in segments)


def table(head: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "", empty: str = "none") -> str:
    """A table of already-escaped cells (a cell starting with ``\\x00num`` is right-aligned)."""
    body = []
    for r in rows:
        cells = "".join(f'<td class="num">{c[4:]}</td>' if c.startswith("\x00num") else f"<td>{c}</td>" for c in r)
        body.append(f"<tr>{cells}</tr>")
    if not body:
        return f'<p class="meta">{esc(empty)}</p>'
    head_html = "".join(f"<th>{esc(h)}</th>" for h in head)
    return f'<table class="{cls}"><tr>{head_html}</tr>{"".join(body)}</table>'


def num(v: Any) -> str:
    return "\x00num" + fmt(v)


def kv(pairs: Iterable[tuple[str, str]]) -> str:
    """A two-column table of label → already-escaped value."""
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{v}</td></tr>" for k, v in pairs)
    return f'<table class="kv">{rows}</table>'


def status_cls(status: str | None) -> str:
    s = (status or "").lower()
    if s in ("succeeded", "passed", "ran", "cached", "ok", "healthy", "running", "registered"):
        return "ok"
    if s in ("failed", "rejected", "interrupted", "unhealthy", "deploy_failed"):
        return "bad"
    return "warn"


def badge(status: Any) -> str:
    return f'<span class="{status_cls(str(status))}">{esc(status)}</span>'


def page(p: Page) -> str:
    nav = "".join(f'<a href="{href}">{name}</a>' for href, name in NAV)
    return ("<!DOCTYPE html>\n"
            f'<html lang="en"><head><meta charset="utf-8"><title>{esc(p.title)} · raymlops</title>'
            '<link rel="icon" href="data:,">'
            f'<style>{STYLE}</style></head><body><header><a class="brand" href="/">raymlops</a>{nav}</header>'
            f"<main>{p.body}</main></body></html>\n")


def error_page(status: int, message: str) -> str:
    title = {400: "Bad request", 404: "Not found"}.get(status, "Error")
    return page(Page(title, f'<h1>{title}</h1><p class="note bad" id="error">{esc(message)}</p>'
                            '<p><a href="/">Back to the overview</a></p>'))


# ---------------------------------------------------------------------------- SVG bars


def timeline_svg(steps: Sequence[dict[str, Any]], start: float, end: float) -> str:
    """One bar per step from its ``started_at`` to ``ended_at`` on a shared time axis."""
    span = max(end - start, 1e-6)
    width, label_w, row_h = 900, 110, 22
    height = row_h * len(steps) + 30
    colors = {"ran": "#4C72B0", "cached": "#8fb38f", "skipped": "#bbbbbb", "failed": "#c0392b",
              "interrupted": "#e67e22"}
    parts = [f'<svg id="timeline" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img">']
    plot_w = width - label_w - 80
    for i, s in enumerate(steps):
        s0 = float(s.get("started_at") or start)
        s1 = float(s.get("ended_at") or s0)
        x = label_w + (s0 - start) / span * plot_w
        w = max((s1 - s0) / span * plot_w, 1.5)
        y = i * row_h + 4
        color = colors.get(str(s.get("status")), "#DD8452")
        parts.append(f'<g class="step" data-step="{esc(s.get("name"))}"><text x="4" y="{y + 13}" font-size="12">'
                     f'{esc(s.get("name"))}</text><rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row_h - 8}" '
                     f'fill="{color}"><title>{esc(s.get("name"))}: {esc(s.get("status"))}, '
                     f'{s1 - s0:.2f}s</title></rect><text x="{x + w + 4:.1f}" y="{y + 13}" font-size="11">'
                     f'{s1 - s0:.2f}s</text></g>')
    axis_y = row_h * len(steps) + 14
    parts.append(f'<line x1="{label_w}" y1="{axis_y - 8}" x2="{label_w + plot_w}" y2="{axis_y - 8}" stroke="#888"/>'
                 f'<text x="{label_w}" y="{axis_y + 8}" font-size="11">0s</text>'
                 f'<text x="{label_w + plot_w - 30}" y="{axis_y + 8}" font-size="11">{span:.2f}s</text></svg>')
    return "".join(parts)


def bars_svg(labels: Sequence[str], values: Sequence[float], title: str, key: str, note: str = "") -> str:
    """A small bar chart (a column's histogram): one ``<rect>`` per value, label (and ``note``) on hover."""
    width, height, pad = 360, 120, 18
    n = max(len(values), 1)
    top = max([float(v) for v in values] + [1e-12])
    bw = (width - 2 * pad) / n
    parts = [f'<svg class="hist" id="hist-{esc(key)}" viewBox="0 0 {width} {height}" width="{width}" '
             f'height="{height}" role="img"><title>{esc(title)}</title>']
    for i, (lab, v) in enumerate(zip(labels, values, strict=True)):
        h = float(v) / top * (height - 2 * pad)
        parts.append(f'<rect x="{pad + i * bw:.2f}" y="{height - pad - h:.2f}" width="{max(bw - 1, 0.5):.2f}" '
                     f'height="{h:.2f}" fill="#4C72B0"><title>{esc(lab)}: {fmt(v)}{esc(note)}</title></rect>')
    first, last = (labels[0], labels[-1]) if labels else ("", "")
    parts.append(f'<text x="{pad}" y="{height - 3}" font-size="10">{esc(first)}</text>'
                 f'<text x="{width - pad}" y="{height - 3}" font-size="10" text-anchor="end">{esc(last)}</text></svg>')
    return "".join(parts)
