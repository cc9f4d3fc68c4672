"""Pages of data snapshots: the list, and one snapshot with its lineage (parent, sources,
transform hash), schema, per-column profile with histograms, validation counts, recorded drift
checks, and a drift check against any other snapshot (``?against=<id, prefix or tag>``).

The check runs the engine of ``raymlops snapshot diff`` (the profiles' check, then every column
re-tested exactly on both snapshots' rows: :func:`raymlops.data.drift.exact_report`; the stored
result when ``snapshot diff`` recorded one) without recording anything: the UI is read-only.
Plots of the drifted columns are matplotlib's, drawn
from both snapshots' rows by :mod:`raymlops.monitor.histograms` and :mod:`raymlops.monitor.plots`.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from raymlops.data.drift import exact_report, list_checks, load_check
from raymlops.data.schema import column_array, schema_changes
from raymlops.data.snapshot import list_snapshots, load_manifest, resolve_snapshot, snapshot_info
from raymlops.data.snapshot_read import load_profile, read_snapshot
from raymlops.exceptions import NotFound
from raymlops.monitor.histograms import rows_histograms
from raymlops.monitor.plots import histogram_svg
from raymlops.stats.check import DriftReport, DriftSettings, check
from raymlops.stats.profile import ColumnProfile
from raymlops.store.home import Store
from raymlops.ui.page import BadParam, Page, bars_svg, esc, fmt, kv, link, num, table, url, when

MAX_PLOTS = 6


def _short(snap_id: str | None) -> str:
    return "-" if not snap_id else link(url("snapshots", snap_id), snap_id[:12])


def snapshots_page(store: Store) -> Page:
    snaps = list_snapshots(store)
    rows = [[link(url("snapshots", s["id"]), s["id"][:12]), esc(when(s["created_at"])), num(s["rows"]),
             num(s["bytes"]), esc(", ".join(s["tags"]) or "-"), esc(s["kind"]), _short(s["parent"]), esc(s["source"])]
            for s in reversed(snaps)]
    body = (f'<h1>Snapshots</h1><p class="meta">{len(snaps)} snapshot(s), newest first.</p>'
            + table(["snapshot", "created", "rows", "bytes", "tags", "kind", "parent", "source"], rows, "snapshots",
                    empty="no snapshots yet (raymlops snapshot create --source URI)"))
    return Page("Snapshots", body)


def _column_hist(c: ColumnProfile, key: str) -> str:
    if c.categories:
        top = sorted(c.categories.items(), key=lambda kv: (-kv[1], str(kv[0])))[:30]
        return bars_svg([str(k) for k, _ in top], [float(v) for _, v in top], f"{c.name}: top categories", key)
    counts = np.asarray(c.counts, dtype=np.float64)
    edges = np.asarray(c.edges, dtype=np.float64)
    if counts.size == 0 or counts.sum() == 0:
        return "-"
    # the fine bins (len(edges) + 1 intervals from min to max, equal-frequency-ish) redrawn as 30
    # equal-width bars: the cumulative count interpolated at the bars' edges
    lo = float(c.min) if c.min is not None else float(edges[0]) if edges.size else 0.0
    hi = float(c.max) if c.max is not None else float(edges[-1]) if edges.size else 0.0
    bounds = np.maximum.accumulate(np.concatenate([[lo], edges, [hi]]))
    cum = np.concatenate([[0.0], np.cumsum(counts)])
    if hi <= lo:
        return bars_svg([f"{lo:.4g}"], [float(counts.sum())], f"{c.name}: histogram", key)
    bar_edges = np.linspace(lo, hi, 31)
    values = np.diff(np.interp(bar_edges, bounds, cum)).tolist()
    labels = [f"{bar_edges[i]:.4g} to {bar_edges[i + 1]:.4g}" for i in range(30)]
    # the profile keeps counts per quantile bin, not per bar: a bar's count is an estimate (a bar
    # within a bin gets its share of that bin's rows, so it reads fractional, or above 0 where no row is)
    return bars_svg(labels, values, f"{c.name}: histogram, estimated from the profile's quantile bins", key,
                    note=" rows (estimated)")


def snapshot_page(store: Store, snap_ref: str, against: str | None) -> Page:
    try:
        snap_id = resolve_snapshot(store, snap_ref)
    except NotFound:
        raise NotFound(f"snapshot {snap_ref!r} not found") from None
    against_id = None
    if against is not None:
        try:
            against_id = resolve_snapshot(store, against)
        except NotFound as exc:
            raise BadParam("against", against, f"a snapshot id, prefix or tag ({exc})") from None
    info = snapshot_info(store, snap_id)
    manifest = load_manifest(store, snap_id)
    facts = [("id", f'<code id="snapshot-id">{esc(snap_id)}</code>'), ("kind", esc(info.kind)),
             ("created", esc(when(info.created_at))), ("rows", fmt(info.rows)), ("bytes", fmt(info.bytes)),
             ("tags", esc(", ".join(info.tags) or "-")), ("parent", _short(info.parent)),
             ("sources", "<br>".join(esc(s) for s in info.sources) or "-"),
             ("transform hash", f"<code>{esc(info.transform_hash or '-')}</code>")]
    transforms = manifest.get("transforms") or []
    if transforms:
        facts.append(("transforms", f"<code>{esc(json.dumps(transforms, default=str))}</code>"))
    body = [f"<h1>Snapshot {esc(snap_id[:12])}</h1>", kv(facts)]
    validation = manifest.get("validation")
    body.append("<h2>Validation</h2>")
    if validation:
        body.append(kv([(k.replace("_", " "), _short(v) if k == "quarantine_snapshot" else fmt(v))
                        for k, v in validation.items() if not isinstance(v, (dict, list))]))
    else:
        body.append('<p class="meta">no validation recorded</p>')
    profile = load_profile(store, snap_id)
    summary = (manifest.get("profile") or {}).get("columns", {})
    rows = []
    for i, col in enumerate(manifest["schema"]):
        p = summary.get(col["name"], {})
        hist = _column_hist(profile.columns[col["name"]], f"c{i}") if col["name"] in profile.columns \
            else "-"
        rows.append([esc(col["name"]), esc(col["type"]), esc(p.get("kind", "-")), num(p.get("nulls")),
                     num(col.get("min", p.get("min"))), num(col.get("max", p.get("max"))), num(p.get("mean")),
                     num(p.get("std")), esc(p.get("distinct", "")), hist])
    body.append("<h2>Schema and profile</h2>" + table(
        ["column", "type", "kind", "nulls", "min", "max", "mean", "std", "distinct", "histogram"], rows, "profile"))
    checks = list_checks(store, snap_id)
    body.append("<h2>Recorded drift checks</h2>" + table(
        ["against", "when", "drifted", "tested", "dataset drift"],
        [[link(url("snapshots", snap_id), ch["reference"][:12], against=ch["reference"]), esc(when(ch["created_at"])),
          num(ch["drifted"]), num(ch["tested"]), esc("yes" if ch["dataset_drift"] else "no")] for ch in checks],
        "checks", empty="none recorded (raymlops snapshot diff A B records one)"))
    others = [s for s in list_snapshots(store) if s["id"] != snap_id]
    options = "".join(f'<option value="{esc(s["id"])}"{" selected" if s["id"] == against_id else ""}>'
                      f'{esc(s["id"][:12])} ({esc(", ".join(s["tags"]) or s["source"])})</option>' for s in others)
    body.append(f'<h2>Drift against another snapshot</h2><form method="get" action="{esc(url("snapshots", snap_id))}">'
                f'<label>reference <select name="against">{options}</select></label>'
                '<button type="submit">check</button></form>' if others else
                '<h2>Drift against another snapshot</h2><p class="meta">no other snapshot to compare with</p>')
    if against_id is not None:
        body.append(_drift_section(store, snap_id, against_id))
    return Page(f"Snapshot {snap_id[:12]}", "".join(body))


def _report(store: Store, snap_id: str, ref_id: str) -> tuple[DriftReport, bool]:
    stored = load_check(store, snap_id, ref_id, DriftSettings())
    if stored is not None:
        return stored, True
    current, reference = load_profile(store, snap_id), load_profile(store, ref_id)
    report = check(current, reference, DriftSettings())
    return exact_report(report, read_snapshot(store, ref_id)[1], read_snapshot(store, snap_id)[1]), False


def _drift_section(store: Store, snap_id: str, ref_id: str) -> str:
    report, stored = _report(store, snap_id, ref_id)
    changes = schema_changes(snapshot_info(store, ref_id).schema, snapshot_info(store, snap_id).schema)
    verdict = "DRIFT" if report.dataset_drift else "no dataset drift"
    note = ("the result recorded by raymlops snapshot diff" if stored else
            "computed now with the exact tests on both snapshots' rows, not recorded "
            "(raymlops snapshot diff records it)")
    out = [f'<div id="drift" class="note {"bad" if report.dataset_drift else "ok"}" '
           f'data-against="{esc(ref_id)}" data-drift="{str(report.dataset_drift).lower()}">'
           f"<strong>{verdict}</strong> against {_short(ref_id)}: {esc(report.summary())}. "
           f"Schema: {esc('; '.join(changes) or 'unchanged')}. <span class=\"meta\">{esc(note)}.</span></div>"]
    rows = [[esc(c.column), esc(c.kind), esc(c.test or "-"), num(c.score), num(c.threshold), num(c.p_adjusted),
             f'<span class="{"bad" if c.drifted else "ok"}">{"DRIFT" if c.drifted else "no"}</span>',
             esc((c.note or "") + (" (approximate)" if c.approximate else ""))] for c in report.columns]
    out.append(table(["column", "kind", "test", "score", "threshold", "adjusted p", "drift", "note"], rows, "drift"))
    drifted = [c.column for c in report.columns if c.drifted][:MAX_PLOTS]
    if drifted:
        kinds = {c.column: c.kind for c in report.columns if c.column in drifted}
        _, ref_table = read_snapshot(store, ref_id)
        _, cur_table = read_snapshot(store, snap_id)
        hists = rows_histograms(_arrays(ref_table, drifted), _arrays(cur_table, drifted), kinds)
        out.append("<h3>Drifted columns: reference vs this snapshot</h3>")
        out += [f'<figure class="plot" data-column="{esc(name)}">{histogram_svg(h, name, k)}</figure>'
                for k, (name, h) in enumerate(hists.items())]
    return "".join(out)


def _arrays(table: Any, names: list[str]) -> dict[str, Any]:
    return {n: column_array(table.column(n)) for n in names if n in table.column_names}
