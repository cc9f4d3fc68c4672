"""A self-contained HTML drift report: one file, no scripts, no external references.

The page shows the dataset verdict; a score table of every feature (test, statistic, p-value,
adjusted p-value, PSI, verdict); for every drifted feature (or, when none drifted, the ``top``
features by p-value) the reference vs current histogram, drawn by matplotlib as inline SVG;
and, when the data is sliced, a verdict per slice. The input is a *report model*, plain JSON:

- :func:`offline_model` from :func:`raymlops.monitor.offline.check` on two datasets; given the
  two tables too, the plots are drawn from their rows (:func:`~raymlops.monitor.histograms.rows_histograms`:
  the union of both ranges, bars on integer values, the union of categories), else from the
  check's binned state;
- :func:`live_model` from the ``status()`` of a running monitor actor (the open window, or the
  last closed one when the open window is still empty), drawn from its binned state.

Each plot is a ``<figure class="plot">`` whose ``data-reference`` / ``data-current`` hold the
main bars' heights it draws, named by ``data-labels`` (``data-reference-extra`` /
``data-current-extra`` those of the bars beside the main axis, named by ``data-extra-labels``),
and whose bars are SVG groups ``ref-<k>-<i>`` / ``cur-<k>-<i>`` (``refx-<k>-<j>`` /
``curx-<k>-<j>``).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import os
from pathlib import Path
from typing import Any

from raymlops.exceptions import ValidationError
from raymlops.monitor.histograms import heights, rows_histograms
from raymlops.monitor.plots import histogram_svg

__all__ = ["live_model", "offline_model", "plotted_features", "render_html", "write_report"]

_STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:70rem;color:#222}
h1{margin-bottom:.2rem} .meta{color:#666;margin-top:0}
.verdict{padding:.6rem 1rem;border-radius:.4rem;margin:1rem 0}
.verdict.drift{background:#fde2e1;border:1px solid #e0827c}
.verdict.stable{background:#e3f4e5;border:1px solid #7cbf86}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
th,td{padding:.2rem .6rem;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child{text-align:left} tr.drift td{background:#fff0ef;font-weight:600}
figure.plot{margin:1.5rem 0;padding:.5rem;border:1px solid #e5e5e5;border-radius:.4rem}
figure.plot svg{max-width:100%;height:auto} figcaption table{margin:.3rem 0}
p.binning{color:#555;font-size:.85rem;margin:.2rem 0}
"""


def offline_model(result: dict[str, Any], reference: str, current: str, reference_data: Any = None,
                  current_data: Any = None) -> dict[str, Any]:
    """The report model of an offline check. With ``reference_data`` and ``current_data`` (the
    two tables the check compared: DataFrames or mappings of arrays) every plot is drawn from
    their rows; without them from the check's state (``check(..., histograms=True)``)."""
    hists = dict(result.get("histograms") or {})
    if reference_data is not None and current_data is not None:
        kinds = {name: str(f.get("kind") or "numeric") for name, f in result["features"].items()}
        hists.update(rows_histograms(reference_data, current_data, kinds))
    elif "histograms" not in result:
        raise ValidationError("the check result has no histograms: call check(..., histograms=True), or pass "
                              "both tables")
    return {"title": "Drift report", "source": "offline check", "reference": reference, "current": current,
            "rows": dict(result["rows"]), "drift": bool(result["drift"]) if result.get("judged", True) else None,
            "share_drifted": result["share_drifted"],
            "drifted_features": list(result["drifted_features"]), "correction": result["correction"],
            "features": result["features"], "slices": result["slices"], "histograms": hists,
            "not_tested": dict(result.get("not_tested") or {}), "anomalies": dict(result.get("anomalies") or {})}


