"""Report plots that tell the truth, on scikit-learn's shipped datasets (no Ray).

The plot data (:mod:`raymlops.monitor.histograms`) is checked against the raw rows: every row of
both datasets is in some bar, each dataset's areas (numeric densities) and shares add up to 1 on
their own, rows outside the reference range are counted and sit in bars outside it, categorical
columns get the union of both datasets' categories, integer columns a bar per value. Then the
HTML page is opened in Chromium (Qt WebEngine, headless; the driver of
``tests/integration/test_monitor_report.py``): no console message, every plotted feature's
figure drawn, every bar at the height of its data.

Data: wine, cultivar 1 (59 rows) as reference against cultivars 2 + 3 (119 rows), where most
current rows lie outside the reference's range; digits, classes 0-4 against 5-9 (64 integer
pixel columns, 0-16).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_digits, load_wine

from raymlops.config import MonitorConfig
from raymlops.monitor import Monitor, StreamState, build_reference
from raymlops.monitor.histograms import heights, histograms, rows_histogram
from raymlops.monitor.offline import check
from raymlops.monitor.plots import histogram_svg
from raymlops.monitor.report import live_model, offline_model, plotted_features, render_html

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wine() -> tuple[pd.DataFrame, pd.DataFrame]:
    data = load_wine(as_frame=True)
    X, y = data.data, data.target
    return X[y == 0].reset_index(drop=True), X[y != 0].reset_index(drop=True)


@pytest.fixture(scope="module")
def digits() -> tuple[pd.DataFrame, pd.DataFrame]:
    data = load_digits(as_frame=True)
    X, y = data.data, data.target
    return X[y < 5].reset_index(drop=True), X[y >= 5].reset_index(drop=True)


def assert_every_row_in_a_bar(h: dict[str, Any], n_ref: int, n_cur: int) -> None:
    assert h["reference_rows"] == n_ref and h["current_rows"] == n_cur
    assert sum(h["reference"]) + sum(h["reference_extra"]) == n_ref
    assert sum(h["current"]) + sum(h["current_extra"]) == n_cur
    assert min(h["reference"] + h["current"] + h["reference_extra"] + h["current_extra"]) >= 0


def assert_areas_sum_to_one(h: dict[str, Any]) -> None:
    drawn = heights(h)
    width = np.diff(h["edges"]) if h["kind"] == "numeric" else np.ones(len(h["reference"]))
    for which in ("reference", "current"):
        area = float(np.dot(drawn[which], width)) + sum(drawn[f"{which}_extra"])
        assert area == pytest.approx(1.0, abs=1e-12), which


def test_wine_numeric_bars_cover_both_ranges_and_show_rows_outside_the_reference(
        wine: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    ref, cur = wine
    for name in ref.columns:
        r, c = ref[name].to_numpy(), cur[name].to_numpy()
        h = rows_histogram(ref[name], cur[name])
        assert h["source"] == "rows"
        assert_every_row_in_a_bar(h, 59, 119)
        assert_areas_sum_to_one(h)
        lo, hi = r.min(), r.max()
        assert h["reference_range"] == [lo, hi]
        below, above = int((c < lo).sum()), int((c > hi).sum())
        assert h["outside"]["current"] == {"below": below, "above": above, "missing": 0, "unseen": 0}
        assert h["outside"]["reference"]["below"] == h["outside"]["reference"]["above"] == 0
        if h["kind"] == "integer":  # magnesium: integer values, few enough
            assert h["values"] == sorted(set(r) | set(c))
            continue
        edges = np.asarray(h["edges"])
        # the union of both ranges, the reference's min and max as edges, no sliver, a sensible count
        widths = np.diff(edges)
        umin, umax = min(lo, c.min()), max(hi, c.max())
        assert umin - widths[0] < edges[0] <= umin and umax <= edges[-1] < umax + widths[-1]
        assert lo in edges and hi in edges and 2 <= edges.size - 1 <= 40
        assert widths.min() > 0.5 * widths.max()
        inside = np.asarray(h["inside"])
        assert inside.any() and np.array_equal(inside, (edges[:-1] >= lo) & (edges[1:] <= hi))
        # bars outside the reference range hold exactly the rows outside it
        cur_counts = np.asarray(h["current"])
        assert cur_counts[~inside].sum() == below + above
        assert cur_counts[inside].sum() == int(((c >= lo) & (c <= hi)).sum())
        assert np.asarray(h["reference"])[~inside].sum() == 0
        # and each bar holds the rows between its edges (the max of the reference in the bar ending there)
        for i in np.flatnonzero(inside)[:-1]:
            assert cur_counts[i] == int(((c >= edges[i]) & (c < edges[i + 1])).sum())
    alcohol = rows_histogram(ref["alcohol"], cur["alcohol"])
    assert alcohol["outside"]["current"]["below"] / 119 == pytest.approx(0.647, abs=1e-3)  # 64.7 %, drawn now


def test_digits_integer_columns_get_a_bar_per_value(digits: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    ref, cur = digits
    n_ref, n_cur = len(ref), len(cur)
    for name in ref.columns:
        h = rows_histogram(ref[name], cur[name])
        assert h["kind"] == "integer", name
        values = sorted(set(ref[name]) | set(cur[name]))
        assert h["values"] == values and h["labels"] == [str(int(v)) for v in values]
        assert h["reference"] == [int((ref[name] == v).sum()) for v in values]
        assert h["current"] == [int((cur[name] == v).sum()) for v in values]
        assert_every_row_in_a_bar(h, n_ref, n_cur)
        assert_areas_sum_to_one(h)
        lo, hi = ref[name].min(), ref[name].max()
        assert h["inside"] == [bool(lo <= v <= hi) for v in values]
        out_cur = sum(cnt for cnt, ok in zip(h["current"], h["inside"], strict=True) if not ok)
        assert out_cur == h["outside"]["current"]["below"] + h["outside"]["current"]["above"]


def test_categorical_bars_are_the_union_of_categories() -> None:
    data = load_digits()
    y = data.target.astype(str)
    ref, cur = y[data.target < 7], y[data.target >= 3].astype(object)
    cur[:25] = None  # missing values are a bar of their own
    h = rows_histogram(ref, cur)
    assert h["kind"] == "categorical"
    assert sorted(h["labels"]) == [str(d) for d in range(10)]
    assert h["labels"][:7] == sorted(h["labels"][:7], key=lambda s: -int((ref == s).sum()))  # reference's first
    assert h["inside"] == [lab in set(ref) for lab in h["labels"]]
    assert h["reference"] == [int((ref == lab).sum()) for lab in h["labels"]]
    assert h["current"] == [int((cur == lab).sum()) for lab in h["labels"]]
    assert h["extra_labels"] == ["missing"] and h["current_extra"] == [25] and h["reference_extra"] == [0]
    assert h["outside"]["current"]["unseen"] == int(np.isin(cur, ["7", "8", "9"]).sum())
    assert_every_row_in_a_bar(h, ref.size, cur.size)
    assert_areas_sum_to_one(h)
    many = rows_histogram(np.arange(100).astype(str), np.arange(50, 150).astype(str), max_categories=10)
    assert len(many["labels"]) == 10 and many["labels"][-1] == "(rest)"
    assert_every_row_in_a_bar(many, 100, 100)


def test_numeric_missing_values_and_a_one_value_reference() -> None:
    ref = np.array([1.5, 1.5, 1.5, np.nan])
    cur = np.array([0.25, 1.5, 2.75, np.inf, np.nan, np.nan])
    h = rows_histogram(ref, cur)
    assert h["kind"] == "numeric" and h["extra_labels"] == ["missing or infinite"]
    assert h["reference_extra"] == [1] and h["current_extra"] == [3]
    assert_every_row_in_a_bar(h, 4, 6)
    assert_areas_sum_to_one(h)
    assert h["outside"]["current"] == {"below": 1, "above": 1, "missing": 3, "unseen": 0}
    empty = rows_histogram(np.array([np.nan]), np.array([2.0, 3.5]))
    assert_every_row_in_a_bar(empty, 1, 2)


def test_live_plots_from_the_state_show_rows_outside_the_reference_as_bars(
        wine: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    ref, cur = wine
    reference = build_reference({c: ref[c].to_numpy() for c in ref.columns})
    state = StreamState(reference)
    state.update({c: cur[c].to_numpy() for c in cur.columns})
    for name, h in histograms(state).items():
        assert h["source"] == "state"
        assert_every_row_in_a_bar(h, 59, 119)
        assert_areas_sum_to_one(h)
        c, lo, hi = cur[name].to_numpy(), ref[name].min(), ref[name].max()
        assert h["extra_labels"][:2] == ["below reference range", "above reference range"]
        assert h["current_extra"][:2] == [int((c < lo).sum()), int((c > hi).sum())]
        if h["kind"] == "integer":  # integers on a few values (magnesium in these 59 rows): a bar per value
            assert h["values"] == sorted(set(ref[name].tolist())), name
            continue
        edges = np.asarray(h["edges"])
        assert edges[0] == lo and edges[-1] == hi
        assert np.diff(edges).min() >= 0.5 * (hi - lo) / 20  # no sliver (59 rows, 100 quantile buckets)


def test_offline_model_from_the_rows_and_every_bar_drawn(wine: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    ref, cur = wine
    result = check(ref, cur, histograms=True)
    model = offline_model(result, "cultivar 1", "cultivars 2, 3", ref, cur)
    assert set(model["histograms"]) == set(ref.columns)
    assert all(h["source"] == "rows" for h in model["histograms"].values())
    h = model["histograms"]["alcohol"]
    svg = histogram_svg(h, "alcohol", 3)
    assert svg.startswith("<svg") and "outside the reference range" in svg
    for prefix, n in (("ref", len(h["reference"])), ("cur", len(h["current"]))):
        assert all(f'id="{prefix}-3-{i}"' in svg for i in range(n)) and f'id="{prefix}-3-{n}"' not in svg
    with_missing = {"kind": "categorical", "source": "rows", "binning": "b", "labels": ["a", "b"],
                    "reference": [3, 1], "current": [0, 2], "inside": [True, False], "extra_labels": ["missing"],
                    "reference_extra": [0], "current_extra": [1], "reference_rows": 4, "current_rows": 3,
                    "reference_range": None, "outside": {w: {"below": 0, "above": 0, "missing": 0, "unseen": 0}
                                                         for w in ("reference", "current")}}
    svg = histogram_svg(with_missing, "c", 0)
    assert 'id="refx-0-0"' in svg and 'id="curx-0-0"' in svg and "not a reference category" in svg


def _browser_driver() -> ModuleType:
    path = ROOT / "tests" / "integration" / "test_monitor_report.py"
    spec = importlib.util.spec_from_file_location("monitor_report_browser", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_reports_render_in_a_headless_browser(wine: tuple[pd.DataFrame, pd.DataFrame],
                                              digits: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path) -> None:
    driver = _browser_driver()
    pages = []
    for name, (ref, cur), top in (("wine", wine, 5), ("digits", digits, 5)):
        model = offline_model(check(ref, cur, histograms=True), "reference", "current", ref, cur)
        out = tmp_path / f"{name}.html"
        out.write_text(render_html(model, top), encoding="utf-8")
        pages.append((out, model, top))
    rng = np.random.default_rng(5)
    reference = build_reference({"a": rng.normal(size=3_000), "c": rng.choice(list("xyz"), size=3_000)})
    monitor = Monitor(reference, MonitorConfig(window_rows=10_000, alerts={"log": False}), clock=lambda: 1.0)
    monitor.ingest({"a": np.append(rng.normal(2.0, 1.0, size=490), [np.nan] * 10),
                    "c": rng.choice(list("xyw"), size=500)})
    live = live_model(monitor.status(), "r1")
    out = tmp_path / "live.html"
    out.write_text(render_html(live), encoding="utf-8")
    pages.append((out, live, 5))
    for out, model, top in pages:
        plotted = plotted_features(model, top)
        assert plotted
        seen = driver.check_in_browser(out, list(model["features"]), plotted, drift=model["drift"])
        assert seen["console"] == []
        for fig in seen["dom"]["plots"]:
            hist = model["histograms"][fig["feature"]]
            assert len(fig["ref_bars"]) == len(hist["reference"]) and len(fig["cur_bars"]) == len(hist["current"])
            assert len(fig["refx_bars"]) == len(hist["extra_labels"]) == len(fig["curx_bars"])
    live_a = next(p for p in seen["dom"]["plots"] if p["feature"] == "a")
    assert live_a["curx_bars"][1] > 0 and live_a["curx_bars"][2] > 0  # above the range, missing: drawn


def test_live_plots_of_an_integer_column_have_a_bar_per_reference_value() -> None:
    """The live monitor buckets a discrete column per value: its plot is the offline plot's integer
    kind, a bar per value (not equal-width bars merged from buckets, which drew the last value as a
    sliver joined to the bar before it), with rows outside the reference's values as extra bars."""
    rng = np.random.default_rng(4)
    visits = rng.poisson(3, 2_000).astype(float)
    reference = build_reference({"visits": visits})
    state = StreamState(reference)
    cur = np.concatenate([rng.poisson(4, 300).astype(float), [-1.0, 99.0, np.nan]])
    state.update({"visits": cur})
    h = histograms(state)["visits"]
    values = np.unique(visits)
    assert h["kind"] == "integer" and h["values"] == values.tolist()
    assert h["reference"] == [int((visits == v).sum()) for v in values]
    assert h["current"] == [int((cur == v).sum()) for v in values]
    assert h["current_extra"] == [1, int((cur > values.max()).sum()), 1]  # below, above, missing
    assert_every_row_in_a_bar(h, 2_000, 303)
    assert_areas_sum_to_one(h)
