"""Champion / challenger on a live deployment over real HTTP: canary shares, sticky keys, shadow
copies that are never answered, promote and rollback under load without a single failed request,
tampered artifacts refused, the CLI, and the audit records of every change."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from raymlops.config import ServeConfig
from raymlops.exceptions import ServeError
from raymlops.store.home import Store
from tests.integration.conftest import quickstart_data, serve_port
from tests.integration.serving_helpers import Load, predict, request, row, toy_data, toy_store

pytestmark = pytest.mark.integration

ROUTE = "duel"


@pytest.fixture(scope="module")
def live(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Store]]:

    from raymlops.monitor.lifecycle import start_monitor, stop_monitor
    from raymlops.monitor.reference import build_reference
    from raymlops.ray_session import NAMESPACE
    from raymlops.serve.deploy import undeploy
    from raymlops.serve.traffic import deploy_model

    home = tmp_path_factory.mktemp("traffic") / "home"
    store = toy_store(home, name=ROUTE)
    X, _ = toy_data()
    try:
        start_monitor(ROUTE, build_reference({n: X[:, j] for j, n in enumerate("abcd")}),
                      {"seed": 0}, NAMESPACE, detached=False)
        endpoint = deploy_model(store, f"{ROUTE}@champion", serve_config=ServeConfig(
            port=serve_port(), batch_wait_timeout_s=0.002, num_replicas=2, monitor_budget=1.0,
            monitor_flush_interval_s=0.05), reason="test")
        yield endpoint, store
    finally:
        undeploy(ROUTE, shutdown=False)
        stop_monitor(ROUTE, NAMESPACE)


@pytest.fixture()
def champion_only(live: tuple[str, Store]) -> Iterator[tuple[str, Store]]:
    """Each test starts and ends with v1 as champion and no challenger."""
    from raymlops.registry.registry import promote
    from raymlops.serve.traffic import current_table, set_champion, set_sample_rate

    url, store = live

    def reset() -> None:
        if current_table(ROUTE).champion.model_id != f"{ROUTE}:v1" or current_table(ROUTE).challenger:
            set_champion(store, ROUTE, f"{ROUTE}:v1", reason="test reset")
        if current_table(ROUTE).sample_rate is not None:
            set_sample_rate(store, ROUTE, None, reason="test reset")
        from raymlops.registry import get_model

        if get_model(store, f"{ROUTE}@champion").id != f"{ROUTE}:v1":
            promote(store, f"{ROUTE}:v1", reason="test reset")

    reset()
    yield live
    reset()


def _models(store: Store) -> dict[str, Any]:
    from raymlops.registry import get_model, load_model

    return {v: load_model(store, get_model(store, f"{ROUTE}:{v}")) for v in ("v1", "v2")}


def _versions(url: str, payloads: list[Any], threads: int = 8) -> list[tuple[int, str, Any]]:
    def one(p: Any) -> tuple[int, str, Any]:
        r = predict(url, p)
        return r.status, r.headers.get("x-model-version", ""), r.body

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, payloads))


def _audit(store: Store) -> list[str]:
    from raymlops.audit import records, verify

    ok, message = verify(store.metadata)
    assert ok, message
    return [r.action for r in records(store.metadata, action="deployment.")]


def test_canary_weight_holds_over_2000_requests(champion_only: tuple[str, Store]) -> None:
    from raymlops.serve.traffic import set_challenger

    url, store = champion_only
    table = set_challenger(store, ROUTE, f"{ROUTE}:v2", "canary", 0.2, reason="canary test")
    assert table.summary()["shares"] == {f"{ROUTE}:v1": 0.8, f"{ROUTE}:v2": 0.2}
    X, _ = toy_data()
    models = _models(store)
    payloads = [{"instances": [row(X[i % len(X)])]} for i in range(2000)]
    replies = _versions(url, payloads)
    assert all(status == 200 for status, _, _ in replies)
    share = Counter(v for _, v, _ in replies)[f"{ROUTE}:v2"] / len(replies)
    # binomial sd at n=2000, p=0.2: 0.0089; 4.5 sd either way
    assert abs(share - 0.2) < 0.04, share
    for (_, version, body), p in zip(replies[:200], payloads[:200], strict=True):  # each answer is that model's
        x = np.array([[p["instances"][0][f] for f in "abcd"]])
        assert body["model_version"] == version
        assert body["predictions"] == models[version.split(":")[1]].predict(x).tolist()
    assert "deployment.traffic_changed" in _audit(store)
    # `raymlops status` (and the UI's /deployments, from the same function) shows the canary's share
    from raymlops.cli.status_cmd import _deployments
    from raymlops.ray_session import NAMESPACE

    (app,) = [d for d in _deployments(NAMESPACE) if d["app"] == ROUTE]
    assert app["traffic"] == {f"{ROUTE}:v1": 80.0, f"{ROUTE}:v2": 20.0}, app["traffic"]
    assert app["challenger"] == {"challenger": f"{ROUTE}:v2", "mode": "canary", "weight": 0.2, "key": None}


def test_canary_is_sticky_by_the_hashed_key(champion_only: tuple[str, Store]) -> None:
    from raymlops.serve.traffic import set_challenger

    url, store = champion_only
    set_challenger(store, ROUTE, f"{ROUTE}:v2", "canary", 0.3, key="customer", reason="sticky test")
    X, _ = toy_data()
    payloads = [{"instances": [row(X[0]) | {"customer": f"c{i}"}]} for i in range(600)]
    first = _versions(url, payloads)
    again = _versions(url, payloads[:150])
    assert all(s == 200 for s, _, _ in first + again)
    assert [v for _, v, _ in again] == [v for _, v, _ in first[:150]]  # the same customer, the same model
    share = sum(v.endswith(":v2") for _, v, _ in first) / len(first)
    assert abs(share - 0.3) < 0.08, share
    # promoted, then ended: clients that send the key go on being answered (it was a 422 after)
    from raymlops.serve.traffic import set_champion

    set_champion(store, ROUTE, f"{ROUTE}:v2", reason="the sticky canary wins")
    assert {(s, v) for s, v, _ in _versions(url, payloads[:40])} == {(200, f"{ROUTE}:v2")}
    set_challenger(store, ROUTE, f"{ROUTE}:v1", "canary", 0.5, reason="sticky by the route's key")
    set_challenger(store, ROUTE, None, reason="ended")
    assert {(s, v) for s, v, _ in _versions(url, payloads[:40])} == {(200, f"{ROUTE}:v2")}


def test_shadow_answers_are_recorded_and_never_returned(champion_only: tuple[str, Store]) -> None:
    import ray

    from raymlops.ray_session import NAMESPACE
    from raymlops.serve.control import get_control
    from raymlops.serve.traffic import set_challenger

    url, store = champion_only
    set_challenger(store, ROUTE, f"{ROUTE}:v2", "shadow", reason="shadow test")
    models = _models(store)
    X, _ = toy_data()
    payloads = [{"instances": [row(X[i]), row(X[i + 1])]} for i in range(0, 300, 2)]
    replies = _versions(url, payloads)
    for (status, version, body), p in zip(replies, payloads, strict=True):
        x = np.array([[r[f] for f in "abcd"] for r in p["instances"]])
        assert status == 200 and version == f"{ROUTE}:v1" and body["model_version"] == f"{ROUTE}:v1"
        assert body["predictions"] == models["v1"].predict(x).tolist()  # the champion's answer, always
    control = get_control(ROUTE, NAMESPACE)
    deadline = time.monotonic() + 20
    wanted = {body["request_id"] for _, _, body in replies}
    while time.monotonic() < deadline:
        log = ray.get(control.shadow_log.remote())
        if wanted <= {r["request_id"] for r in log}:
            break
        time.sleep(0.3)
    by_id = {r["request_id"]: r for r in ray.get(control.shadow_log.remote())}
    assert wanted <= set(by_id)
    for (_, _, body), p in zip(replies, payloads, strict=True):
        rec = by_id[body["request_id"]]
        x = np.array([[r[f] for f in "abcd"] for r in p["instances"]])
        assert rec["challenger"] == f"{ROUTE}:v2" and rec["champion"] == f"{ROUTE}:v1"
        assert rec["challenger_predictions"] == models["v2"].predict(x).tolist()
        assert rec["champion_predictions"] == body["predictions"]
    assert np.mean([r["agreement"] for r in by_id.values()]) < 0.1  # v2 learned the opposite labels
    metrics = ray.get(control.counter.remote("raymlops_serve_shadow_requests_total", {"outcome": "disagree"}))
    assert metrics >= 1


def _monitor_after(predicate: Any, timeout_s: float = 30.0) -> dict[str, Any]:
    from raymlops.monitor.lifecycle import monitor_status
    from raymlops.ray_session import NAMESPACE

    deadline = time.monotonic() + timeout_s
    while True:
        st = monitor_status(ROUTE, NAMESPACE)
        if predicate(st) or time.monotonic() > deadline:
            return st
        time.sleep(0.2)


def test_the_monitor_follows_the_champion_through_a_promotion(champion_only: tuple[str, Store]) -> None:
    from raymlops.serve.traffic import set_challenger, set_champion

    url, store = champion_only
    X, _ = toy_data()
    v1, v2 = f"{ROUTE}:v1", f"{ROUTE}:v2"
    before = _monitor_after(lambda st: True)
    roles0 = before["differential"]["rows_by_role"]
    set_challenger(store, ROUTE, v2, "shadow", reason="roles test")
    assert all(s == 200 for s, _, _ in _versions(url, [{"instances": [row(X[i])]} for i in range(60)]))
    shadowed = _monitor_after(lambda st: st["differential"]["rows_by_role"].get("shadow", 0)
                              >= roles0.get("shadow", 0) + 60
                              and st["rows_total"] >= before["rows_total"] + 60)
    d = shadowed["differential"]
    assert d["champion"] == v1 and d["roles"][v1]["role"] == "champion" and d["roles"][v2]["role"] == "shadow"
    assert d["rows_by_role"]["shadow"] - roles0.get("shadow", 0) == 60
    assert shadowed["rows_total"] - before["rows_total"] == 60  # only v1's answers are champion rows
    assert shadowed["challenger_rows"] - before["challenger_rows"] == 60
    # paired by request id (a champion batch that reached the monitor before any shadow row waits for nothing)
    assert d["pairs"] >= 30 or (d["last_window"] or {}).get("pairs", 0) >= 30

    set_champion(store, ROUTE, v2, reason="promote in roles test")  # what `models promote` does live
    assert all(v == v2 for _, v, _ in _versions(url, [{"instances": [row(X[i])]} for i in range(60, 140)]))
    promoted = _monitor_after(lambda st: st["rows_total"] >= shadowed["rows_total"] + 80)
    d = promoted["differential"]
    assert d["champion"] == v2 and d["roles"][v2]["role"] == "champion"
    assert d["roles"][v2]["epoch"] > shadowed["differential"]["roles"][v2]["epoch"]
    assert promoted["rows_total"] - shadowed["rows_total"] == 80  # v2's answers now count as champion rows
    assert promoted["challenger_rows"] == shadowed["challenger_rows"]
    assert d["rows_by_role"]["champion"] - shadowed["differential"]["rows_by_role"]["champion"] == 80


def test_promote_and_rollback_under_load_fail_no_request(
    champion_only: tuple[str, Store], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import ray

    from raymlops.cli import main

    url, store = champion_only
    monkeypatch.setenv("RAY_ADDRESS", ray.get_runtime_context().gcs_address)  # the CLI joins this cluster
    X, _ = toy_data()
    with Load(url, lambda i: {"instances": [row(X[i % len(X)])]}, threads=6) as load:
        load.wait_for(200)
        assert main(["--home", str(store.home), "deploy", f"{ROUTE}:v2", "--as", "challenger", "--mode", "canary",
                     "--weight", "0.5"]) == 0
        load.wait_for(200)
        assert main(["--home", str(store.home), "models", "promote", f"{ROUTE}:v2", "--reason", "better"]) == 0
        promoted_at = time.monotonic()
        load.wait_for(300)
        rollback_started = time.monotonic()
        assert main(["--home", str(store.home), "models", "rollback", ROUTE, "--reason", "oops"]) == 0
        rolled_back_at = time.monotonic()
        load.wait_for(300)
    out = capsys.readouterr().out
    assert f"/{ROUTE} now serves {ROUTE}:v2" in out and f"/{ROUTE} now serves {ROUTE}:v1" in out
    assert not load.errors, load.errors[:3]
    statuses = Counter(s for _, s, _ in load.replies)
    assert set(statuses) == {200}, statuses  # zero non-2xx, zero dropped connections
    assert len(load.replies) >= 1000
    # promote returns once every replica serves the new champion: no request sent after it gets v1
    # (up to the rollback: a request sent just before it may be answered after it, by v1)
    after_promote = [(t, v) for (t, _, v), done in zip(load.replies, load.answered, strict=True)
                     if promoted_at < t and done < rollback_started]
    stale = [(round(t - promoted_at, 3), v) for t, v in after_promote if v != f"{ROUTE}:v2"]
    assert after_promote and not stale, (len(after_promote), stale[:10])
    after_rollback = [(t, v) for t, _, v in load.replies if t > rolled_back_at]
    stale = [(round(t - rolled_back_at, 3), v) for t, v in after_rollback if v != f"{ROUTE}:v1"]
    assert after_rollback and not stale, (len(after_rollback), stale[:10])
    actions = _audit(store)
    assert actions[-3:] == ["deployment.traffic_changed", "deployment.promoted", "deployment.rolled_back"]


def test_promote_again_brings_a_route_that_lags_the_alias_to_it(
    champion_only: tuple[str, Store], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Promoted without a cluster (the alias moved, the route kept v1), then again with RAY_ADDRESS as
    the first answer advises: the route follows (it said "nothing changed" and kept serving v1)."""
    import ray

    from raymlops.cli import main
    from raymlops.serve.traffic import current_table

    _, store = champion_only
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert main(["--home", str(store.home), "models", "promote", f"{ROUTE}:v2"]) == 0
    assert "moved the alias only" in capsys.readouterr().out
    assert current_table(ROUTE).champion.model_id == f"{ROUTE}:v1"
    monkeypatch.setenv("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    assert main(["--home", str(store.home), "models", "promote", f"{ROUTE}:v2"]) == 0
    out = capsys.readouterr().out
    assert f"is already {ROUTE}:v2" in out and f"/{ROUTE} now serves {ROUTE}:v2" in out, out
    assert current_table(ROUTE).champion.model_id == f"{ROUTE}:v2"
    assert main(["--home", str(store.home), "models", "promote", f"{ROUTE}:v2"]) == 0  # in step: nothing to do
    assert "nothing changed" in capsys.readouterr().out


def test_tampered_artifact_is_refused_and_nothing_changes(champion_only: tuple[str, Store]) -> None:
    from raymlops.registry import get_model
    from raymlops.serve.traffic import current_table, deploy_model, set_challenger

    url, store = champion_only
    v3 = get_model(store, f"{ROUTE}:v3")
    path = Path(store.artifacts.path(v3.artifact_key))
    original = path.read_bytes()
    try:
        path.write_bytes(original[:-8] + b"tampered")
        with pytest.raises(ServeError, match=r"v3.*(changed|sha256)"):
            set_challenger(store, ROUTE, f"{ROUTE}:v3", "canary", 0.5)
        with pytest.raises(ServeError, match=r"refused.*changed"):
            deploy_model(store, f"{ROUTE}:v3", route="tampered", serve_config=ServeConfig(port=serve_port()))
    finally:
        path.write_bytes(original)
    assert current_table(ROUTE).challenger is None
    assert predict(url, {"instances": [row(toy_data()[0][0])]}).headers["x-model-version"] == f"{ROUTE}:v1"


def test_a_replica_refuses_a_changed_artifact_itself(champion_only: tuple[str, Store],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Even when the artifact changes after the deploying process checked it, the replica's own
    sha256 check fails the deployment with the reason."""
    import dataclasses

    import raymlops.serve.deploy as deploy_module
    from raymlops.serve.traffic import model_spec_of

    _, store = champion_only
    spec = dataclasses.replace(model_spec_of(store, f"{ROUTE}:v3"), artifact_sha256="0" * 64)
    monkeypatch.setattr(deploy_module, "verify_artifact", lambda model: None)
    try:
        with pytest.raises(ServeError, match=r"v3.*(changed|refusing)"):
            deploy_module.deploy(spec, "tampered2", ServeConfig(port=serve_port()), wait_s=60)
    finally:
        deploy_module.undeploy("tampered2", shutdown=False)


def test_cli_deploy_status_end_challenger_and_stop(
    live: tuple[str, Store], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    import ray

    from raymlops.cli import main
    from raymlops.ray_session import NAMESPACE
    from raymlops.serve.control import get_control

    _, store = live
    home = ["--home", str(store.home)]
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert main([*home, "deploy", f"{ROUTE}:v1", "--route", "cli"]) == 2  # no cluster named: refused
    assert "RAY_ADDRESS" in capsys.readouterr().err
    assert main([*home, "models", "promote", f"{ROUTE}:v1"]) == 0  # already the champion: nothing moves
    assert capsys.readouterr().out == f"{ROUTE}@champion is already {ROUTE}:v1: nothing changed\n"
    for ref in (f"{ROUTE}:v3", f"{ROUTE}:v1"):  # moves, with no cluster to follow them
        assert main([*home, "models", "promote", ref]) == 0
        assert "moved the alias only" in capsys.readouterr().out
    monkeypatch.setenv("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    try:
        assert main([*home, "deploy", f"{ROUTE}:v1", "--route", "cli", "--json"]) == 0
        created = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert created["traffic"]["champion"] == f"{ROUTE}:v1" and created["endpoint"].endswith("/cli")
        assert predict(created["endpoint"], {"inputs": [[0, 0, 0, 0]]}).status == 200
        assert main([*home, "deploy", f"{ROUTE}:v2", "--route", "cli", "--as", "challenger", "--mode", "shadow"]) == 0
        assert "challenger duel:v2 (shadow)" in capsys.readouterr().out
        assert main([*home, "deploy", f"{ROUTE}:v2", "--route", "cli", "--as", "challenger", "--mode", "shadow",
                     "--weight", "0.2"]) == 2
        assert "do not apply" in capsys.readouterr().err
        for _ in range(5):
            assert predict(created["endpoint"], {"inputs": [[0, 0, 0, 0]]}).status == 200
        deadline = time.monotonic() + 30
        while True:  # shadow copies are answered after the champion's answer: recorded a moment later
            assert main([*home, "deploy", "cli", "--status", "--json"]) == 0
            status = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
            if (status.get("shadow") or {}).get("records", 0) >= 5 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert status["traffic"]["mode"] == "shadow" and status["epoch"] == 2
        assert status["shadow"]["records"] == 5 and status["shadow"]["agreement"] == 0.0  # v2 learned 1 - y
        assert main([*home, "deploy", "cli", "--end-challenger"]) == 0
        assert "challenger -" in capsys.readouterr().out
        # the ended shadow's comparisons are not this route's any more (they were shown after it ended)
        assert main([*home, "deploy", "cli", "--status", "--json"]) == 0
        assert "shadow" not in json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert main([*home, "deploy", "cli", "--stop"]) == 0
        assert get_control("cli", NAMESPACE) is None
        assert main([*home, "deploy", "cli", "--status"]) == 2  # no such route: bad input, as a challenger for it
        assert "no live deployment at route 'cli'" in capsys.readouterr().err
    finally:
        from raymlops.serve.deploy import undeploy

        undeploy("cli", shutdown=False)
    actions = [a for a in _audit(store)]
    assert actions[-4:] == ["deployment.created", "deployment.traffic_changed", "deployment.traffic_changed",
                            "deployment.deleted"]
    assert os.environ.get("RAY_ADDRESS")  # (monkeypatch restores it)


def test_cli_deploy_with_a_config_starts_the_route_monitor(
    trained_quickstart: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``raymlops deploy REF --config`` of a new route starts its monitor as ``raymlops run`` does
    (the model's training rows as reference): served rows reach it. Before, only the config's
    sample rate applied, and a route deployed from the CLI was never monitored."""
    import json

    import ray
    import yaml

    from raymlops.cli import main
    from raymlops.monitor.lifecycle import stop_monitor
    from raymlops.monitor.names import monitor_name
    from raymlops.ray_session import NAMESPACE
    from raymlops.serve.deploy import undeploy

    home, _ = trained_quickstart
    data = quickstart_data()  # the config the trained home was trained with
    data["serve"]["port"] = serve_port()
    config = tmp_path / "qs.yaml"
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    monkeypatch.setenv("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    try:
        assert main(["--home", str(home), "deploy", "breast-cancer@champion", "--route", "qs-cli", "--config",
                     str(config), "--json"]) == 0
        endpoint = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["endpoint"]
        monitor = ray.get_actor(monitor_name("qs-cli"), namespace=NAMESPACE)
        meta = request(endpoint + "/metadata", method="GET")
        assert meta.status == 200
        reply = predict(endpoint, meta.body["input_example"])
        assert reply.status == 200
        deadline = time.monotonic() + 20
        while ray.get(monitor.status.remote())["rows_total"] < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        status = ray.get(monitor.status.remote())
        assert status["rows_total"] >= 1
        # the model's features, from its training rows
        assert list(status["features"]) == [f["name"] for f in meta.body["signature"]["inputs"]]
    finally:
        undeploy("qs-cli", shutdown=False)
        stop_monitor("qs-cli", NAMESPACE)


def test_monitor_sampling_is_turned_off_and_back_on_live(
    champion_only: tuple[str, Store], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import ray

    from raymlops.cli import main
    from raymlops.monitor.names import monitor_name
    from raymlops.ray_session import NAMESPACE

    url, store = champion_only
    monkeypatch.setenv("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    monitor = ray.get_actor(monitor_name(ROUTE), namespace=NAMESPACE)
    X, _ = toy_data()
    payloads = [{"instances": [row(X[i])]} for i in range(40)]
    home = ["--home", str(store.home)]

    assert main([*home, "deploy", ROUTE, "--sample-rate", "0", "--reason", "load test"]) == 0
    assert "monitor sample rate 0.0" in capsys.readouterr().out
    seen = -1
    while seen != ray.get(monitor.rows.remote()):  # rows handed off before the change have arrived
        seen = ray.get(monitor.rows.remote())
        time.sleep(0.3)
    assert all(status == 200 for status, _, _ in _versions(url, payloads))
    time.sleep(0.5)  # ten flush intervals: anything handed off would have arrived
    assert ray.get(monitor.rows.remote()) == seen  # nothing reached the monitor

    assert main([*home, "deploy", ROUTE, "--sample-rate", "-1", "--reason", "load test over"]) == 0
    assert all(status == 200 for status, _, _ in _versions(url, payloads))
    deadline = time.monotonic() + 30
    while ray.get(monitor.rows.remote()) < seen + len(payloads) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert ray.get(monitor.rows.remote()) == seen + len(payloads)  # the configured rate, 1.0, again

    assert main([*home, "deploy", ROUTE, "--sample-rate", "1.5"]) == 2
    assert "--sample-rate must be within [0, 1], found 1.5" in capsys.readouterr().err
    from raymlops.audit import records

    changes = records(store.metadata, action="deployment.sampling_changed")[-2:]
    assert [(r.record["how"]["after"], r.record["reason"]) for r in changes] == [(0.0, "load test"),
                                                                               (None, "load test over")]
