"""Reference vs current plot data drawn by matplotlib as inline SVG (no JavaScript, no files).

Draws what :mod:`raymlops.monitor.histograms` computes, nothing else: the main axis holds the
bars of both datasets (numeric: densities on the bins' real edges, the reference filled, the
current outlined; integer and categorical: shares side by side), each dataset normalised on its
own; the region outside the reference's range is shaded, and bars of categories the reference
lacks are hatched; rows that have no place on the main axis (missing values, and from a
monitor's state the rows below or above the reference range) are bars of their own on a small
axis beside it, as shares of rows.

Each bar is an SVG group with a stable id (``ref-<k>-<i>`` / ``cur-<k>-<i>`` for main bar ``i``
of plot ``k``, ``refx-<k>-<j>`` / ``curx-<k>-<j>`` for extra bar ``j``) and
:func:`plotted_values` returns the heights drawn, so a reader (or a test) can match every bar to
its value. Uses matplotlib's object API (no pyplot state): safe in threads, needs no display.
"""

from __future__ import annotations

import io
import re
from typing import Any

import numpy as np

from raymlops.monitor.histograms import heights

__all__ = ["histogram_svg", "plotted_values"]

REF_COLOR, CUR_COLOR, OUT_COLOR = "#4C72B0", "#DD8452", "#7f7f7f"


def plotted_values(hist: dict[str, Any]) -> tuple[list[float], list[float]]:
    """The main bars' heights for ``hist``: densities for numeric columns (count / (rows *
    width)), shares of rows for integer and categorical ones (see :func:`heights`)."""
    h = heights(hist)
    return h["reference"], h["current"]


def _outside_share(hist: dict[str, Any], which: str) -> str:
    o = hist["outside"][which]
    n = o["below"] + o["above"] + o["unseen"]
    rows = hist[f"{which}_rows"]
    if not n or not rows:
        return ""
    what = "of a category the reference lacks" if hist["kind"] == "categorical" else "outside the reference range"
    return f"; {n / rows:.1%} {what}"


def _shade(ax: Any, x0: float, x1: float, label: str | None) -> None:
    ax.axvspan(x0, x1, facecolor=OUT_COLOR, alpha=0.14, edgecolor="none", zorder=0, label=label)


def _main_axis(ax: Any, hist: dict[str, Any], ref_h: list[float], cur_h: list[float]) -> tuple[Any, Any]:
    kind = hist["kind"]
    n_ref, n_cur = hist["reference_rows"], hist["current_rows"]
    ref_label = f"reference ({n_ref:,} rows{_outside_share(hist, 'reference')})"
    cur_label = f"current ({n_cur:,} rows{_outside_share(hist, 'current')})"
    rng = hist.get("reference_range")
    if kind == "numeric":
        edges = np.asarray(hist["edges"], dtype=np.float64)
        left, width = edges[:-1], np.diff(edges)
        ref_bars = ax.bar(left, ref_h, width=width, align="edge", color=REF_COLOR, alpha=0.45, edgecolor=REF_COLOR,
                          linewidth=0.6, label=ref_label)
        cur_bars = ax.bar(left, cur_h, width=width, align="edge", fill=False, edgecolor=CUR_COLOR, linewidth=1.6,
                          label=cur_label)
        ax.set_ylabel("density (area 1 per dataset)", fontsize=8)
        if rng is not None and hist["source"] == "rows":
            first = True
            if edges[0] < rng[0]:
                _shade(ax, edges[0], rng[0], "outside the reference range")
                first = False
            if edges[-1] > rng[1]:
                _shade(ax, rng[1], edges[-1], "outside the reference range" if first else None)
        ax.set_xlim(edges[0], edges[-1])
    elif kind == "integer":
        values = np.asarray(hist["values"], dtype=np.float64)
        step = float(np.diff(values).min()) if values.size > 1 else 1.0
        w = 0.8 * step
        ref_bars = ax.bar(values - w / 4, ref_h, width=w / 2, color=REF_COLOR, alpha=0.75, label=ref_label)
        cur_bars = ax.bar(values + w / 4, cur_h, width=w / 2, color=CUR_COLOR, alpha=0.9, label=cur_label)
        lo_x, hi_x = values[0] - step / 2, values[-1] + step / 2
        if rng is not None:
            first = True
            if values[0] < rng[0]:
                _shade(ax, lo_x, rng[0] - step / 2, "outside the reference range")
                first = False
            if values[-1] > rng[1]:
                _shade(ax, rng[1] + step / 2, hi_x, "outside the reference range" if first else None)
        ax.set_xlim(lo_x, hi_x)
        if values.size <= 20:
            ax.set_xticks(values, hist["labels"], fontsize=8)
        ax.set_ylabel("share of rows", fontsize=8)
    else:
        x = np.arange(len(hist["labels"]))
        hatch = ["" if inside else "//" for inside in hist["inside"]]
        ref_bars = ax.bar(x - 0.2, ref_h, width=0.4, color=REF_COLOR, alpha=0.75, label=ref_label)
        cur_bars = ax.bar(x + 0.2, cur_h, width=0.4, color=CUR_COLOR, alpha=0.9, label=cur_label)
        for bars in (ref_bars, cur_bars):
            for bar, h in zip(bars, hatch, strict=True):
                if h:
                    bar.set_hatch(h)
        tilt = len(x) > 6
        ax.set_xticks(x, [str(s)[:16] for s in hist["labels"]], rotation=30 if tilt else 0,
                      ha="right" if tilt else "center", fontsize=8)
        ax.set_ylabel("share of rows", fontsize=8)
    return ref_bars, cur_bars


