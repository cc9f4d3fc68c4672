"""``raymlops monitor report`` opened in a real headless browser, offline and from a live monitor.

The browser is Chromium as shipped by Qt WebEngine in the ``PySide6-WebEngine`` wheel (the
``test`` extra): pip alone brings it, unlike Playwright's or Selenium's browsers, which are
downloaded at run time. This file is also the browser driver: run as a script (a subprocess
with Qt's offscreen platform, so no display and no Qt state in pytest), it loads the page with
every request recorded and any non-``file:`` one blocked, waits for it, and prints what the
page holds: each plot's SVG size and, per bar, the height the browser laid out, and every message
the page wrote to the JavaScript console (with its level). Missing
PySide6 makes the driver, and so the test, fail: it is never skipped.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.integration

_JS = r"""JSON.stringify({
  verdict: document.querySelector('#verdict').dataset.drift,
  resources: performance.getEntriesByType('resource').map(e => e.name),
  rows: Array.from(document.querySelectorAll('#features tr[data-feature]')).map(r => r.dataset.feature),
  plots: Array.from(document.querySelectorAll('figure.plot')).map(f => {
    const svg = f.querySelector('svg'), box = svg ? svg.getBoundingClientRect() : null;
    const bars = p => Array.from(f.querySelectorAll('g[id^="' + p + '-' + f.dataset.key + '-"] path'))
      .map(e => e.getBBox().height);
    return {feature: f.dataset.feature, width: box && box.width, height: box && box.height,
            texts: svg ? svg.querySelectorAll('text').length : 0,
            reference: JSON.parse(f.dataset.reference), current: JSON.parse(f.dataset.current),
            reference_extra: JSON.parse(f.dataset.referenceExtra), current_extra: JSON.parse(f.dataset.currentExtra),
            ref_bars: bars('ref'), cur_bars: bars('cur'), refx_bars: bars('refx'), curx_bars: bars('curx')};
  })})"""


def _drive(path: str, screenshot: str | None) -> dict[str, Any]:  # runs in the subprocess
    from browser import headless  # this file runs as a script: tests/integration is on sys.path
    from PySide6.QtCore import QEventLoop, QTimer, QUrl

    b = headless(lambda url: url.startswith("file:"), (1200, 2400), local_may_request_remote=True)
    page, view = b.page, b.view
    loop, state = QEventLoop(), {}
    page.loadFinished.connect(lambda ok: (state.__setitem__("loaded", ok), loop.quit()))
    page.load(QUrl.fromLocalFile(os.path.abspath(path)))
    QTimer.singleShot(60_000, loop.quit)
    loop.exec()
    page.runJavaScript(_JS, 0, lambda v: (state.__setitem__("dom", v), loop.quit()))
    QTimer.singleShot(30_000, loop.quit)
    loop.exec()
    if screenshot:
        QTimer.singleShot(1_000, loop.quit)
        loop.exec()
        view.grab().save(screenshot)
    out = {"loaded": state.get("loaded"), "requests": b.requests, "console": b.console,
           "dom": json.loads(state["dom"]) if state.get("dom") else None, "browser": page.profile().httpUserAgent()}
    b.close()
    return out


def open_in_browser(html: Path, screenshot: Path | None = None) -> dict[str, Any]:
    args = [sys.executable, __file__, str(html)] + ([str(screenshot)] if screenshot else [])
    done = subprocess.run(args, capture_output=True, text=True, timeout=180)
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"headless browser failed (rc {done.returncode}): {done.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])  # type: ignore[no-any-return]


def check_in_browser(html: Path, features: list[str], expected_plots: list[str], drift: bool,
                     screenshot: Path | None = None) -> dict[str, Any]:
    seen = open_in_browser(html, screenshot)
    assert seen["loaded"] is True and "Chrome/" in seen["browser"]
    assert seen["requests"] == [html.resolve().as_uri()], "the page must load nothing but itself"
    assert seen["console"] == [], f"the page wrote to the console: {seen['console']}"
    dom = seen["dom"]
    assert dom["resources"] == [] and dom["verdict"] == str(drift).lower() and dom["rows"] == features
    assert [p["feature"] for p in dom["plots"]] == expected_plots
    for p in dom["plots"]:
        assert p["width"] > 300 and p["height"] > 150 and p["texts"] > 5  # drawn, with axes and labels
        values = np.array(p["reference"] + p["current"])
        drawn = np.array(p["ref_bars"] + p["cur_bars"])
        assert drawn.size == values.size and values.max() > 0
        # the heights the browser laid out are the data, to one scale per plot (and per axis)
        np.testing.assert_allclose(drawn, values * drawn.max() / values.max(), atol=0.02 * drawn.max())
        extra = np.array(p["reference_extra"] + p["current_extra"])
        drawn_extra = np.array(p["refx_bars"] + p["curx_bars"])
        assert drawn_extra.size == extra.size
        if extra.size and extra.max() > 0:
            np.testing.assert_allclose(drawn_extra, extra * drawn_extra.max() / extra.max(),
                                       atol=0.02 * drawn_extra.max())
    return seen


def test_offline_report_renders_in_a_headless_browser(tmp_path: Path) -> None:
    from raymlops.cli import main

    rng = np.random.default_rng(11)
    n_ref, n_cur = 5_000, 1_000
    seg = rng.choice(["u", "v"], size=n_cur)
    pd.DataFrame({"x": rng.normal(size=n_ref), "y": rng.exponential(size=n_ref),
                  "color": rng.choice(["red", "blue"], size=n_ref), "seg": rng.choice(["u", "v"], size=n_ref)}
                 ).to_csv(tmp_path / "ref.csv", index=False)
    pd.DataFrame({"x": rng.normal(size=n_cur) + np.where(seg == "v", 1.5, 0.0), "y": rng.exponential(size=n_cur) * 2,
                  "color": rng.choice(["red", "blue"], size=n_cur), "seg": seg}).to_parquet(tmp_path / "cur.parquet")
    out = tmp_path / "report.html"
    assert main(["monitor", "report", "--reference", str(tmp_path / "ref.csv"), "--current",
                 str(tmp_path / "cur.parquet"), "--slice", "seg", "--out", str(out)]) == 0
    check_in_browser(out, ["x", "y", "color"], ["x", "y"], drift=True, screenshot=tmp_path / "page.png")
    assert (tmp_path / "page.png").stat().st_size > 20_000  # a screenshot with content, not a blank page


def test_live_report_of_a_running_monitor(ray_session: None, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from raymlops.cli import main
    from raymlops.monitor import build_reference
    from raymlops.monitor.lifecycle import start_monitor, stop_monitor
    from raymlops.ray_session import NAMESPACE

    rng = np.random.default_rng(12)
    reference = build_reference({"a": rng.normal(size=4_000), "b": rng.normal(size=4_000),
                                 "c": rng.normal(size=4_000)})
    route, share_route = "report-live-test", "report-live-share-test"
    handle = start_monitor(route, reference, {"window_rows": 5_000, "alerts": {"log": False}}, NAMESPACE,
                           detached=False)
    # the same rows under Evidently's rule (a share of the features, uncorrected)
    share = start_monitor(share_route, reference, {"window_rows": 5_000, "alerts": {"log": False},
                                                   "dataset_rule": "share"}, NAMESPACE, detached=False)
    try:
        X = rng.normal(size=(800, 3))
        X[:, 1] = X[:, 1] * 2.0 + 1.0
        import ray

        assert ray.get(handle.ingest.remote(X, np.zeros(800))) == 800
        assert ray.get(share.ingest.remote(X, np.zeros(800))) == 800
        out = tmp_path / "live.html"
        assert main(["monitor", "report", "--route", route, "--out", str(out), "--json"]) == 0
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        # the default rule ("any", family-wise): one drifted feature of three is dataset drift
        assert summary["drifted_features"] == ["b"] and summary["plotted"] == ["b"] and summary["drift"] is True
        text = out.read_text(encoding="utf-8")
        assert "open window #0" in text and "800 rows" in text
        check_in_browser(out, ["a", "b", "c"], ["b"], drift=True)
        assert main(["monitor", "report", "--route", share_route, "--out", str(tmp_path / "share.html"),
                     "--json"]) == 0
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["drifted_features"] == ["b"] and summary["drift"] is False  # 1 of 3 is under half
        assert re.search(r'id="verdict"[^>]* data-drift="false"', (tmp_path / "share.html").read_text(encoding="utf-8"))
        assert main(["monitor", "report", "--route", "no-such-route", "--out", str(tmp_path / "x.html")]) == 2
        assert "no-such-route" in capsys.readouterr().err
    finally:
        stop_monitor(route, NAMESPACE)
        stop_monitor(share_route, NAMESPACE)


if __name__ == "__main__":
    print("RESULT " + json.dumps(_drive(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)), flush=True)
