"""``POST /<route>/feedback`` over real HTTP: labels for served requests reach the monitor by
request id, its performance check sees a change of P(y|x) that leaves the inputs alone, and
every malformed body gets its status and the field it got wrong (never 500). Labels posted right
after their answer (before the row reaches the monitor) wait and are joined, with one client
and with 16; a route that requires a bearer token refuses forged labels with 401 and changes
nothing."""

from __future__ import annotations

import json
import os
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from raymlops.config import ServeConfig
from raymlops.store.home import Store
from tests.integration.conftest import serve_port
from tests.integration.serving_helpers import FEATURES, predict, request, row, toy_data, toy_store

pytestmark = pytest.mark.integration

ROUTE = "fb"
BARE = "fb-bare"  # the same model, served without a monitor
GUARDED = "fb-auth"  # the same model, /feedback only with a bearer token
TOKEN_ENV = "RAYMLOPS_TEST_FEEDBACK_TOKEN"
# set at collection, before the session's Ray starts: the replicas inherit it (never a config value)
TOKEN = os.environ.setdefault(TOKEN_ENV, secrets.token_urlsafe(24))
MONITOR = {"seed": 0, "window_rows": 100, "alerts": {"log": False, "audit": False},
           "performance": {"baseline_labels": 100, "window_labels": 100, "min_labels": 50}}


@pytest.fixture(scope="module")
def served(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Store]]:

    from raymlops.monitor.lifecycle import start_monitor, stop_monitor
    from raymlops.monitor.reference import build_reference
    from raymlops.ray_session import NAMESPACE
    from raymlops.serve.deploy import undeploy
    from raymlops.serve.traffic import deploy_model

    store = toy_store(tmp_path_factory.mktemp("feedback") / "home", name=ROUTE)
    X, _ = toy_data()
    cfg = ServeConfig(port=serve_port(), batch_wait_timeout_s=0.002, max_body_bytes=200_000, monitor_budget=1.0,
                      monitor_flush_interval_s=0.05)
    try:
        start_monitor(ROUTE, build_reference({n: X[:, j] for j, n in enumerate(FEATURES)}),
                      MONITOR, NAMESPACE, detached=False)
        start_monitor(GUARDED, build_reference({n: X[:, j] for j, n in enumerate(FEATURES)}),
                      MONITOR, NAMESPACE, detached=False)
        endpoint = deploy_model(store, f"{ROUTE}@champion", route=ROUTE, serve_config=cfg, reason="test")
        bare = deploy_model(store, f"{ROUTE}@champion", route=BARE, serve_config=cfg, monitor=False, reason="test")
        deploy_model(store, f"{ROUTE}@champion", route=GUARDED, reason="test",
                     serve_config=cfg.model_copy(update={"require_token": True, "token_env": TOKEN_ENV}))
        yield endpoint, bare, store
    finally:
        undeploy(ROUTE, shutdown=False)
        undeploy(BARE, shutdown=False)
        undeploy(GUARDED, shutdown=False)
        stop_monitor(ROUTE, NAMESPACE)
        stop_monitor(GUARDED, NAMESPACE)


def _feedback(url: str, body: Any) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return request(f"{url}/feedback", raw)


def _status(route: str = ROUTE) -> dict[str, Any]:
    from raymlops.monitor.lifecycle import monitor_status
    from raymlops.ray_session import NAMESPACE

    return monitor_status(route, NAMESPACE)


def _serve(url: str, rows: list[list[float]]) -> list[tuple[str, float]]:
    """(request id, prediction) of one single-row request per row, once the monitor has them."""
    before = _status()["performance"]["pending"]
    out = []
    for x in rows:
        r = predict(url, {"instances": [row(x)]})
        assert r.status == 200, r.body
        out.append((r.body["request_id"], float(r.body["predictions"][0])))
    deadline = time.monotonic() + 30
    while _status()["performance"]["pending"] < before + len(rows) and time.monotonic() < deadline:
        time.sleep(0.2)
    return out