def live_model(status: dict[str, Any], route: str) -> dict[str, Any]:
    """The report model of a live monitor's ``status()``: its open window once it has the rows to be
    judged (``min_rows``), else its last closed one (the window an alert is about: a 5-row open
    window read "no dataset drift" seconds after a critical drift alert), else the open one, not judged."""
    window, last = status.get("window") or {}, status.get("last_window") or {}
    has_open = bool(window.get("verdict") and window.get("histograms"))
    if has_open and ((window["verdict"].get("overall") or {}).get("judged", True) or not last.get("histograms")):
        verdict, hists, which = window["verdict"], window["histograms"], f"open window #{window['index']}"
    elif last.get("histograms"):
        verdict, hists, which = last, last["histograms"], f"last closed window #{last['index']}"
        if has_open:
            which += f" (the open window #{window['index']} has {window['verdict']['rows']} rows: too few to judge)"
    else:
        raise ValidationError(f"the monitor of route {route!r} has no rows in its open or last window yet: "
                              "nothing to report")
    overall = verdict["overall"]
    judged = overall.get("judged", True)

    def features(columns: list[dict[str, Any]], judged: bool = True) -> dict[str, Any]:
        return {c["column"]: c if judged else {**c, "drift": None} for c in columns}

    first = next(iter(hists.values()))
    return {"title": f"Drift report: {route}", "source": f"live monitor of route {route!r}",
            "reference": "the monitor's reference", "current": which,
            "rows": {"reference": first["reference_rows"], "current": verdict["rows"]},
            "drift": bool(overall["dataset_drift"]) if judged else None,
            "share_drifted": overall["share_drifted"],
            "drifted_features": list(overall["drifted"]), "correction": verdict["correction"],
            "features": features(overall["columns"], judged),
            "slices": {s["name"]: {"drift": bool(s["dataset_drift"] or s["drifted"]), "rows": s["rows"],
                                   "judged": s["judged"], "drifted_features": list(s["drifted"]),
                                   "features": features(s["columns"])} for s in verdict.get("slices") or []},
            "histograms": hists, "performance": _performance(status.get("performance") or {})}


def _performance(perf: dict[str, Any]) -> dict[str, Any] | None:
    """Per slice: accuracy / ROC AUC estimated before labels (CBPE, last estimation window) beside
    the realised ones (last label window); None when there is neither."""
    est = (perf.get("estimated") or {}).get("last_window") or {}
    real = perf.get("last_window") or {}
    rows: dict[str, dict[str, Any]] = {}
    names = {"accuracy": "accuracy", "roc_auc": "roc_auc", "auc": "roc_auc"}  # the label window says auc
    for source, part in (("estimated", est), ("realised", real)):
        for name, m in [("all", part.get("overall") or {}), *(part.get("slices") or {}).items()]:
            for metric, shown in names.items():
                if metric in m:
                    rows.setdefault(name, {})[f"{source}_{shown}"] = m[metric]
    return rows or None


