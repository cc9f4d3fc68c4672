"""``raymlops ui`` in a real headless browser: every page group loads with no console message,
requests nothing but the UI's own pages, shows the ids it should, and every link resolves.

The browser is Chromium from the ``PySide6-WebEngine`` wheel, driven as
``test_monitor_report.py`` drives it: this file is also the driver, run as a subprocess with Qt's
offscreen platform; one browser start loads every page in turn. The UI is served in-process
(uvicorn on a free loopback port) over a home folder with runs, snapshots, models and audit
records, and over the session's local Ray with a live drift monitor, so the deployments and
monitor pages show a real one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.integration

_JS = r"""JSON.stringify({
  title: document.title,
  h1: (document.querySelector('h1') || {}).textContent || '',
  text: document.body ? document.body.innerText : '',
  links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
  svgs: Array.from(document.querySelectorAll('svg')).map(s => {
    const b = s.getBoundingClientRect(); return [b.width, b.height]; }),
  resources: performance.getEntriesByType('resource').map(e => e.name)})"""


def _drive(urls: list[str], shots: str) -> dict[str, Any]:  # runs in the subprocess
    from browser import headless  # this file runs as a script: tests/integration is on sys.path
    from PySide6.QtCore import QEventLoop, QTimer, QUrl

    origin = "{0.scheme}://{0.netloc}/".format(urlsplit(urls[0]))
    b = headless(lambda url: url.startswith(origin), (1300, 1600))
    page, view = b.page, b.view
    out: dict[str, Any] = {"browser": page.profile().httpUserAgent(), "pages": {}}
    for i, url in enumerate(urls):
        b.requests.clear()
        b.console.clear()
        loop, state = QEventLoop(), {}
        page.loadFinished.connect(lambda ok, s=state, lp=loop: (s.__setitem__("loaded", ok), lp.quit()))
        page.load(QUrl(url))
        QTimer.singleShot(60_000, loop.quit)
        loop.exec()
        page.loadFinished.disconnect()
        page.runJavaScript(_JS, 0, lambda v, s=state, lp=loop: (s.__setitem__("dom", v), lp.quit()))
        QTimer.singleShot(30_000, loop.quit)
        loop.exec()
        QTimer.singleShot(400, loop.quit)  # let the view paint the page before the screenshot
        loop.exec()
        view.grab().save(os.path.join(shots, f"page-{i}.png"))
        out["pages"][url] = {"loaded": state.get("loaded"), "requests": list(b.requests),
                             "console": list(b.console),
                             "dom": json.loads(state["dom"]) if state.get("dom") else None}
    b.close()
    return out


def open_pages(urls: list[str], shots: Path) -> dict[str, Any]:
    done = subprocess.run([sys.executable, __file__, str(shots), *urls], capture_output=True, text=True, timeout=300)
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"headless browser failed (rc {done.returncode}): {done.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT "):])  # type: ignore[no-any-return]


def test_every_page_in_a_headless_browser(ray_session: None, tmp_path: Path) -> None:
    from raymlops.monitor import build_reference
    from raymlops.monitor.lifecycle import start_monitor, stop_monitor
    from raymlops.ray_session import NAMESPACE
    from raymlops.ui import create_app
    from tests.ui_home import FAILED_RUN, OK_RUN, build_home, serving

    home = build_home(tmp_path / "home")
    rng = np.random.default_rng(5)
    route = "ui-browser-test"
    reference = build_reference({"a": rng.normal(size=3_000), "b": rng.normal(size=3_000)})
    handle = start_monitor(route, reference, {"window_rows": 5_000, "alerts": {"log": False}}, NAMESPACE,
                           detached=False)
    try:
        import ray

        X = rng.normal(size=(600, 2))
        X[:, 1] = X[:, 1] * 2.0 + 1.0
        assert ray.get(handle.ingest.remote(X, np.zeros(600))) == 600
        with serving(create_app(home.home, ray_address="auto")) as base:
            expect = {
                "/": [OK_RUN, FAILED_RUN, home.snap_b[:12], "quickstart:v3", "audit chain valid"],
                "/runs": [OK_RUN, FAILED_RUN, "succeeded", "failed"],
                f"/runs/{OK_RUN}": [OK_RUN, "ingest log line two", "logistic", home.snap_a[:12]],
                f"/runs/{FAILED_RUN}": [FAILED_RUN, "ZeroDivisionError: division by zero", "return 1 / positives"],
                "/snapshots": [home.snap_a[:12], home.snap_b[:12], "train", "latest"],
                f"/snapshots/{home.snap_b}?against={home.snap_a}": [home.snap_b, home.snap_a[:12], "DRIFT"],
                "/models": [*home.models, "rejected"],
                "/models/quickstart": ["champion", "quickstart:v1", "roll back for the test"],
                "/models/quickstart/v1": ["quickstart:v1", OK_RUN, home.snap_a[:12], "quickstart at"],
                "/deployments": [route, "node(s) alive", "champion"],
                f"/monitors/{route}": [route, "600 rows", "DRIFT", "b"],
                f"/monitors/{route}/report": ["Drift report", route],
                "/audit": ["audit chain valid", "snapshot.created", "model.registered", "alias.moved"],
            }
            seen = open_pages([base + path for path in expect], tmp_path)
            assert "Chrome/" in seen["browser"]
            links: set[str] = set()
            for path, ids in expect.items():
                p = seen["pages"][base + path]
                assert p["loaded"] is True, path
                assert p["console"] == [], f"{path} wrote to the console: {p['console']}"
                assert p["requests"] == [base + path], f"{path} requested more than itself: {p['requests']}"
                dom = p["dom"]
                assert dom["resources"] == [], path
                missing = [i for i in ids if i not in dom["text"]]
                assert not missing, f"{path} does not show {missing}"
                assert all(w > 0 and h > 0 for w, h in dom["svgs"]), path  # every plot is laid out
                links.update(dom["links"])
            assert seen["pages"][f"{base}/runs/{OK_RUN}"]["dom"]["svgs"], "the run page has its timeline"
            assert len(seen["pages"][f"{base}/monitors/{route}"]["dom"]["svgs"]) >= 1  # the drifted feature's plot
            assert all(link.startswith(base + "/") for link in links), sorted(links)[:5]
            with httpx.Client(timeout=60) as client:
                broken = {link: r.status_code for link in sorted(links) if (r := client.get(link)).status_code != 200}
            assert broken == {}
            assert len(links) > 20
            assert (tmp_path / "page-2.png").stat().st_size > 20_000  # the run page was drawn, not blank
    finally:
        stop_monitor(route, NAMESPACE)


def test_the_real_command_joins_the_cluster_named_by_address(ray_session: None, tmp_path: Path) -> None:
    """``raymlops ui --address`` in its own process: the first request joins the cluster (from a
    server thread) and the deployments and monitor pages read it."""

    import ray

    from tests.ui_home import build_home, ui_process

    home = build_home(tmp_path / "home")
    gcs = ray.get_runtime_context().gcs_address
    with ui_process(home.home, "--address", gcs, ready_path="/deployments", timeout_s=120) as base:
        r = httpx.get(base + "/deployments", timeout=120)
        assert r.status_code == 200 and f'id="cluster">cluster {gcs}: Ray {ray.__version__}' in r.text
        r = httpx.get(base + "/monitors/no-such-route", timeout=120)
        assert r.status_code == 404 and "no monitor for deployment &#x27;no-such-route&#x27;" in r.text


if __name__ == "__main__":
    print("RESULT " + json.dumps(_drive(sys.argv[2:], sys.argv[1])), flush=True)
