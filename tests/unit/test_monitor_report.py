"""``raymlops monitor report``: the HTML page, its plots and their data (no Ray, no browser).

The page is parsed with the standard library's HTML parser; every bar of every plot is read
back from the SVG path matplotlib drew and compared with the data it stands for, which is
computed here independently from the raw rows (numpy histograms, pandas value counts).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from raymlops.cli import main
from raymlops.config import MonitorConfig
from raymlops.monitor import Monitor, StreamState, build_reference
from raymlops.monitor.histograms import heights, histograms
from raymlops.monitor.report import live_model, plotted_features, render_html

ROOT = Path(__file__).resolve().parents[2]


class Page(HTMLParser):
    """Figures (with their bar heights read from the SVG paths), tables and every tag seen."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.figures: list[dict[str, Any]] = []
        self.rows: dict[str, list[str]] = {}
        self._bar: str | None = None
        self._row: tuple[str, list[str]] | None = None
        self._cell = False
        self._in_figure = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        if tag == "figure" and "plot" in a.get("class", ""):
            self.figures.append({**a, "svgs": 0, "bars": {}})
            self._in_figure = True
        elif tag == "svg" and self.figures:
            self.figures[-1]["svgs"] += 1
        elif tag == "g" and re.fullmatch(r"(ref|cur)-\d+-\d+", a.get("id", "")):
            self._bar = a["id"]
        elif tag == "path" and self._bar is not None:
            ys = [float(y) for y in re.findall(r"[ML] [-\d.e]+ ([-\d.e]+)", a["d"])]
            self.figures[-1]["bars"][self._bar] = max(ys) - min(ys)
            self._bar = None
        elif tag == "tr" and ("data-feature" in a or "data-slice" in a) and not self._in_figure:
            self._row = (a.get("data-feature") or "slice:" + a["data-slice"], [])
        elif tag == "td" and self._row is not None:
            self._cell = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "figure":
            self._in_figure = False
        elif tag == "tr" and self._row is not None:
            self.rows[self._row[0]] = self._row[1]
            self._row = None
        elif tag == "td":
            self._cell = False

    def handle_data(self, data: str) -> None:
        if self._cell and self._row is not None:
            self._row[1].append(data.strip())


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    return page


def bar_heights(fig: dict[str, Any], prefix: str) -> list[float]:
    k = fig["data-key"]
    n = len([b for b in fig["bars"] if b.startswith(f"{prefix}-{k}-")])
    return [fig["bars"][f"{prefix}-{k}-{i}"] for i in range(n)]


def assert_bars_match(fig: dict[str, Any]) -> None:
    """Every bar's drawn height is the same multiple of the value it stands for."""
    ref, cur = json.loads(fig["data-reference"]), json.loads(fig["data-current"])
    drawn_ref, drawn_cur = bar_heights(fig, "ref"), bar_heights(fig, "cur")
    assert len(drawn_ref) == len(ref) and len(drawn_cur) == len(cur) and len(ref) >= 2
    values, drawn = np.array(ref + cur), np.array(drawn_ref + drawn_cur)
    scale = drawn.max() / values.max()
    np.testing.assert_allclose(drawn, values * scale, atol=0.02 * drawn.max())


def assert_self_contained(text: str) -> None:
    page = parse(text)
    names = {t for t, _ in page.tags}
    assert not names & {"script", "link", "img", "iframe", "object", "embed", "image", "base", "audio", "video"}
    for tag, attrs in page.tags:
        for key in ("href", "xlink:href"):  # only links inside the page (matplotlib's tick markers)
            assert attrs.get(key, "#").startswith("#"), (tag, attrs)
        assert not {"src", "srcset", "action", "data", "poster"} & set(attrs), (tag, attrs)
    assert "http" not in text and "//" not in text.replace("<!DOCTYPE html>", "")
    assert set(re.findall(r"url\((.)", text)) <= {"#"}, "only same-page url(#id) references"
    assert "@import" not in text


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(7)

    def frame(n: int, shift: float = 0.0, colors: tuple[str, ...] = ("red", "blue", "green")) -> pd.DataFrame:
        seg = rng.choice(["u", "v"], size=n)
        return pd.DataFrame({"x": rng.normal(size=n) + np.where(seg == "v", shift, 0.0),
                             "y": rng.exponential(size=n), "color": rng.choice(colors, size=n), "seg": seg})

    out = {"ref": tmp_path / "ref.csv", "drift": tmp_path / "drift.csv", "same": tmp_path / "same.parquet"}
    frame(5_000).to_csv(out["ref"], index=False)
    frame(900, shift=2.0, colors=("red", "red", "purple")).to_csv(out["drift"], index=False)
    frame(900).to_parquet(out["same"])
    return out