def plotted_features(model: dict[str, Any], top: int = 5) -> list[str]:
    """The drifted features, or (none drifted) the ``top`` features by p-value, then PSI."""
    feats = model["features"]
    drifted = [n for n, f in feats.items() if f["drift"] and n in model["histograms"]]
    if drifted:
        return drifted

    def score(name: str) -> tuple[float, float]:
        f = feats[name]
        p, psi = f.get("p_value"), f.get("psi")
        return (1.0 if p is None else float(p), -(0.0 if psi is None else float(psi)))

    return sorted((n for n in feats if n in model["histograms"]), key=score)[:max(int(top), 0)]


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    if isinstance(v, bool):
        return "DRIFT" if v else "no drift"
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def _score_rows(features: dict[str, Any], names: list[str] | None = None) -> str:
    rows = []
    for name in names if names is not None else list(features):
        f = features[name]
        rows.append(f'<tr class="{"drift" if f["drift"] else "stable"}" data-feature="{html.escape(name)}">'
                    f"<td>{html.escape(name)}</td><td>{_fmt(f.get('kind'))}</td><td>{_fmt(f['test'])}</td>"
                    f"<td>{_fmt(f['statistic'])}</td><td>{_fmt(f['p_value'])}</td>"
                    f"<td>{_fmt(f.get('adjusted_p_value'))}</td><td>{_fmt(f.get('psi'))}</td>"
                    f"<td>{'not judged' if f['drift'] is None else _fmt(bool(f['drift']))}</td></tr>")
    head = ("<tr><th>feature</th><th>kind</th><th>test</th><th>statistic</th><th>p-value</th>"
            "<th>adjusted p-value</th><th>PSI</th><th>verdict</th></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _figure(model: dict[str, Any], name: str, key: int) -> str:
    hist = model["histograms"][name]
    f = model["features"][name]
    h = heights(hist)
    svg = histogram_svg(hist, f"{name}: {f['test']} {_fmt(f['statistic'])}, p = {_fmt(f['p_value'])}", key)

    def data(v: Any) -> str:
        return html.escape(json.dumps(v))

    attrs = (f'class="plot" id="plot-{key}" data-key="{key}" data-feature="{html.escape(name)}" '
             f'data-kind="{hist["kind"]}" data-source="{hist["source"]}" data-drift="{str(bool(f["drift"])).lower()}" '
             f'data-reference="{data(h["reference"])}" data-current="{data(h["current"])}" '
             f'data-reference-extra="{data(h["reference_extra"])}" data-current-extra="{data(h["current_extra"])}" '
             f'data-labels="{data(hist["labels"])}" data-extra-labels="{data(hist["extra_labels"])}"')
    note = f'<p class="binning">{html.escape(hist["binning"])}.{_outside_note(hist)}</p>'
    return (f"<figure {attrs}>{svg}<figcaption>{note}{_score_rows(model['features'], [name])}</figcaption>"
            "</figure>")


def _outside_note(hist: dict[str, Any]) -> str:
    """One sentence on rows outside the reference (range or categories), per dataset."""
    parts = []
    for which in ("reference", "current"):
        o, rows = hist["outside"][which], max(int(hist[f"{which}_rows"]), 1)
        bits = [f"{o[k]:,} {label} ({o[k] / rows:.1%})" for k, label in (
            ("below", "below the reference range"), ("above", "above it"), ("unseen", "of new categories"),
            ("missing", "missing")) if o[k]]
        if bits:
            parts.append(f"{which}: {', '.join(bits)}")
    return (" Rows outside the reference: " + "; ".join(parts) + ".") if parts else ""


def _slices(slices: dict[str, Any]) -> str:
    if not slices:
        return ""
    rows = []
    for name, s in slices.items():
        drifted = list(s["drifted_features"])
        rows.append(f'<tr class="{"drift" if s["drift"] else "stable"}" data-slice="{html.escape(name)}">'
                    f"<td>{html.escape(name)}</td><td>{s['rows']:,}</td>"
                    f"<td>{'yes' if s.get('judged', True) else 'too few rows'}</td><td>{_fmt(bool(s['drift']))}</td>"
                    f"<td>{html.escape(', '.join(drifted)) or '-'}</td></tr>")
    detail = "".join(f"<h3>slice {html.escape(name)}</h3>{_score_rows(s['features'], list(s['drifted_features']))}"
                     for name, s in slices.items() if s["drifted_features"])
    return ('<section id="slices"><h2>Slices</h2><table><tr><th>slice</th><th>rows</th><th>judged</th>'
            f"<th>verdict</th><th>drifted features</th></tr>{''.join(rows)}</table>{detail}</section>")


def render_html(model: dict[str, Any], top: int = 5) -> str:
    """The whole page (see the module docstring)."""
    names = plotted_features(model, top)
    drifted = model["drifted_features"]
    n = len([k for k in model["features"] if not k.startswith("__")])
    cls = "unjudged" if model["drift"] is None else "drift" if model["drift"] else "stable"
    said = ("not judged (too few rows: the monitor's min_rows)" if model["drift"] is None
            else "DRIFT" if model["drift"] else "no dataset drift")
    verdict = (f'<section id="verdict" class="verdict {cls}" data-drift="{str(model["drift"]).lower()}">'
               f"<h2>Dataset verdict: {said}</h2>"
               f"<p>{len(drifted)} of {n} features drifted ({float(model['share_drifted']):.0%})"
               f"{': ' + html.escape(', '.join(drifted)) if drifted else ''}. "
               f"Multiple-testing correction: {html.escape(str(model['correction']))}.</p>"
               + "".join(f'<p class="not-tested">{html.escape(name)}: not tested ({html.escape(why)}).</p>'
                         for name, why in (model.get("not_tested") or {}).items())
               + "".join(f'<p class="anomaly">data quality: {html.escape(name)}: {html.escape("; ".join(found))}</p>'
                         for name, found in (model.get("anomalies") or {}).items())
               + "</section>")
    heading = ("Drifted features" if model["drifted_features"]
               else f"No feature drifted: the top {len(names)} by p-value")
    plots = "".join(_figure(model, name, k) for k, name in enumerate(names))
    rows = model["rows"]
    ref_rows = "" if rows.get("reference") is None else f" ({rows['reference']:,} rows)"
    meta = (f"{html.escape(model['source'])}: reference {html.escape(model['reference'])}{ref_rows}, "
            f"current {html.escape(model['current'])} ({rows['current']:,} rows). Generated "
            f"{dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}.")
    title = html.escape(model["title"])
    return ("<!DOCTYPE html>\n"
            f'<html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>{_STYLE}</style></head>'
            f'<body><h1>{title}</h1><p class="meta">{meta}</p>{verdict}'
            f'<section id="features"><h2>Scores of every feature</h2>{_score_rows(model["features"])}</section>'
            f'<section id="plots"><h2>{heading}</h2>{plots}</section>{_slices(model["slices"])}'
            f'{_performance_html(model.get("performance"))}</body></html>\n')


def _performance_html(rows: dict[str, dict[str, Any]] | None) -> str:
    if not rows:
        return ""
    cols = ("estimated_accuracy", "realised_accuracy", "estimated_roc_auc", "realised_roc_auc")
    body = "".join(f'<tr data-slice="{html.escape(name)}"><td>{html.escape(name)}</td>'
                   + "".join(f"<td>{_fmt(r.get(c))}</td>" for c in cols) + "</tr>" for name, r in rows.items())
    return ('<section id="performance"><h2>Model performance</h2><p>Estimated from calibrated probabilities before '
            "labels arrive (CBPE, last estimation window) beside the realised values (last label window).</p>"
            "<table><tr><th>slice</th>" + "".join(f"<th>{c.replace('_', ' ')}</th>" for c in cols)
            + f"</tr>{body}</table></section>")


def check_out(out: str | Path) -> Path:
    """``--out`` as a path to write a report to: its folder exists, and it is no folder, nor a file
    that holds anything but an HTML page (an earlier report is replaced; ``--out .raymlops/metadata.db``
    replaced the registry with a page, and a model artifact or any file of the user's the same)."""
    path = Path(out)
    if not path.parent.is_dir():
        raise ValidationError(f"--out {out}: folder {path.parent} does not exist")
    if path.is_dir():
        raise ValidationError(f"--out {out}: is a folder, expected a file name such as report.html")
    if path.exists():
        try:
            with path.open("rb") as f:
                head = f.read(512).lstrip().lower()
        except OSError as exc:
            raise ValidationError(f"--out {out}: cannot read what is there: {exc.strerror or exc}") from None
        if not (head.startswith(b"<!doctype html") or head.startswith(b"<html")) and path.stat().st_size > 0:
            raise ValidationError(f"--out {out}: the file exists and is not an HTML page (a report is written "
                                  "over an earlier report only); give another file name, or remove it first")
    return path


def write_report(model: dict[str, Any], out: str | Path, top: int = 5) -> Path:
    """Render ``model`` and write it to ``out`` (:func:`check_out`), whole or not at all (a
    temporary file beside it, renamed); returns the path."""
    path = check_out(out)
    page = render_html(model, top)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ValidationError(f"--out {out}: cannot write it: {exc.strerror or exc}") from None
    return path