def test_labels_are_matched_by_request_id_and_a_label_only_change_alerts(served: tuple[str, str, Store]) -> None:
    url, _, _ = served
    X, _ = toy_data()
    first = _serve(url, X[:150].tolist())
    # 100 correct labels: the baseline (accuracy 1), plus ids nobody served
    r = _feedback(url, {"request_ids": [i for i, _ in first[:100]] + ["never-served-1", "never-served-2"],
                        "labels": [p for _, p in first[:100]] + [1, 0]})
    assert r.status == 200, r.body
    assert (r.body["matched"], r.body["unmatched"]) == (100, 2)
    assert r.body["pending"] >= 50 and r.headers["x-request-id"] == r.body["request_id"]
    st = _status()["performance"]
    assert st["baseline"]["accuracy"] == 1.0 and st["matched"] >= 100
    # the same labels again: already scored, so nothing matches
    again = _feedback(url, {"request_ids": [i for i, _ in first[:10]], "labels": [p for _, p in first[:10]]})
    assert again.status == 200 and (again.body["matched"], again.body["unmatched"]) == (0, 10)
    # the world changes: the same inputs now carry the opposite labels
    second = first[100:] + _serve(url, X[150:200].tolist())
    wrong = _feedback(url, {"request_ids": [i for i, _ in second], "labels": [1 - p for _, p in second]})
    assert wrong.status == 200 and (wrong.body["matched"], wrong.body["unmatched"]) == (100, 0)
    status = _status()
    perf = status["performance"]
    assert perf["last_window"]["overall"]["accuracy"] == 0.0 and perf["windows"] >= 1
    alerts = [a for a in status["alerts"]["recent"] if a["kind"] == "performance"]
    assert any(a["key"] == "performance:accuracy:all" for a in alerts), status["alerts"]
    assert status["alerts"]["totals"].get("dataset_drift", 0) == 0  # the inputs did not move


def test_a_multi_row_request_takes_a_list_of_labels(served: tuple[str, str, Store]) -> None:
    url, _, _ = served
    X, _ = toy_data()
    r = predict(url, {"instances": [row(x) for x in X[200:203]]})
    assert r.status == 200
    rid, preds = r.body["request_id"], r.body["predictions"]
    matched_before = _status()["performance"]["labels"]["matched"]
    reply = _feedback(url, {"request_ids": [rid], "labels": [preds], "detail": True})
    assert reply.status == 200 and reply.body["matched"] + reply.body["waiting"] == 3  # waiting: row on its way
    assert len(reply.body["outcomes"]) == 1 and len(reply.body["outcomes"][0]) == 3
    deadline = time.monotonic() + 30
    while _status()["performance"]["labels"]["matched"] < matched_before + 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _status()["performance"]["labels"]["matched"] == matched_before + 3
    row_key = _feedback(url, {"request_ids": [f"{rid}/1"], "labels": [preds[1]]})
    assert row_key.status == 200 and row_key.body["unknown"] == 1  # scored above already
    # a list of another length than the request's rows: 422 naming it (it matched the first rows)
    rows_before = _status()["rows_total"]
    r = predict(url, {"instances": [row(x) for x in X[203:206]]})
    deadline = time.monotonic() + 30
    while _status()["rows_total"] < rows_before + 3 and time.monotonic() < deadline:  # the rows reached the monitor
        time.sleep(0.1)
    short = _feedback(url, {"request_ids": [r.body["request_id"]], "labels": [r.body["predictions"][:2]]})
    assert short.status == 422 and short.body["error"] == "invalid_feedback", short.body
    assert "answered 3 rows, so its list needs 3 labels (one per row), found 2" in short.body["message"]
    right = _feedback(url, {"request_ids": [r.body["request_id"]], "labels": [r.body["predictions"]]})
    assert right.status == 200 and right.body["matched"] == 3, right.body


BAD = [
    # (id, body, status, error, words in the message)
    ("bad-json", b'{"request_ids": [', 400, "malformed_json", ["not valid JSON"]),
    ("empty-body", b"", 400, "malformed_json", ["request_ids"]),
    ("not-an-object", b"[1, 2]", 400, "bad_request", ["JSON object"]),
    ("missing-labels", {"request_ids": ["a"]}, 422, "invalid_feedback", ["missing field 'labels'"]),
    ("missing-ids", {"labels": [1]}, 422, "invalid_feedback", ["missing field 'request_ids'"]),
    ("ids-not-list", {"request_ids": "a", "labels": [1]}, 422, "invalid_feedback", ["'request_ids' must be a list"]),
    ("labels-not-list", {"request_ids": ["a"], "labels": {"a": 1}}, 422, "invalid_feedback",
     ["'labels' must be a list"]),
    ("lengths-differ", {"request_ids": ["a", "b", "c"], "labels": [1, 0]}, 422, "invalid_feedback",
     ["differ in length", "3 and 2"]),
    ("too-many-ids", {"request_ids": ["a"] * 10_001, "labels": [1] * 10_001}, 422, "invalid_feedback",
     ["10001 ids", "10000"]),
    ("label-bool", {"request_ids": ["a"], "labels": [True]}, 422, "invalid_feedback", ["labels[0]", "bool"]),
    ("label-object", {"request_ids": ["a", "b"], "labels": [1, {"y": 1}]}, 422, "invalid_feedback",
     ["labels[1]", "dict"]),
    ("id-not-string", {"request_ids": [12], "labels": [1]}, 422, "invalid_feedback", ["request_ids[0]"]),
    ("too-large", {"request_ids": ["a"], "labels": [1], "pad": "x" * 250_000}, 413, "payload_too_large",
     ["200000"]),
]


