"""Signed webhooks (raymlops.hooks) against a real HTTP receiver on 127.0.0.1: signature, retries,
timeouts, dead receivers, the delivery record, config errors and a registry promotion."""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from sklearn.linear_model import LogisticRegression

from raymlops.cli import main
from raymlops.config import parse_config
from raymlops.exceptions import ConfigError
from raymlops.hooks import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Dispatcher,
    WebhookConfig,
    WebhookDB,
    emit,
    list_deliveries,
    sync_pipeline_webhooks,
    verify_signature,
)
from raymlops.registry.registry import promote, register_model
from raymlops.store import Store

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-Webhook-Value-9f8e7d"
ENV = "RAYMLOPS_TEST_WEBHOOK_SECRET"


class Receiver:
    """A real HTTP server on 127.0.0.1 that checks signatures; ``codes`` are answered in turn
    (then 200), each after ``delay_s``."""

    def __init__(self, secret: str | None = SECRET, codes: list[int] | None = None, delay_s: float = 0.0) -> None:
        self.secret = secret
        self.codes = list(codes or [])
        self.delay_s = delay_s
        self.requests: list[dict[str, Any]] = []
        self.verified: list[bool] = []
        self.released = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k: v for k, v in self.headers.items()}
                ok = outer.secret is None or verify_signature(
                    outer.secret, headers.get(TIMESTAMP_HEADER, ""), body, headers.get(SIGNATURE_HEADER, ""))
                outer.requests.append({"headers": headers, "body": body})
                outer.verified.append(ok)
                if outer.delay_s:
                    outer.released.wait(outer.delay_s)
                code = 401 if not ok else (outer.codes.pop(0) if outer.codes else 200)
                try:
                    self.send_response(code)
                    self.end_headers()
                    self.wfile.write(b"ok" if code == 200 else b"no")
                except OSError:
                    pass  # the client gave up (timeout)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(ENV, SECRET)
    return ENV


@pytest.fixture
def dispatcher() -> Iterator[Dispatcher]:
    sleeps: list[float] = []
    d = Dispatcher(maxsize=100, workers=2, drain_timeout_s=2.0, sleep=sleeps.append)
    d.sleeps = sleeps  # type: ignore[attr-defined]
    yield d
    d.close(timeout_s=2.0)


def _subscribe(home: Path, url: str, events: list[str] | None = None, **kw: Any) -> Any:
    cfg = WebhookConfig.model_validate({"url": url, "events": events or ["*"], "backoff_s": 0.01, **kw})
    return WebhookDB(home).add(cfg)


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------------ signature


def test_delivery_is_signed_and_the_receiver_rejects_a_tampered_body(
        tmp_path: Path, receiver: Receiver, secret_env: str, dispatcher: Dispatcher) -> None:
    _subscribe(tmp_path, receiver.url, ["model.promoted"], secret_env=secret_env)
    event = emit(tmp_path, "model.promoted", {"model": "churn:v2", "alias": "champion"}, dispatcher=dispatcher)
    assert event is not None
    assert dispatcher.wait_idle(10)
    assert receiver.verified == [True]
    got = receiver.requests[0]
    payload = json.loads(got["body"])
    assert payload == {"id": event.id, "type": "model.promoted", "created_at": event.created_at,
                       "data": {"model": "churn:v2", "alias": "champion"}}
    assert got["headers"][EVENT_ID_HEADER] == event.id
    assert got["headers"][SIGNATURE_HEADER].startswith("sha256=")
    # the same headers with a changed body: the receiver refuses it
    tampered = got["body"].replace(b"churn:v2", b"churn:v9")
    req = urllib.request.Request(receiver.url, data=tampered, method="POST",
                                 headers={TIMESTAMP_HEADER: got["headers"][TIMESTAMP_HEADER],
                                          SIGNATURE_HEADER: got["headers"][SIGNATURE_HEADER]})
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(req, timeout=5)  # noqa: S310
    assert info.value.code == 401
    assert receiver.verified == [True, False]
    rows = list_deliveries(tmp_path)
    assert [(r["event_id"], r["status"], r["attempts"], r["last_status_code"]) for r in rows] == [
        (event.id, "delivered", 1, 200)]


def test_events_nobody_wants_are_not_sent_and_need_no_database(tmp_path: Path, dispatcher: Dispatcher) -> None:
    assert emit(tmp_path / "fresh", "model.promoted", {}, dispatcher=dispatcher) is None
    assert not (tmp_path / "fresh" / "webhooks.db").exists()
    _subscribe(tmp_path, "http://127.0.0.1:9/x", ["retrain.*"])
    assert emit(tmp_path, "model.promoted", {}, dispatcher=dispatcher) is None
    assert list_deliveries(tmp_path) == []


