"""``raymlops ui``: every page over a real home folder (no Ray), 404/400 pages, links that all
resolve, no external references, the layering, and the command line (bad ``--port``; the real
command with ``--port 0`` in a subprocess)."""

from __future__ import annotations

import ast
import contextlib
import re
import shutil
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from raymlops.cli import main
from raymlops.store import Store
from raymlops.ui import create_app
from tests.ui_home import FAILED_RUN, OK_RUN, UiHome, build_home, serving, ui_process

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> UiHome:
    return build_home(tmp_path_factory.mktemp("ui") / "home")


@contextlib.contextmanager
def ui_client(home: Path, ray_address: str | None = None) -> Iterator[httpx.Client]:
    """An HTTP client of the UI over ``home``, served by a real uvicorn on loopback."""
    with serving(create_app(home, ray_address)) as base, httpx.Client(base_url=base, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def client(home: UiHome) -> Iterator[httpx.Client]:
    with ui_client(home.home) as c:
        yield c


class Links(HTMLParser):
    """Every ``href``/``src``/``action`` of a page, and whether it has a script."""

    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[str] = []
        self.refs: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        if tag == "a" and a.get("href"):
            self.anchors.append(str(a["href"]))
        for key in ("href", "src", "action", "xlink:href"):
            if a.get(key):
                self.refs.append(str(a[key]))


def parse(text: str) -> Links:
    p = Links()
    p.feed(text)
    return p


def crawl(get, start: str = "/", limit: int = 300) -> dict[str, tuple[int, str]]:  # type: ignore[no-untyped-def]
    """Every page reachable from ``start`` through ``<a href>``: path -> (status, text)."""
    seen: dict[str, tuple[int, str]] = {}
    todo = [start]
    while todo and len(seen) < limit:
        path = todo.pop()
        if path in seen:
            continue
        r = get(path)
        seen[path] = (r.status_code, r.text)
        for href in parse(r.text).anchors:
            target = urljoin(path, href)
            parts = urlsplit(target)
            assert not parts.scheme and not parts.netloc, f"{path} links outside the UI: {href}"
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            if target not in seen:
                todo.append(target)
    return seen


# a reference the browser would follow: an attribute or a CSS url()/@import (data such as a
# snapshot's source URI, s3://…, is text on the page, not a reference)
EXTERNAL = re.compile(r"""\b(?:href|src|action|srcset)\s*=\s*["']?\s*(?:[a-z]+:)?//"""
                      r"""|url\(\s*["']?\s*(?:[a-z]+:)?//|@import""", re.I)


def test_every_link_resolves_and_no_page_refers_outside(client: httpx.Client, home: UiHome) -> None:
    pages = crawl(client.get)
    broken = {p: s for p, (s, _) in pages.items() if s != 200}
    assert broken == {}
    # the crawl reached every kind of page
    for path in ("/runs", f"/runs/{OK_RUN}", f"/runs/{FAILED_RUN}", "/snapshots", f"/snapshots/{home.snap_a}",
                 f"/snapshots/{home.snap_b}?against={home.snap_a}", "/models", "/models/quickstart",
                 "/models/quickstart/v1", "/models/quickstart/v3", "/deployments", "/audit"):
        assert path in pages, path
    for path, (_, text) in pages.items():
        links = parse(text)
        assert links.scripts == 0, path
        # the UI's own pages only (and the empty inline icon that spares the browser a /favicon.ico)
        assert all(r == "data:," or not (urlsplit(r).scheme or urlsplit(r).netloc) for r in links.refs), path
        assert not EXTERNAL.search(text), f"{path}: {EXTERNAL.search(text)}"


def test_overview_names_the_home_runs_snapshots_and_models(client: httpx.Client, home: UiHome) -> None:
    text = client.get("/").text
    assert str(home.home) in text and OK_RUN in text and FAILED_RUN in text and home.snap_b[:12] in text
    assert all(m in text for m in home.models) and "audit chain valid" in text


def test_runs_list_and_a_run_with_its_timeline_io_config_and_logs(client: httpx.Client, home: UiHome) -> None:
    text = client.get("/runs").text
    assert OK_RUN in text and FAILED_RUN in text and "succeeded" in text and "failed" in text
    assert "train: ZeroDivisionError: division by zero" in text
    assert FAILED_RUN in client.get("/runs?status=failed").text and OK_RUN not in client.get("/runs?status=failed").text
    r = client.get(f"/runs/{OK_RUN}")
    assert r.status_code == 200
    text = r.text
    assert f'<span id="run-id">{OK_RUN}</span>' in text and "raymlops run q.yaml" in text
    assert re.findall(r'<g class="step" data-step="([a-z]+)">', text) == ["ingest", "snapshot", "train"]
    assert len(re.findall(r"<rect ", text.split('id="timeline"')[1].split("</svg>")[0])) == 3
    assert "ingest log line two" in text and "&quot;model&quot;: &quot;logistic&quot;" in text  # logs, config
    assert f'href="/snapshots/{home.snap_a}"' in text and 'href="/models/quickstart/v1"' in text  # inputs/outputs
    assert "Failure" not in text


def test_a_failed_run_shows_the_explanation_and_the_users_traceback(client: httpx.Client) -> None:
    text = client.get(f"/runs/{FAILED_RUN}").text
    assert 'id="failure"' in text and "ZeroDivisionError: division by zero" in text
    assert "your objective divided by the number of positive labels" in text and "userfns.py:12 in objective" in text
    tb = text.split('<pre id="traceback">')[1].split("</pre>")[0]
    assert "return 1 / positives" in tb and "Traceback (most recent call last)" in tb


def test_snapshot_lineage_schema_profile_validation_and_checks(client: httpx.Client, home: UiHome) -> None:
    assert home.snap_a[:12] in client.get("/snapshots").text
    text = client.get(f"/snapshots/{home.snap_b}").text
    assert f'<code id="snapshot-id">{home.snap_b}</code>' in text
    assert f'href="/snapshots/{home.snap_a}"' in text and "mem://new.csv" in text and "t" * 16 in text  # lineage
    assert text.count('class="hist"') == 3  # a histogram per column: x, y, color
    assert all(f"<td>{c}</td>" for c in ("x", "y", "color"))
    assert "rows quarantined" in text and "quarantine" in text  # validation counts
    checks = text.split('class="checks"')[1].split("</table>")[0]
    assert f"?against={home.snap_a}" in checks  # the recorded drift check, linked


def test_a_numeric_columns_histogram_is_drawn_from_its_profile(client: httpx.Client, home: UiHome) -> None:
    text = client.get(f"/snapshots/{home.snap_a}").text
    svg = text.split('id="hist-c0"')[1].split("</svg>")[0]  # column x: 400 rows of a standard normal
    # the profile holds quantile bins: each bar's count is an estimate, and says so
    values = [float(v) for v in re.findall(r"<title>[^<]*: ([-0-9.e+]+) rows \(estimated\)</title></rect>", svg)]
    assert "histogram, estimated from the profile&#x27;s quantile bins" in svg
    assert len(values) == 30 and sum(values) == pytest.approx(400, abs=1)
    assert max(values) == max(values[10:20]) and max(values) > 4 * (values[0] + values[-1])  # a bell, not flat


def test_drift_against_another_snapshot_runs_the_diff_engine(client: httpx.Client, home: UiHome) -> None:
    audit_before = client.get("/audit").text.count('id="seq-')
    text = client.get(f"/snapshots/{home.snap_b}", params={"against": "train"}).text  # a tag works too
    assert f'data-against="{home.snap_a}" data-drift="true"' in text and "recorded by raymlops snapshot diff" in text
    assert re.search(r'<figure class="plot" data-column="x"><svg', text)  # the shifted column is plotted
    # the other way round nothing is recorded: computed now, and the UI writes nothing
    text = client.get(f"/snapshots/{home.snap_a}?against={home.snap_b}").text
    assert 'data-drift="true"' in text and "not recorded" in text and "exact tests" in text
    assert "approximate" not in text.split('id="drift"')[1].split("</div>")[0]
    assert client.get("/audit").text.count('id="seq-') == audit_before


def test_models_versions_gates_aliases_history_and_lineage(client: httpx.Client, home: UiHome) -> None:
    text = client.get("/models").text
    assert all(m in text for m in home.models) and "rejected" in text and "roc_auc &gt;= 0.99 failed" in text
    text = client.get("/models/quickstart").text
    aliases = text.split('class="aliases"')[1].split("</table>")[0]
    assert "champion" in aliases and "quickstart:v1" in aliases
    history = text.split('class="history"')[1].split("</table>")[0]
    assert "roll back for the test" in history and "quickstart:v3" in history
    text = client.get("/models/quickstart/v1").text
    assert '<code id="model-id">quickstart:v1</code>' in text
    lineage = text.split('id="lineage"')[1]
    assert [k for k in re.findall(r'data-kind="([a-z]+)"', lineage)] == ["code", "data", "model", "deployments"]
    assert f'href="/runs/{OK_RUN}"' in lineage and f'href="/snapshots/{home.snap_a}"' in lineage
    assert "quickstart at http://127.0.0.1:8000/quickstart" in lineage  # the recorded deployment
    assert "raymlops reproduce quickstart:v1" in text  # none recorded, and how to get one


def test_without_a_cluster_the_live_pages_say_so(client: httpx.Client) -> None:
    r = client.get("/deployments")
    assert r.status_code == 200 and "No Ray cluster is configured" in r.text and "quickstart" in r.text  # aliases
    for path in ("/monitors/quickstart", "/monitors/quickstart/report"):
        r = client.get(path)
        assert r.status_code == 200 and "No Ray cluster is configured" in r.text


def test_an_unreachable_cluster_is_a_plain_message_not_a_500(home: UiHome) -> None:
    import ray

    assert not ray.is_initialized()
    with ui_client(home.home, ray_address="127.0.0.1:1") as c:  # ray.init raises in unit tests
        for path in ("/deployments", "/monitors/quickstart"):
            r = c.get(path)
            assert r.status_code == 200 and "cannot reach the Ray cluster at 127.0.0.1:1" in r.text


def test_audit_filters_and_chain_status(client: httpx.Client, home: UiHome) -> None:
    text = client.get("/audit").text
    assert 'id="chain" class="note ok" data-ok="true"' in text and "audit chain valid" in text
    everything = text.count('id="seq-')
    assert everything >= 8
    models = client.get("/audit", params={"action": "model."}).text
    assert 0 < models.count('id="seq-') < everything and "snapshot.created" not in models.split("<table")[-1]
    assert client.get("/audit", params={"action": "snapshot.created"}).text.count('id="seq-') == 2
    assert client.get("/audit", params={"actor": "nobody@nowhere"}).text.count('id="seq-') == 0
    assert client.get("/audit", params={"since": "2d"}).text.count('id="seq-') == everything
    assert client.get("/audit", params={"until": "2000-01-01"}).text.count('id="seq-') == 0
    assert client.get("/audit", params={"id": "quickstart:v2"}).text.count('id="seq-') >= 1


def test_a_broken_chain_is_shown(home: UiHome, tmp_path: Path) -> None:
    copy = tmp_path / "home"
    shutil.copytree(home.home, copy)
    with Store.open(copy).metadata.transaction() as conn:
        conn.execute("UPDATE audit SET record_json = replace(record_json, 'test', 'tost') WHERE seq = 1")
    with ui_client(copy) as c:
        text = c.get("/audit").text
    assert 'data-ok="false"' in text and "CHAIN BROKEN: audit record 1" in text


@pytest.mark.parametrize(("path", "named"), [
    ("/runs/20991231-nope", "20991231-nope"), ("/snapshots/deadbeefdead", "deadbeefdead"),
    ("/models/nosuch", "nosuch"), ("/models/quickstart/v99", "quickstart:v99"), ("/monitors/x/y/z", "/monitors/x/y/z"),
])
def test_unknown_ids_are_a_404_page_naming_them(client: httpx.Client, path: str, named: str) -> None:
    r = client.get(path)
    assert r.status_code == 404 and named in r.text and "<h1>Not found</h1>" in r.text


@pytest.mark.parametrize(("query", "param"), [
    ("/runs?status=done", "status"), ("/audit?since=yesterday", "since"), ("/audit?until=soon", "until"),
    ("/snapshots/train?against=nosuch", "against"),
])
def test_bad_query_parameters_are_a_400_page_naming_them(client: httpx.Client, query: str, param: str) -> None:
    r = client.get(query)
    assert r.status_code == 400 and f"query parameter &#x27;{param}&#x27;" in r.text


def test_nothing_but_cli_imports_ui() -> None:
    from tests.unit.test_layers import PACKAGE, imported_modules

    importers = {str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py")
                 for _, name in imported_modules(p) if name.startswith("raymlops.ui")
                 and p.relative_to(PACKAGE).parts[0] != "ui"}
    assert importers == {"raymlops/cli/ui_cmd.py"}
    for path in (PACKAGE / "ui").glob("*.py"):
        assert len(path.read_text(encoding="utf-8").splitlines()) <= 500, path
        ast.parse(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("value", ["abc", "70000", "-1"])
def test_a_bad_port_exits_2_naming_it(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["ui", "--port", value])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --port: expected a port number 0-65535" in err and value in err


def test_the_real_command_serves_on_a_free_port(home: UiHome, capsys: pytest.CaptureFixture[str]) -> None:
    with ui_process(home.home, timeout_s=30) as base:
        r = httpx.get(base + "/models", timeout=5)
        assert r.status_code == 200 and "quickstart:v3" in r.text
        # the port is taken now: a second server says so in one line and exits 2
        port = base.rsplit(":", 1)[1]
        assert main(["ui", "--port", port, "--home", str(home.home)]) == 2
        assert f"--port {port}: cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_webhooks_page_shows_receivers_and_every_delivery_but_no_secret(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from raymlops.hooks import WebhookConfig, WebhookDB

    home = tmp_path / "home"
    Store.open(home)
    with ui_client(home) as c:
        empty = c.get("/webhooks")
        assert empty.status_code == 200 and "no webhook set up in this home" in empty.text
        monkeypatch.setenv("UI_TEST_HOOK_SECRET", "s3cr3t-value")
        db = WebhookDB(home)
        sub = db.add(WebhookConfig.model_validate({"url": "http://127.0.0.1:9/hook", "events": ["model.*"],
                                                   "secret_env": "UI_TEST_HOOK_SECRET"}))
        ok = db.record("evt-ok", "model.promoted", sub, "queued")
        db.update(ok, status="delivered", attempts=3, last_status_code=200, error=None)
        bad = db.record("evt-bad", "model.rolled_back", sub, "queued")
        db.update(bad, status="failed", attempts=5, last_status_code=None, error="connection refused")
        text = c.get("/webhooks").text
    assert f'id="webhook-{sub.id}"' in text and "http://127.0.0.1:9/hook" in text and "UI_TEST_HOOK_SECRET" in text
    assert "s3cr3t-value" not in text
    assert 'id="delivery-counts">1 delivered, 1 failed' in text
    deliveries = text.split('class="deliveries"')[1]
    assert deliveries.index("evt-bad") < deliveries.index("evt-ok")  # newest first
    assert "connection refused" in deliveries and "model.promoted" in deliveries


def test_the_monitor_page_shows_labels_before_the_first_label_window_closes() -> None:
    """The page said "no labels or estimates yet" while the monitor had matched 976 labels: it showed
    closed label windows only. The open one, and each canary's labelled rows, are shown too."""
    import numpy as np

    from raymlops.config import MonitorConfig
    from raymlops.monitor import Monitor, build_reference
    from raymlops.ui.live import performance_table

    rng = np.random.default_rng(0)
    m = Monitor(build_reference({"a": rng.normal(size=500)}), MonitorConfig(window_rows=1000, alerts={"log": False}))
    assert "no labels or estimates yet" in performance_table(m.status()["performance"])
    m.ingest({"a": rng.normal(size=10)}, np.ones(10), version="v1", request_ids=[f"c{i}" for i in range(10)])
    m.ingest({"a": rng.normal(size=4)}, np.zeros(4), version="v2", request_ids=[f"k{i}" for i in range(4)])
    m.feedback([f"c{i}" for i in range(10)] + ["k0", "k1"], [1] * 9 + [0] + [0, 1])
    html = performance_table(m.status()["performance"])
    assert "no labels or estimates yet" not in html
    assert "realised (open label window)" in html and ">10<" in html and ">0.9<" in html
    assert "realised, challenger v2" in html and ">0.5<" in html


def test_the_url_is_printed_once_connections_are_taken_and_only_this_machine_s_host_names_answer(
        home: UiHome) -> None:
    """The URL line came before the socket listened (a client that connected at once was refused);
    any Host header was answered, so a page elsewhere could rebind its name to 127.0.0.1 and read
    the UI."""
    import signal
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-m", "raymlops.cli", "ui", "--port", "0", "--home", str(home.home)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().strip().removeprefix("raymlops ui: ").rstrip("/")
        assert httpx.get(base + "/models", timeout=60).status_code == 200  # at once, no retry
        port = base.rsplit(":", 1)[1]
        for name in ("localhost", "127.0.0.1", f"127.0.0.1:{port}", f"localhost:{port}"):
            assert httpx.get(base + "/", headers={"Host": name}, timeout=30).status_code == 200, name
        refused = httpx.get(base + "/runs", headers={"Host": f"rebound.example.com:{port}"}, timeout=30)
        assert refused.status_code == 400 and "rebound.example.com" in refused.text
        assert OK_RUN not in refused.text
        head = httpx.head(base + "/models", timeout=30)  # link checkers and uptime probes
        assert head.status_code == 200 and head.headers["content-type"].startswith("text/html")
    finally:  # an impatient double Ctrl-C: the second one came during the shutdown (a traceback, once)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert "Traceback" not in err and err.rstrip().endswith("interrupted"), err


def test_the_ui_makes_no_home_and_refuses_a_home_whose_database_was_emptied(
        home: UiHome, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`raymlops ui` made a home at a mistyped --home; every read command (the UI too) wrote a new
    schema into a 0-byte metadata.db, after which doctor and audit verify read the home as valid."""
    import shutil

    missing = tmp_path / "mistyped"
    assert main(["ui", "--port", "0", "--home", str(missing)]) == 2
    assert f"no raymlops home at {missing}" in capsys.readouterr().err and not missing.exists()
    emptied = tmp_path / "emptied"
    shutil.copytree(home.home, emptied)
    for extra in ("metadata.db-wal", "metadata.db-shm"):
        (emptied / extra).unlink(missing_ok=True)
    (emptied / "metadata.db").write_bytes(b"")
    for argv in (["ui", "--port", "0"], ["models", "list"], ["audit", "verify"], ["runs", "list"]):
        assert main([*argv, "--home", str(emptied)]) == 2, argv
        assert "metadata.db is empty (0 bytes), though its artifacts are there" in capsys.readouterr().err
    assert (emptied / "metadata.db").stat().st_size == 0  # nothing written into it


def test_a_home_deleted_while_the_ui_runs_is_a_503_page_naming_it(home: UiHome, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "home"
    shutil.copytree(home.home, copy)
    with ui_client(copy) as c:
        assert c.get("/runs").status_code == 200
        shutil.rmtree(copy)
        for path in ("/", "/runs", "/models", "/audit"):
            r = c.get(path)
            assert r.status_code == 503 and str(copy / "metadata.db") in r.text, (path, r.text)
            assert "was the home folder moved or deleted?" in r.text


def test_an_empty_host_is_refused_and_a_bad_one_named(capsys: pytest.CaptureFixture[str], home: UiHome) -> None:
    assert main(["ui", "--host", "", "--home", str(home.home)]) == 2
    assert "--host: empty" in capsys.readouterr().err
    assert main(["ui", "--host", "bogus.invalid", "--port", "0", "--home", str(home.home)]) == 2
    assert "error: --host bogus.invalid: cannot listen on bogus.invalid:0" in capsys.readouterr().err


def test_the_clis_model_refs_lead_to_the_version_page(client: httpx.Client) -> None:
    """/models/NAME:vN and /models/NAME@ALIAS (the forms the CLI prints and takes) answered
    "model 'quickstart:v3' not found"."""
    for ref, page in (("quickstart:v3", "/models/quickstart/v3"), ("quickstart@champion", "/models/quickstart/v1")):
        r = client.get(f"/models/{ref}", follow_redirects=False)
        assert r.status_code == 307 and r.headers["location"] == page, (ref, r.status_code, r.headers)
        assert client.get(f"/models/{ref}", follow_redirects=True).status_code == 200
    for missing in ("quickstart:v99", "quickstart@nope"):
        r = client.get(f"/models/{missing}")
        assert r.status_code == 404 and missing in r.text, (missing, r.text)