@pytest.mark.parametrize(("body", "status", "error", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_malformed_feedback_gets_its_status_and_field(served: tuple[str, str, Store], body: Any, status: int,
                                                      error: str, words: list[str]) -> None:
    url, _, _ = served
    r = _feedback(url, body)
    assert r.status == status, r.body
    assert r.body["error"] == error, r.body
    for word in words:
        assert word in r.body["message"], (word, r.body["message"])
    if status == 422:
        assert r.body["details"][0]["field"] in ("request_ids", "labels")
    assert r.headers["x-request-id"] == r.body["request_id"]
    text = request(f"{url}/feedback", b'{"request_ids": ["a"], "labels": [1]}', headers={"Content-Type": "text/plain"})
    assert text.status == 415


def test_a_route_without_a_monitor_answers_409(served: tuple[str, str, Store]) -> None:
    _, bare, _ = served
    r = _feedback(bare, {"request_ids": ["a"], "labels": [1]})
    assert r.status == 409 and r.body["error"] == "no_monitor"
    assert "without a monitor" in r.body["message"] and BARE in r.body["message"]
    assert predict(bare, {"instances": [row(toy_data()[0][0])]}).status == 200  # it still serves


# ------------------------------------------------------------------ labels before their rows


def _label_right_after_each_answer(url: str, xs: list[list[float]], out: list[str]) -> None:
    """Predict one row, post its label at once (the prediction as label); the outcome when posted."""
    for x in xs:
        r = predict(url, {"instances": [row(x)]})
        assert r.status == 200, r.body
        fb = _feedback(url, {"request_ids": [r.body["request_id"]], "labels": [r.body["predictions"][0]],
                             "detail": True})
        assert fb.status == 200, fb.body
        out.append(fb.body["outcomes"][0])


def _joined_share(url: str, clients: int, per_client: int) -> tuple[float, dict[str, int], list[str]]:
    X, _ = toy_data()
    before = _status()["performance"]["labels"]
    outcomes: list[str] = []
    threads = [threading.Thread(target=_label_right_after_each_answer,
                                args=(url, X[(c * per_client) % 300:][:per_client].tolist(), outcomes))
               for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(outcomes) == clients * per_client
    deadline = time.monotonic() + 30  # every row handed to the monitor: nothing of ours waits any more
    while _status()["performance"]["labels"]["waiting"] > before["waiting"] and time.monotonic() < deadline:
        time.sleep(0.1)
    after = _status()["performance"]["labels"]
    delta = {k: after[k] - before[k] for k in ("received", "matched", "matched_late", "expired", "unknown")}
    assert delta["received"] == len(outcomes)
    return delta["matched"] / len(outcomes), delta, outcomes


def test_labels_posted_right_after_each_answer_are_joined_one_client(served: tuple[str, str, Store]) -> None:
    url, _, _ = served
    share, delta, outcomes = _joined_share(url, clients=1, per_client=200)
    assert share >= 0.99, (share, delta)
    assert set(outcomes) <= {"matched", "waiting"}
    print(f"1 client: {delta['matched']} of {len(outcomes)} joined, {delta['matched_late']} of them after "
          f"waiting for their row; when posted: {outcomes.count('waiting')} waiting")


def test_labels_posted_right_after_each_answer_are_joined_16_clients(served: tuple[str, str, Store]) -> None:
    url, _, _ = served
    share, delta, outcomes = _joined_share(url, clients=16, per_client=25)
    assert share >= 0.99, (share, delta)
    print(f"16 clients: {delta['matched']} of {len(outcomes)} joined, {delta['matched_late']} of them after "
          f"waiting for their row")


def test_labels_posted_later_are_all_joined(served: tuple[str, str, Store]) -> None:
    url, _, _ = served
    X, _ = toy_data()
    answered = _serve(url, X[300:400].tolist())  # returns once the monitor holds every row
    time.sleep(1.0)  # "later": the prediction store keeps rows by count, not by age (unit-tested over minutes)
    r = _feedback(url, {"request_ids": [i for i, _ in answered], "labels": [p for _, p in answered]})
    assert r.status == 200 and (r.body["matched"], r.body["waiting"], r.body["unknown"]) == (100, 0, 0)
    assert {"received", "matched", "waiting", "expired", "unknown"} <= set(r.body["totals"])
    st = _status()
    labels = st["performance"]["labels"]
    assert labels["received"] == labels["matched"] + labels["waiting"] + labels["expired"] + labels["unknown"]
    # the served probabilities came with the rows: performance is estimated from them (CBPE)
    estimated = st["performance"]["estimated"]
    assert estimated["rows"] >= 100 and estimated["rows_without_scores"] == 0, estimated


# ------------------------------------------------------------------------------ trusted labels


def _guarded_url(url: str) -> str:
    return url.rsplit("/", 1)[0] + f"/{GUARDED}"


def test_forged_labels_without_the_token_get_401_and_change_nothing(served: tuple[str, str, Store]) -> None:
    url, _, _ = served
    guarded = _guarded_url(url)
    X, _ = toy_data()
    answered = []
    for x in X[:120]:
        r = predict(guarded, {"instances": [row(x)]})
        assert r.status == 200  # predictions need no token
        answered.append((r.body["request_id"], float(r.body["predictions"][0])))
    deadline = time.monotonic() + 30
    while _status(GUARDED)["performance"]["pending"] < 120 and time.monotonic() < deadline:
        time.sleep(0.1)
    before = _status(GUARDED)
    assert before["performance"]["pending"] == 120
    forged = json.dumps({"request_ids": [i for i, _ in answered], "labels": [1 - p for _, p in answered]}).encode()
    for headers in ({"Content-Type": "application/json"},
                    {"Content-Type": "application/json", "Authorization": "Bearer not-the-token"},
                    {"Content-Type": "application/json", "Authorization": f"Basic {TOKEN}"},
                    {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN[:-1]}"}):
        r = request(f"{guarded}/feedback", forged, headers=headers)
        assert r.status == 401 and r.body["error"] == "unauthorized", r.body
        assert r.headers["www-authenticate"].startswith("Bearer") and TOKEN not in json.dumps(r.body)
    after = _status(GUARDED)
    assert after["performance"] == before["performance"]  # no label received, nothing matched or waiting
    assert after["alerts"]["totals"] == before["alerts"]["totals"] and not any(
        a["kind"] == "performance" for a in after["alerts"]["recent"])
    metrics = request(f"{guarded}/metrics", method="GET", headers={}).body
    assert f'raymlops_serve_feedback_labels_total{{route="{GUARDED}"' not in metrics
    refused = [ln for ln in metrics.splitlines() if ln.startswith("raymlops_serve_rejected_requests_total{")
               and f'route="{GUARDED}"' in ln and 'reason="unauthorized"' in ln]
    assert len(refused) == 1 and 'endpoint="feedback"' in refused[0], refused  # not mixed with /predict's
    assert float(refused[0].rsplit(" ", 1)[1]) == 4.0, refused
    # the same labels with the token are taken
    r = request(f"{guarded}/feedback", forged, headers={"Content-Type": "application/json",
                                                         "Authorization": f"Bearer {TOKEN}"})
    assert r.status == 200 and r.body["matched"] == 120, r.body
    assert _status(GUARDED)["performance"]["labels"]["matched"] == 120


def test_a_reused_request_id_names_its_last_request(served: tuple[str, str, Store]) -> None:
    """Requests sent again with the same X-Request-Id (a client's retry) are all answered, and the
    id names the last one: its label joins the last answer, and a list of labels for a reused
    multi-row id is the last request's. Back to back, the requests usually reach the monitor in
    one hand-off, which took two single-row requests for one request of two rows (the label
    "unknown", both rows pending for good) and refused the right list for a 3-row then 2-row id."""
    url, _, _ = served
    X, _ = toy_data()
    before = _status()["performance"]
    single, multi = f"retry-{secrets.token_hex(4)}", f"retry-rows-{secrets.token_hex(4)}"
    json_id = {"Content-Type": "application/json", "X-Request-Id": single}
    answers = [predict(url, {"instances": [row(x)]}, headers=json_id) for x in X[:3].tolist()]
    assert all(a.status == 200 and a.body["request_id"] == single for a in answers)
    rows = [predict(url, {"instances": [row(x) for x in X[:n].tolist()]},
                    headers={**json_id, "X-Request-Id": multi}) for n in (3, 2)]
    assert all(r.status == 200 and r.body["request_id"] == multi for r in rows)
    deadline = time.monotonic() + 30  # 3 + 5 rows served; the last requests' 1 + 2 wait for labels
    while _status()["performance"]["replaced"] < before["replaced"] + 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _status()["performance"]["replaced"] == before["replaced"] + 5
    last = float(answers[-1].body["predictions"][0])
    r = _feedback(url, {"request_ids": [single, multi], "labels": [last, rows[-1].body["predictions"]]})
    assert r.status == 200, r.body
    assert (r.body["matched"], r.body["unmatched"]) == (3, 0), r.body
    after = _status()["performance"]
    assert after["matched"] == before["matched"] + 3 and after["labels"]["unknown"] == before["labels"]["unknown"]
