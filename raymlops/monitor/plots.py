"""Reference vs current histograms drawn by matplotlib as inline SVG (no JavaScript, no files).

Each bar is an SVG group with a stable id (``ref-<k>-<i>`` and ``cur-<k>-<i>`` for plot ``k``,
bar ``i``), and :func:`histogram_svg` returns the heights it drew, so a reader (or a test) can
match every bar to its value. Numeric columns are drawn as densities on the bins' real edges;
categorical ones as shares per category. Uses matplotlib's object API (no pyplot state), so it
is safe in threads and needs no display.
"""

from __future__ import annotations

import io
import re
from typing import Any

import numpy as np

__all__ = ["histogram_svg", "plotted_values"]

REF_COLOR, CUR_COLOR = "#4C72B0", "#DD8452"


def plotted_values(hist: dict[str, Any]) -> tuple[list[float], list[float]]:
    """The bar heights for ``hist`` (see :mod:`raymlops.monitor.histograms`): densities for
    numeric columns (count / (rows * width)), shares for categorical ones."""
    ref = np.asarray(hist["reference"], dtype=np.float64)
    cur = np.asarray(hist["current"], dtype=np.float64)
    n_ref, n_cur = max(float(hist["reference_rows"]), 1.0), max(float(hist["current_rows"]), 1.0)
    if hist["kind"] == "numeric":
        widths = np.diff(np.asarray(hist["edges"], dtype=np.float64))
        return (ref / n_ref / widths).tolist(), (cur / n_cur / widths).tolist()
    return (ref / n_ref).tolist(), (cur / n_cur).tolist()


def histogram_svg(hist: dict[str, Any], title: str, key: int) -> str:
    """An ``<svg>`` element (no XML prolog) with the reference and current bars of ``hist``."""
    import matplotlib
    from matplotlib.figure import Figure

    ref_h, cur_h = plotted_values(hist)
    fig = Figure(figsize=(6.4, 3.2), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    if hist["kind"] == "numeric":
        edges = np.asarray(hist["edges"], dtype=np.float64)
        left, width = edges[:-1], np.diff(edges)
        ref_bars = ax.bar(left, ref_h, width=width, align="edge", color=REF_COLOR, alpha=0.45,
                          edgecolor=REF_COLOR, label=f"reference ({hist['reference_rows']:,} rows)")
        cur_bars = ax.bar(left, cur_h, width=width, align="edge", fill=False, edgecolor=CUR_COLOR, linewidth=1.6,
                          label=f"current ({hist['current_rows']:,} rows)")
        ax.set_ylabel("density")
        ro, co = hist["reference_outside"], hist["current_outside"]
        note = (f"outside the reference range or missing: reference {_share(ro, hist['reference_rows'])}, "
                f"current {_share(co, hist['current_rows'])}")
        ax.set_xlabel(note, fontsize=8)
    else:
        x = np.arange(len(hist["labels"]))
        ref_bars = ax.bar(x - 0.2, ref_h, width=0.4, color=REF_COLOR, alpha=0.7,
                          label=f"reference ({hist['reference_rows']:,} rows)")
        cur_bars = ax.bar(x + 0.2, cur_h, width=0.4, color=CUR_COLOR, alpha=0.9,
                          label=f"current ({hist['current_rows']:,} rows)")
        ax.set_xticks(x, [str(s)[:16] for s in hist["labels"]], rotation=30 if len(x) > 6 else 0, ha="right"
                      if len(x) > 6 else "center", fontsize=8)
        ax.set_ylabel("share of rows")
    for prefix, bars in (("ref", ref_bars), ("cur", cur_bars)):
        for i, bar in enumerate(bars):
            bar.set_gid(f"{prefix}-{key}-{i}")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    buf = io.StringIO()
    # text as <text> (small, selectable); a salt per plot keeps clip-path ids unique on the page
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": f"raymlops-plot-{key}"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    return _unique_ids(_inline(buf.getvalue()), key)


def _share(outside: dict[str, int], rows: int) -> str:
    total = outside["below"] + outside["above"] + outside["missing"]
    return f"{total / rows:.1%}" if rows else "-"


_PROLOG = re.compile(r"^.*?(?=<svg\b)", re.S)
_METADATA = re.compile(r"<metadata>.*?</metadata>\s*", re.S)
_XMLNS = re.compile(r'\s+xmlns(:xlink)?="[^"]*"')


_ID = re.compile(r'\bid="(?!(?:ref|cur)-)([^"]+)"')


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