def test_state_histograms_match_numpy_and_pandas_on_the_raw_rows() -> None:
    rng = np.random.default_rng(1)
    ref_x, cur_x = rng.normal(size=6_000), np.append(rng.normal(0.5, 1.5, size=1_990), [np.nan] * 10)
    ref_c, cur_c = rng.choice(list("abcd"), size=6_000), rng.choice(list("abe"), size=2_000)
    reference = build_reference({"x": ref_x, "c": ref_c})
    state = StreamState(reference)
    state.update({"x": cur_x, "c": cur_c})
    h = histograms(state, max_bins=12)
    hx, hc = h["x"], h["c"]
    edges = np.asarray(hx["edges"])
    assert hx["kind"] == "numeric" and hx["source"] == "state" and 2 <= len(edges) - 1 <= 12
    assert edges[0] == ref_x.min() and edges[-1] == ref_x.max() and hx["reference_range"] == [edges[0], edges[-1]]
    # bins of about equal width (merged from the quantile grid): none a sliver
    assert np.diff(edges).min() >= 0.5 * (edges[-1] - edges[0]) / 12
    inside = cur_x[(cur_x >= edges[0]) & (cur_x <= edges[-1])]
    np.testing.assert_array_equal(hx["current"], np.histogram(inside, bins=edges)[0])
    np.testing.assert_array_equal(hx["reference"], np.histogram(ref_x, bins=edges)[0])
    # rows the state cannot place on the axis are bars of their own, not hidden
    below, above = int((cur_x < edges[0]).sum()), int((cur_x > edges[-1]).sum())
    assert below > 0 and above > 0
    assert hx["extra_labels"] == ["below reference range", "above reference range", "missing"]
    assert hx["current_extra"] == [below, above, 10] and hx["reference_extra"] == [0, 0, 0]
    assert sum(hx["current"]) + sum(hx["current_extra"]) == 2_000
    assert hx["outside"]["current"] == {"below": below, "above": above, "missing": 10, "unseen": 0}
    h_x = heights(hx)
    for which in ("reference", "current"):  # each dataset's areas and shares add up to 1
        assert float(np.dot(h_x[which], np.diff(edges)) + sum(h_x[f"{which}_extra"])) == pytest.approx(1.0)
    counts = pd.Series(cur_c).value_counts()
    got = dict(zip(hc["labels"], hc["current"], strict=True))
    assert got == {"a": counts["a"], "b": counts["b"], "c": 0, "d": 0, "(other)": counts["e"]}
    assert hc["extra_labels"] == [] and hc["inside"] == [True] * 4 + [False]
    assert hc["outside"]["current"]["unseen"] == counts["e"]
    assert hx["current_rows"] == 2_000 and hc["reference_rows"] == 6_000


def test_categorical_histogram_sums_the_rarest_into_rest() -> None:
    labels = [f"k{i:02d}" for i in range(30)]
    rng = np.random.default_rng(2)
    reference = build_reference({"c": rng.choice(labels, size=3_000)})
    state = StreamState(reference)
    state.update({"c": rng.choice(labels, size=500)})
    h = histograms(state, max_bins=8)["c"]
    assert len(h["labels"]) == 8 and h["labels"][-1] == "(rest)"
    assert sum(h["current"]) == 500 and sum(h["reference"]) == 3_000