# ------------------------------------------------------------------------------------ retries


def test_500_twice_then_200_is_delivered_after_three_attempts(
        tmp_path: Path, secret_env: str, dispatcher: Dispatcher) -> None:
    r = Receiver(codes=[500, 500])
    try:
        _subscribe(tmp_path, r.url, ["model.registered"], secret_env=secret_env, backoff_s=0.5, max_attempts=5)
        event = emit(tmp_path, "model.registered", {"model": "m:v1"}, dispatcher=dispatcher)
        assert event is not None
        assert dispatcher.wait_idle(10)
    finally:
        r.close()
    assert len(r.requests) == 3 and all(r.verified)
    assert {json.loads(q["body"])["id"] for q in r.requests} == {event.id}  # same id on every try
    assert dispatcher.sleeps == [0.5, 1.0]  # type: ignore[attr-defined]  # exponential backoff
    [row] = list_deliveries(tmp_path)
    assert row["status"] == "delivered" and row["attempts"] == 3 and row["last_status_code"] == 200
    assert row["error"] is None and row["delivered_at"] >= row["created_at"]


def test_a_4xx_answer_is_not_retried(tmp_path: Path, dispatcher: Dispatcher) -> None:
    r = Receiver(secret=None, codes=[404])
    try:
        _subscribe(tmp_path, r.url, max_attempts=5)
        emit(tmp_path, "model.promoted", {}, dispatcher=dispatcher)
        assert dispatcher.wait_idle(10)
    finally:
        r.close()
    [row] = list_deliveries(tmp_path)
    assert (row["status"], row["attempts"], row["last_status_code"]) == ("failed", 1, 404)


# ------------------------------------------------------------------------------------ slow and dead receivers


def test_a_slow_receiver_times_out_and_never_holds_up_the_emitter(tmp_path: Path, dispatcher: Dispatcher) -> None:
    r = Receiver(secret=None, delay_s=5.0)
    try:
        _subscribe(tmp_path, r.url, ["monitor.alert"], timeout_s=0.3, max_attempts=2)
        t0 = time.perf_counter()
        event = emit(tmp_path, "monitor.alert", {"deployment": "d"}, dispatcher=dispatcher)
        emitted_in = time.perf_counter() - t0
        assert event is not None
        assert emitted_in < 1.5, emitted_in  # the receiver's delay is 5 s (loose: a loaded CI machine)
        assert dispatcher.wait_idle(10)
    finally:
        r.close()
    [row] = list_deliveries(tmp_path)
    assert row["status"] == "failed" and row["attempts"] == 2
    assert "timeout after 0.3s" in row["error"]


def test_a_dead_port_is_recorded_failed_without_blocking(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_dead_port()}/hook"
    _subscribe(tmp_path, url, max_attempts=3, backoff_s=0.5)  # real waits: 0.5 s + 1 s between the tries
    d = Dispatcher()
    t0 = time.perf_counter()
    event = emit(tmp_path, "deployment.changed", {"deployment": "d"}, dispatcher=d)
    emitted_in = time.perf_counter() - t0
    assert d.wait_idle(10)
    delivered_in = time.perf_counter() - t0
    d.close(timeout_s=1)
    assert delivered_in >= 1.5 and emitted_in < 0.75, (emitted_in, delivered_in)
    [row] = list_deliveries(tmp_path)
    assert event is not None and row["event_id"] == event.id and row["url"] == url
    assert row["status"] == "failed" and row["attempts"] == 3 and row["last_status_code"] is None
    assert "refused" in row["error"].lower()


def test_a_full_queue_records_the_event_dropped_instead_of_blocking(tmp_path: Path) -> None:
    r = Receiver(secret=None, delay_s=5.0)
    d = Dispatcher(maxsize=1, workers=1, sleep=lambda s: None)
    try:
        _subscribe(tmp_path, r.url, timeout_s=5.0, max_attempts=1)
        t0 = time.perf_counter()
        for i in range(4):
            emit(tmp_path, "model.promoted", {"i": i}, dispatcher=d)
        assert time.perf_counter() - t0 < 2.5  # the receiver holds each request 5 s
        statuses = [row["status"] for row in list_deliveries(tmp_path)]
        assert statuses.count("dropped") >= 2
        dropped = [row for row in list_deliveries(tmp_path) if row["status"] == "dropped"]
        assert all("queue full" in row["error"] for row in dropped)
    finally:
        r.released.set()
        assert d.close(timeout_s=10)
        r.close()