def _extra_axis(ax: Any, hist: dict[str, Any], ref_x: list[float], cur_x: list[float]) -> tuple[Any, Any]:
    x = np.arange(len(hist["extra_labels"]))
    ref_bars = ax.bar(x - 0.2, ref_x, width=0.4, color=REF_COLOR, alpha=0.75, hatch="xx", edgecolor="white")
    cur_bars = ax.bar(x + 0.2, cur_x, width=0.4, color=CUR_COLOR, alpha=0.9, hatch="xx", edgecolor="white")
    ax.set_xticks(x, [lab.replace(" reference ", "\nref. ").replace(" ", "\n", 1) if lab != "missing" else lab
                      for lab in hist["extra_labels"]], fontsize=7)
    ax.set_ylim(0, max(0.05, *ref_x, *cur_x) * 1.15)
    ax.set_ylabel("share of rows", fontsize=8)
    ax.set_title("not on the main axis", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return ref_bars, cur_bars


def histogram_svg(hist: dict[str, Any], title: str, key: int) -> str:
    """An ``<svg>`` element (no XML prolog) with the reference and current bars of ``hist``."""
    import matplotlib
    from matplotlib.figure import Figure

    h = heights(hist)
    extras = len(hist["extra_labels"])
    fig = Figure(figsize=(7.4, 3.4), dpi=100, layout="constrained")
    if extras:
        grid = fig.add_gridspec(1, 2, width_ratios=[7.0, 0.7 + 0.6 * extras])
        ax = fig.add_subplot(grid[0, 0])
        axx = fig.add_subplot(grid[0, 1])
    else:
        ax = fig.add_subplot()
    bars = dict(zip(("ref", "cur"), _main_axis(ax, hist, h["reference"], h["current"]), strict=True))
    if extras:
        bars.update(zip(("refx", "curx"), _extra_axis(axx, hist, h["reference_extra"], h["current_extra"]),
                        strict=True))
    for prefix, group in bars.items():
        for i, bar in enumerate(group):
            bar.set_gid(f"{prefix}-{key}-{i}")
    ax.set_title(title, fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    if hist["kind"] == "categorical" and not all(hist["inside"]):
        from matplotlib.patches import Patch

        handles.append(Patch(facecolor="white", edgecolor=OUT_COLOR, hatch="//"))
        labels.append("hatched: not a reference category")
    ax.legend(handles, labels, fontsize=7, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    buf = io.StringIO()
    # text as <text> (small, selectable); a salt per plot keeps clip-path ids unique on the page
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"raymlops-plot-{key}",
                                "hatch.color": OUT_COLOR, "hatch.linewidth": 0.8}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    return _unique_ids(_inline(buf.getvalue()), key)


_PROLOG = re.compile(r"^.*?(?=<svg\b)", re.S)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
_XMLNS = re.compile(r'\s+xmlns(:xlink)?="[^"]*"')


_ID = re.compile(r'\bid="(?!(?:ref|cur)x?-\d)([^"]+)"')


def _unique_ids(svg: str, key: int) -> str:
    """Prefix matplotlib's ids (``figure_1``, clip paths …) with the plot's key: ids stay unique
    when several plots share a page; the bar ids are already unique."""
    ids = set(_ID.findall(svg))
    svg = _ID.sub(lambda m: f'id="plot{key}-{m.group(1)}"', svg)
    return re.sub(r'(url\(#|href="#)([^)"]+)', lambda m: m.group(1) + (f"plot{key}-{m.group(2)}" if m.group(2)
                  in ids else m.group(2)), svg)


def _inline(svg: str) -> str:
    """The ``<svg>`` element alone, as HTML5 inlines it: no XML declaration, DOCTYPE (it names a
    DTD URL), RDF metadata or namespace declarations (implied inside HTML)."""
    body = _METADATA.sub("", _PROLOG.sub("", svg, count=1)).strip()
    head, sep, rest = body.partition(">")
    return _XMLNS.sub("", head) + sep + rest