def test_offline_report_plots_each_drifted_feature_with_its_data(files: dict[str, Path], tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report.html"
    base = ["monitor", "check", "--reference", str(files["ref"]), "--current", str(files["drift"]), "--slice", "seg"]
    assert main([*base, "--json"]) == 0
    checked = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["monitor", "report", *base[2:], "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    text = out.read_text(encoding="utf-8")
    page = parse(text)
    drifted = checked["drifted_features"]
    assert set(drifted) == {"x", "color"}
    assert summary["plotted"] == drifted and summary["drifted_features"] == drifted
    assert [f["data-feature"] for f in page.figures] == drifted
    for fig in page.figures:
        assert fig["svgs"] == 1 and fig["data-drift"] == "true"
        assert_bars_match(fig)
    color = next(f for f in page.figures if f["data-feature"] == "color")
    cur = pd.read_csv(files["drift"])["color"].value_counts(normalize=True)
    shares = dict(zip(json.loads(color["data-labels"]), json.loads(color["data-current"]), strict=True))
    # drawn from the rows: the union of both datasets' categories, each dataset's shares
    assert set(shares) == {"blue", "green", "red", "purple"}
    assert shares == pytest.approx({k: cur.get(k, 0.0) for k in shares})
    # the score table holds every feature with the check's numbers
    for name, f in checked["features"].items():
        row = page.rows[name]
        assert row[0] == name and row[2] == f["test"] and row[-1] == ("DRIFT" if f["drift"] else "no drift")
        assert float(row[4]) == pytest.approx(f["p_value"], rel=1e-3)
    verdict = next(a for t, a in page.tags if a.get("id") == "verdict")
    assert verdict["data-drift"] == str(checked["drift"]).lower()
    assert set(checked["slices"]) == {"seg=u", "seg=v"}
    for name, s in checked["slices"].items():  # x drifted only where it shifted; color everywhere
        row = page.rows[f"slice:{name}"]
        assert row[3] == ("DRIFT" if s["drift"] else "no drift") and row[4] == (", ".join(s["drifted_features"]) or "-")
    assert "x" in checked["slices"]["seg=v"]["drifted_features"] and "x" not in checked["slices"]["seg=u"][
        "drifted_features"]
    assert_self_contained(text)


def test_offline_report_without_drift_plots_the_top_features_by_p_value(files: dict[str, Path],
                                                                        tmp_path: Path) -> None:
    out = tmp_path / "same.html"
    assert main(["monitor", "report", "--reference", str(files["ref"]), "--current", str(files["same"]),
                 "--top", "2", "--out", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    page = parse(text)
    p_values = {name: float(row[4]) for name, row in page.rows.items()}
    assert len(page.figures) == 2
    assert [f["data-feature"] for f in page.figures] == sorted(p_values, key=p_values.__getitem__)[:2]
    assert "No feature drifted" in text and all(f["data-drift"] == "false" for f in page.figures)
    for fig in page.figures:
        assert_bars_match(fig)
    assert_self_contained(text)


def test_out_never_overwrites_a_file_that_is_no_report(files: dict[str, Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """`--out .raymlops/metadata.db` replaced the registry with an HTML page (exit 0): every command on
    the home then failed. A file that is not an HTML page is left as it is; an earlier report is
    replaced."""
    import sqlite3

    db = tmp_path / "metadata.db"
    sqlite3.connect(db).execute("CREATE TABLE t (x)").connection.close()
    before = db.read_bytes()
    argv = ["monitor", "report", "--reference", str(files["ref"]), "--current", str(files["same"])]
    capsys.readouterr()
    assert main([*argv, "--out", str(db)]) == 2
    err = capsys.readouterr().err
    assert "the file exists and is not an HTML page" in err and str(db) in err, err
    assert db.read_bytes() == before
    page = tmp_path / "r.html"
    assert main([*argv, "--out", str(page)]) == 0 and main([*argv, "--top", "1", "--out", str(page)]) == 0
    assert page.read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html")
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary file left


def test_live_model_uses_the_open_window_then_the_last_closed_one() -> None:
    rng = np.random.default_rng(3)
    reference = build_reference({"a": rng.normal(size=4_000), "b": rng.normal(size=4_000)})
    m = Monitor(reference, MonitorConfig(window_rows=1_000, alerts={"log": False}), clock=lambda: 100.0)
    m.ingest({"a": rng.normal(size=600) + 1.0, "b": rng.normal(size=600)})
    model = live_model(m.status(), "r1")
    assert model["current"] == "open window #0" and model["rows"]["current"] == 600
    assert model["drifted_features"] == ["a"] and plotted_features(model) == ["a"]
    m.ingest({"a": rng.normal(size=400) + 1.0, "b": rng.normal(size=400)})  # closes window 0
    model = live_model(m.status(), "r1")
    assert model["current"] == "last closed window #0" and model["rows"]["current"] == 1_000
    hist = model["histograms"]["a"]
    assert sum(hist["current"]) + sum(hist["current_extra"]) == 1_000
    assert hist["current_extra"] == [hist["outside"]["current"]["below"], hist["outside"]["current"]["above"]]
    page = parse(render_html(model))
    assert [f["data-feature"] for f in page.figures] == ["a"]
    assert_bars_match(page.figures[0])
    empty = Monitor(reference, MonitorConfig(alerts={"log": False}))
    with pytest.raises(ValueError, match="no rows"):
        live_model(empty.status(), "r2")


@pytest.mark.parametrize("problem", ["both-forms", "no-current", "no-folder", "out-is-folder", "top-0",
                                     "missing-file", "bad-slice", "route-without-cluster"])
def test_report_bad_input_exits_2_naming_it(files: dict[str, Path], tmp_path: Path, problem: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["monitor", "report", "--reference", str(files["ref"]), "--current", str(files["drift"]),
            "--out", str(tmp_path / "r.html")]
    expect = {"both-forms": "not both", "no-current": "--current", "no-folder": "does not exist",
              "out-is-folder": "is a folder", "top-0": "--top", "missing-file": "nope.csv", "bad-slice": "region",
              "route-without-cluster": "RAY_ADDRESS"}
    if problem == "both-forms":
        argv += ["--route", "r1"]
    elif problem == "no-current":
        argv = argv[:4] + argv[6:]
    elif problem == "no-folder":
        argv[-1] = str(tmp_path / "missing" / "r.html")
    elif problem == "out-is-folder":
        argv[-1] = str(tmp_path)
    elif problem == "top-0":
        argv += ["--top", "0"]
    elif problem == "missing-file":
        argv[5] = str(tmp_path / "nope.csv")
    elif problem == "bad-slice":
        argv += ["--slice", "region"]
    else:
        argv = ["monitor", "report", "--route", "r1", "--out", str(tmp_path / "r.html")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and expect[problem] in err and "Traceback" not in err
    assert not (tmp_path / "r.html").exists()


def test_offline_report_does_not_import_ray(files: dict[str, Path], tmp_path: Path) -> None:
    code = ("import sys; from raymlops.cli import main; "
            f"rc = main(['monitor', 'report', '--reference', {str(files['ref'])!r}, '--current', "
            f"{str(files['drift'])!r}, '--out', {str(tmp_path / 'r.html')!r}]); "
            "print(rc, 'ray' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.stdout.split()[-2:] == ["0", "False"], done.stderr


def test_a_live_report_never_judges_a_window_too_small_to_judge() -> None:
    """After a window closes on a drift, a few rows in the next one are under ``min_rows``: the
    report is the closed window's (the one the alert is about), and a monitor whose only window is
    that small is reported as not judged (it read "no dataset drift" and ``"drift": false``)."""
    rng = np.random.default_rng(4)
    reference = build_reference({"a": rng.normal(size=4_000), "b": rng.normal(size=4_000)})
    cfg = MonitorConfig(window_rows=300, min_rows=30, alerts={"log": False})
    m = Monitor(reference, cfg, clock=lambda: 100.0)
    m.ingest({"a": rng.normal(size=305) + 1.0, "b": rng.normal(size=305)})  # window 0 closes drifted; 5 rows open
    model = live_model(m.status(), "r")
    assert model["current"].startswith("last closed window #0") and "5 rows: too few to judge" in model["current"]
    assert model["drift"] is True and model["drifted_features"] == ["a"]
    fresh = Monitor(reference, cfg, clock=lambda: 100.0)
    fresh.ingest({"a": rng.normal(size=5) + 1.0, "b": rng.normal(size=5)})
    model = live_model(fresh.status(), "r")
    assert model["current"] == "open window #0" and model["drift"] is None
    assert all(f["drift"] is None for f in model["features"].values())
    text = render_html(model)
    assert 'data-drift="none"' in text and "not judged" in text and "no dataset drift" not in text