def test_close_drains_within_its_timeout(tmp_path: Path, receiver: Receiver, secret_env: str) -> None:
    d = Dispatcher(workers=1)
    _subscribe(tmp_path, receiver.url, secret_env=secret_env)
    for i in range(3):
        emit(tmp_path, "model.registered", {"i": i}, dispatcher=d)
    assert d.close(timeout_s=10)
    assert [row["status"] for row in list_deliveries(tmp_path)] == ["delivered"] * 3
    assert emit(tmp_path, "model.registered", {}, dispatcher=d) is not None  # after close: recorded dropped
    assert list_deliveries(tmp_path, limit=1)[0]["status"] == "dropped"


def test_deliveries_unfinished_at_exit_are_recorded_dropped_and_said(
        tmp_path: Path, secret_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A CLI command's events and a receiver slower than the exit's drain: the deliveries stayed
    `queued` for good (nothing would ever retry them) and nothing was said."""
    slow = Receiver(delay_s=5.0)
    try:
        d = Dispatcher(workers=1, drain_timeout_s=0.5)
        _subscribe(tmp_path, slow.url, secret_env=secret_env, timeout_s=3.0)
        for i in range(2):
            emit(tmp_path, "model.promoted", {"i": i}, dispatcher=d)
        assert d.close() is False
        rows = list_deliveries(tmp_path)
        assert [r["status"] for r in rows] == ["dropped", "dropped"], rows
        assert all("the process exited 0.5 s after asking" in r["error"] for r in rows)
        err = capsys.readouterr().err
        assert "warning: webhooks: 2 deliveries were not sent before exit" in err
    finally:
        slow.released.set()
        slow.close()


# ------------------------------------------------------------------------------------ the secret


def test_the_secret_never_reaches_the_database_or_the_logs(
        tmp_path: Path, receiver: Receiver, secret_env: str, dispatcher: Dispatcher,
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.DEBUG)
    _subscribe(tmp_path, receiver.url, secret_env=secret_env)
    _subscribe(tmp_path, f"http://127.0.0.1:{_dead_port()}/x", secret_env=secret_env, max_attempts=2)
    emit(tmp_path, "model.promoted", {"model": "m:v1"}, dispatcher=dispatcher)
    assert dispatcher.wait_idle(10)
    assert main(["--home", str(tmp_path), "webhooks", "list", "--json"]) == 0
    assert main(["--home", str(tmp_path), "webhooks", "deliveries", "--json"]) == 0
    assert main(["--home", str(tmp_path), "status"]) == 0
    out = capsys.readouterr()
    assert ENV in out.out and SECRET not in out.out + out.err
    assert SECRET not in caplog.text
    assert any("failed after 2 tries" in m for m in caplog.messages)
    files = list(tmp_path.rglob("*"))
    assert any(f.name == "webhooks.db" for f in files)
    for f in files:
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f


# ------------------------------------------------------------------------------------ config


def _pipeline(webhooks: Any) -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text(encoding="utf-8"))
    data["webhooks"] = webhooks
    return dict(data)


@pytest.mark.parametrize(("entry", "expected"), [
    ({"url": "ftp://example.com/x", "events": ["model.promoted"]},
     "cfg.yaml: webhooks[0].url: expected an http:// or https:// URL with a host, found 'ftp://example.com/x'"),
    ({"url": "https://example.com/x", "events": ["model.promoted", "model.deleted"]},
     "cfg.yaml: webhooks[0].events[1]: expected an event type among model.registered"),
    ({"url": "https://example.com/x", "events": ["*"], "secret_env": "not a name"},
     "cfg.yaml: webhooks[0].secret_env: expected an environment variable name"),
    ({"url": "https://example.com/x", "events": ["*"], "secret": "inline"},
     "cfg.yaml: webhooks[0].secret: unknown key; expected one of backoff_s, events"),
    # a stranger's: each was taken, and failed every delivery (the password printed in each warning)
    ({"url": "https://bob:hunter2@example.com/x", "events": ["*"]},
     "cfg.yaml: webhooks[0].url: expected no credentials in the URL (they would be stored and shown; sign the "
     "events with secret_env instead), found https://***@example.com/x"),
    ({"url": "http://127.0.0.1:99999/hook", "events": ["*"]},
     "cfg.yaml: webhooks[0].url: expected a port from 1 to 65535, found '99999'"),
    ({"url": "http://exa mple.com/hook", "events": ["*"]}, "cfg.yaml: webhooks[0].url: expected a host without spaces"),
])
def test_config_errors_name_the_key(entry: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(_pipeline([entry]), "cfg.yaml")
    assert str(info.value).startswith(expected), str(info.value)
    assert "hunter2" not in str(info.value)


def test_a_missing_secret_variable_is_an_error_naming_the_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver, dispatcher: Dispatcher) -> None:
    monkeypatch.delenv(ENV, raising=False)
    cfg = parse_config(_pipeline([{"url": receiver.url, "events": ["*"], "secret_env": ENV}]), "cfg.yaml")
    assert "webhooks" in cfg.model_dump(mode="json")  # the name of the variable only
    with pytest.raises(ConfigError, match=rf"^webhooks\[0\]\.secret_env: expected environment variable {ENV}"):
        sync_pipeline_webhooks(tmp_path, cfg.name, cfg.webhooks)
    # stored while it was set, missing at delivery: recorded failed, naming the key, nothing sent
    monkeypatch.setenv(ENV, SECRET)
    [sub] = sync_pipeline_webhooks(tmp_path, cfg.name, cfg.webhooks)
    assert sub.key == "webhooks[0]" and sub.source == f"pipeline:{cfg.name}"
    monkeypatch.delenv(ENV)
    emit(tmp_path, "model.promoted", {}, dispatcher=dispatcher)
    assert dispatcher.wait_idle(10)
    [row] = list_deliveries(tmp_path)
    assert row["status"] == "failed" and row["attempts"] == 0
    assert row["error"].startswith(f"webhooks[0].secret_env: expected environment variable {ENV}")
    assert receiver.requests == []
    # a config without webhooks removes the pipeline's earlier ones
    assert sync_pipeline_webhooks(tmp_path, cfg.name, []) == []
    assert WebhookDB(tmp_path).subscriptions() == []


def test_cli_add_list_remove_and_option_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = ["--home", str(tmp_path)]
    assert main([*home, "webhooks", "add", "https://example.com/h", "--events", "model.*", "monitor.alert",
                 "--secret-env", ENV, "--json"]) == 0
    added = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert added["events"] == ["model.*", "monitor.alert"] and added["secret_env"] == ENV
    assert main([*home, "webhooks", "list"]) == 0
    assert added["id"] in capsys.readouterr().out
    # the same URL again: refused (two receivers got every event twice)
    assert main([*home, "webhooks", "add", "https://example.com/h", "--events", "model.*"]) == 2
    assert f"is already a receiver ({added['id']}" in capsys.readouterr().err
    assert main([*home, "webhooks", "add", "https://example.com/h", "--events", "model.exploded"]) == 2
    assert "--events: expected an event type" in capsys.readouterr().err
    assert main([*home, "webhooks", "add", "example.com", "--events", "*"]) == 2
    assert "URL: expected an http:// or https:// URL" in capsys.readouterr().err
    assert main([*home, "webhooks", "remove", added["id"]]) == 0
    assert main([*home, "webhooks", "remove", added["id"]]) == 2
    assert main([*home, "webhooks", "list", "--json"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "[]"

    # both changes are in the audit log (who, when, which receiver: its host and the URL's hash, whose
    # path can be the receiver's secret), and the chain holds
    from raymlops import audit
    from raymlops.store.metadata import MetadataStore

    log = MetadataStore(tmp_path / "metadata.db")
    recs = [(r.action, r.record["ids"], r.record["how"]) for r in audit.records(log)]
    assert [(a, ids) for a, ids, _ in recs] == [("webhook.added", {"webhook": added["id"]}),
                                                ("webhook.removed", {"webhook": added["id"]})]
    how = recs[0][2]
    assert how["host"] == "example.com" and how["url_sha256"] == hashlib.sha256(b"https://example.com/h").hexdigest()
    assert how["events"] == ["model.*", "monitor.alert"] and how["signed_with"] == ENV and how["source"] == "cli"
    assert "https://example.com/h" not in json.dumps([r.record for r in audit.records(log)])
    # a pipeline's webhooks: recorded when they change, not on every run
    hooks = [WebhookConfig(url="https://example.com/p", events=["model.*"])]
    for _ in range(2):
        sync_pipeline_webhooks(tmp_path, "demo", hooks)
    sync_pipeline_webhooks(tmp_path, "demo", [])
    assert [(r.action, r.record["how"]["source"]) for r in audit.records(log)][2:] == [
        ("webhook.added", "pipeline:demo"), ("webhook.removed", "pipeline:demo")]
    assert audit.verify(log)[0]


# ------------------------------------------------------------------------------------ the registry


def test_a_registry_promotion_emits_model_promoted(
        tmp_path: Path, receiver: Receiver, secret_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    d = Dispatcher(sleep=lambda s: None)
    monkeypatch.setattr("raymlops.hooks.dispatch._default", d)
    monkeypatch.setattr("raymlops.hooks.dispatch._default_pid", __import__("os").getpid())
    store = Store.open(tmp_path)
    _subscribe(tmp_path, receiver.url, ["model.promoted", "model.rolled_back"], secret_env=secret_env)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 2))
    y = (X[:, 0] > 0).astype(int)
    kw: dict[str, Any] = {"snapshot_id": "snap-" + "a" * 60, "signature": {"inputs": [{"name": "a"}, {"name": "b"}]},
                          "metrics": {"roc_auc": 0.9}, "gate": {"status": "passed", "reasons": []},
                          "lineage": {"config_hash": "c" * 64}}
    v1 = register_model(store, "churn", LogisticRegression().fit(X, y), **kw)
    v2 = register_model(store, "churn", LogisticRegression(C=0.5).fit(X, y), alias=None, **kw)
    promote(store, v2.id, reason="better on the fresh holdout")
    assert d.close(timeout_s=10)
    # two sender threads: arrival order is not emission order, created_at is
    bodies = sorted((json.loads(q["body"]) for q in receiver.requests), key=lambda b: b["created_at"])
    promoted = [b for b in bodies if b["type"] == "model.promoted"]
    assert [b["data"]["model"] for b in promoted] == [v1.id, v2.id]  # the gate's move, then promote()
    assert promoted[-1]["data"] == {"model": v2.id, "name": "churn", "alias": "champion", "previous": v1.id,
                                    "reason": "better on the fresh holdout"}
    assert all(receiver.verified)
    assert {r["status"] for r in list_deliveries(tmp_path)} == {"delivered"}
    for f in tmp_path.rglob("*"):  # the registry's metadata.db and audit log, the artifacts, webhooks.db
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f


def test_monitor_alerts_deployment_changes_and_retrain_steps_are_emitted(
        tmp_path: Path, receiver: Receiver, secret_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from raymlops.config import MonitorAlertsConfig
    from raymlops.loop.controller import CycleResult, RetrainController
    from raymlops.loop.policy import Trigger
    from raymlops.monitor.alerts import Alert
    from raymlops.monitor.sinks import send_alerts
    from raymlops.serve.traffic import _record

    d = Dispatcher(sleep=lambda s: None)
    monkeypatch.setattr("raymlops.hooks.dispatch._default", d)
    monkeypatch.setattr("raymlops.hooks.dispatch._default_pid", __import__("os").getpid())
    store = Store.open(tmp_path)
    _subscribe(tmp_path, receiver.url, ["monitor.alert", "deployment.changed", "retrain.*"], secret_env=secret_env)
    alert = Alert("feature_drift", "feature_drift:age", "warning", "age drifted", 0.3, 0.1, time.time())
    assert send_alerts([alert], MonitorAlertsConfig(log=False, audit=True), "churn", str(tmp_path)) == []
    _record(store, "deployment.traffic_changed", "churn", "churn:v2", "canary 10%", {})
    cfg = parse_config(_pipeline([]))
    trigger = Trigger("feature_drift", "feature_drift:age", "age drifted", time.time())
    res = CycleResult(cycle="c1", trigger=trigger, route="churn")
    RetrainController(cfg, store, progress=lambda line: None)._audit(res, "retrain.triggered", {"model": "m:v1"}, {})
    assert d.close(timeout_s=10)
    bodies = {json.loads(q["body"])["type"]: json.loads(q["body"])["data"] for q in receiver.requests}
    assert bodies["monitor.alert"]["alert"]["key"] == "feature_drift:age"
    assert bodies["deployment.changed"] == {"action": "deployment.traffic_changed", "deployment": "churn",
                                            "model": "churn:v2", "reason": "canary 10%"}
    assert bodies["retrain.triggered"]["cycle"] == "c1" and bodies["retrain.triggered"]["model"] == "m:v1"
    assert all(receiver.verified)
    for f in tmp_path.rglob("*"):  # metadata.db and its audit log included
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f
