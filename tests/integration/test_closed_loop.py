"""One closed-loop cycle on real Ray, real Serve over HTTP on 127.0.0.1 and a real SQLite store:
a drift alert of the live monitor -> retraining on a fresh snapshot -> gate -> shadow challenger
-> differential check -> promotion (or retirement), each step audited with the alert as reason."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from raymlops import audit
from raymlops.config import GateConfig, PipelineConfig
from raymlops.loop import demo_data
from raymlops.loop.controller import CycleResult, RetrainController, Watcher
from raymlops.loop.demo import demo_config
from raymlops.loop.policy import RetrainPolicy, Trigger
from raymlops.registry.registry import get_model
from raymlops.serve.deploy import http_json
from raymlops.store.home import Store
from tests.integration.conftest import TRIALS_AT_ONCE, serve_port

pytestmark = pytest.mark.usefixtures("ray_session")


class Traffic:
    """Drifted requests from a thread while a cycle runs (the shadow needs live traffic)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.bodies = demo_data.requests(400, seed=42, drift="global")
        self.versions: Counter[str] = Counter()
        self.failed = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self) -> None:
        i = 0
        while not self.stop.is_set():
            try:
                status, body = http_json("POST", self.url, {"instances": self.bodies[i % len(self.bodies)]}, timeout=30)
            except OSError as exc:
                status, body = 0, f"{type(exc).__name__}: {exc}"
            if status == 200:
                self.versions[body["model_version"]] += 1
            else:
                self.failed += 1
                self.failures.append(f"{time.strftime('%H:%M:%S')} {status} {str(body)[:300]}")
            i += 1
            self.stop.wait(0.05)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=15)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The demo pipeline (as route /closed-loop) served, and a real dataset-drift alert of its monitor."""
    import ray

    from raymlops.monitor.names import monitor_name
    from raymlops.pipeline.runner import run_pipeline, stop_serving
    from raymlops.ray_session import NAMESPACE

    # The model step's cache key holds the code version, a hash of `git diff HEAD` of the working
    # tree: an edit anywhere in the tree while this module runs (another process working on the
    # checkout) would make "the champion's own data" train a new model. Pinned for the module, so
    # that data and config alone decide, as they do on a tree nobody edits.
    from raymlops.registry import lineage

    pinned = lineage.code_version()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(lineage, "code_version", lambda cwd=".": dict(pinned))
        home = tmp_path_factory.mktemp("loop-home")
        base = demo_config(port=serve_port(), window_rows=200)
        perf = base.monitor.performance.model_copy(update={"baseline_labels": 100, "window_labels": 100})
        # the demo's 120 s alert cooldown would hold back the dataset alert that the watcher test
        # waits for (it was raised here first): these tests are about the loop, not the cooldown
        alerts = base.monitor.alerts.model_copy(update={"cooldown_s": 2.0})
        cfg = base.model_copy(update={"name": "closed-loop", "retrain": base.retrain.model_copy(
            update={"shadow_rows": 100, "shadow_timeout_s": 60.0}),
            "monitor": base.monitor.model_copy(update={"performance": perf, "alerts": alerts}),
            "serve": base.serve.model_copy(update={"monitor_budget": 1.0}),  # every row reaches the monitor
            "train": base.train.model_copy(update={"max_concurrent_trials": TRIALS_AT_ONCE})})
        result = run_pipeline(cfg, home=home, progress=lambda line: None, keep_serving=True)
        assert result.model == "closed-loop:v1"
        url = f"{result.endpoint}/predict"
        try:
            t0 = time.time()
            for body in demo_data.requests(400, seed=9, drift="global"):
                status, _ = http_json("POST", url, {"instances": body})
                assert status == 200
            monitor = ray.get_actor(monitor_name(cfg.route), namespace=NAMESPACE)
            alert = None
            deadline = time.monotonic() + 30
            while alert is None and time.monotonic() < deadline:
                recent = ray.get(monitor.status.remote())["alerts"]["recent"]
                alert = next((a for a in recent if a["kind"] == "dataset_drift" and a["ts"] >= t0), None)
                time.sleep(0.2)
            assert alert is not None, "the monitor raised no dataset_drift alert on globally drifted traffic"
            yield {"cfg": cfg, "home": home, "store": Store.open(home), "url": url, "alert": alert}
        finally:
            stop_serving(cfg)


def _cycle_records(store: Store, result: CycleResult) -> list[dict[str, Any]]:
    """From the cycle's retrain.triggered on: its own records and those giving its reason."""
    every = audit.records(store.metadata)
    first = next(r.seq for r in every if r.action == "retrain.triggered" and r.record["ids"]["cycle"] == result.cycle)
    return [audit.to_json(r) for r in every if r.seq >= first and (
        r.record["ids"].get("cycle") == result.cycle or r.record["reason"] == result.trigger.reason)]


def _live(url: str, n: int = 5) -> set[str]:
    out = set()
    for body in demo_data.requests(20 * n, seed=77, drift="global"):
        status, answer = http_json("POST", url, {"instances": body})
        assert status == 200
        out.add(answer["model_version"])
    return out


def _with(cfg: PipelineConfig, **promote: Any) -> PipelineConfig:
    return cfg.model_copy(update={"retrain": cfg.retrain.model_copy(
        update={"promote": cfg.retrain.promote.model_copy(update=promote)})})


def test_rules_refuse_promotion_and_the_challenger_is_retired(served: dict[str, Any]) -> None:
    from raymlops.serve.traffic import current_table

    store, url = served["store"], served["url"]
    cfg = _with(served["cfg"], min_agreement=1.0)  # a model trained on the new world cannot agree on every row
    champion = get_model(store, f"{cfg.name}@champion").id
    trigger = Trigger.from_alert(served["alert"])
    lines: list[str] = []
    with Traffic(url) as traffic:
        result = RetrainController(cfg, store, progress=lines.append).run_cycle(trigger)
    assert result.status == "retired", result.to_dict()
    assert result.gate == "passed" and result.challenger not in (None, champion)
    assert result.decision is not None and [c.rule for c in result.decision.failed] == ["min_agreement"]
    assert result.evidence is not None and result.evidence.rows >= 100 and result.evidence.agreement < 1.0
    assert traffic.failed == 0 and traffic.versions, traffic.failures  # none failed as the challenger came and went
    assert get_model(store, f"{cfg.name}@champion").id == champion
    table = current_table(cfg.route)
    assert table.champion.model_id == champion and table.challenger is None
    assert _live(url) == {champion}
    records = _cycle_records(store, result)
    actions = [r["action"] for r in records]
    for action in ("retrain.triggered", "snapshot.created", "model.registered", "retrain.trained",
                   "deployment.traffic_changed", "retrain.evaluated", "retrain.retired"):
        assert action in actions, actions
    assert actions.count("deployment.traffic_changed") == 2  # shadow on, shadow off
    assert "alias.moved" not in actions and "retrain.promoted" not in actions
    assert all(r["reason"] == f"alert {served['alert']['key']}: {served['alert']['message']}" for r in records
               if r["action"] != "gate.rejected")
    retired = next(r for r in records if r["action"] == "retrain.retired")
    assert retired["ids"]["model"] == result.challenger and "agreement" in retired["how"]["why"]
    assert any("FAIL  min_agreement" in line for line in lines)

    # the same fresh data again gives the same version, which this cycle retired against the same
    # champion under the same policy: the next cycle says so instead of shadowing it again
    shadows = len(audit.records(store.metadata, action="deployment.traffic_changed"))
    again = RetrainController(cfg, store, progress=lines.append).run_cycle(trigger)
    assert again.status == "unchanged" and again.challenger is None, again.to_dict()
    assert len(audit.records(store.metadata, action="deployment.traffic_changed")) == shadows
    assert any(f"which cycle {result.cycle} retired against {champion}" in line for line in lines), lines[-5:]

    # a route that already has a challenger (here: someone's canary) is left alone
    from raymlops.exceptions import ServeError
    from raymlops.serve.traffic import set_challenger

    set_challenger(store, cfg.route, result.challenger, "canary", 0.1, reason="a person's canary")
    try:
        before = len(audit.records(store.metadata, action="retrain.triggered"))
        with pytest.raises(ServeError, match="already has a challenger"):
            RetrainController(cfg, store, progress=lines.append).run_cycle(trigger)
        assert len(audit.records(store.metadata, action="retrain.triggered")) == before
        challenger = current_table(cfg.route).challenger
        assert challenger is not None and challenger.model_id == result.challenger
    finally:
        set_challenger(store, cfg.route, None, reason="test done")


def test_gate_rejection_ends_the_cycle_before_serving(served: dict[str, Any]) -> None:
    from raymlops.serve.traffic import current_table

    store = served["store"]
    cfg = served["cfg"].model_copy(update={"gate": GateConfig(rules=["roc_auc >= 0.999"])})
    champion = get_model(store, f"{cfg.name}@champion").id
    epoch = current_table(cfg.route).epoch
    result = RetrainController(cfg, store, progress=lambda line: None).run_cycle(Trigger.manual("gate check"))
    assert result.status == "rejected" and result.challenger is None
    assert any("roc_auc" in r for r in result.gate_reasons)
    assert current_table(cfg.route).epoch == epoch  # serving untouched
    assert get_model(store, f"{cfg.name}@champion").id == champion
    actions = [r["action"] for r in _cycle_records(store, result)]
    assert actions[0] == "retrain.triggered" and actions[-1] == "retrain.rejected"
    assert "deployment.traffic_changed" not in actions


def test_retraining_on_the_champions_own_data_changes_nothing(served: dict[str, Any]) -> None:
    from raymlops.serve.traffic import current_table

    store = served["store"]
    cfg = served["cfg"].model_copy(update={"retrain": served["cfg"].retrain.model_copy(update={"source": None})})
    champion = get_model(store, f"{cfg.name}@champion")
    if champion.id != f"{cfg.name}:v1":
        pytest.skip("runs before the promotion test (the champion must still be the one trained on data.source)")
    epoch = current_table(cfg.route).epoch
    result = RetrainController(cfg, store, progress=lambda line: None).run_cycle(Trigger.manual("same data"))
    assert result.status == "unchanged" and result.challenger is None and result.champion_after == champion.id
    assert result.snapshot == champion.snapshot_id
    assert current_table(cfg.route).epoch == epoch
    assert audit.records(store.metadata, action="retrain.unchanged")[-1].record["reason"] == "manual: same data"


def test_a_failed_cycle_is_audited_and_serving_untouched(served: dict[str, Any], tmp_path: Path) -> None:
    from raymlops.exceptions import ConfigError
    from raymlops.serve.traffic import current_table

    store = served["store"]
    cfg = served["cfg"].model_copy(update={"retrain": served["cfg"].retrain.model_copy(
        update={"source": str(tmp_path / "gone.parquet")})})
    epoch = current_table(cfg.route).epoch
    with pytest.raises(ConfigError, match="not found"):
        RetrainController(cfg, store, progress=lambda line: None).run_cycle(Trigger.manual("source check"))
    failed = audit.records(store.metadata, action="retrain.failed")[-1].record
    assert failed["reason"] == "manual: source check" and "not found" in failed["how"]["error"]
    assert current_table(cfg.route).epoch == epoch


def _labelled(url: str, route: str, requests: list[list[dict[str, Any]]], flip: bool) -> int:
    """Serve ``requests``, then post their ground truth (the answers, or their opposite): rows matched."""
    import ray

    from raymlops.monitor.names import monitor_name
    from raymlops.ray_session import NAMESPACE

    monitor = ray.get_actor(monitor_name(route), namespace=NAMESPACE)
    seen = ray.get(monitor.rows.remote())
    answers = []
    for body in requests:
        status, answer = http_json("POST", url, {"instances": body})
        assert status == 200
        answers.append(answer)
    rows = sum(len(a["predictions"]) for a in answers)
    deadline = time.monotonic() + 30  # the replica hands rows to the monitor in the background
    while ray.get(monitor.rows.remote()) < seen + rows and time.monotonic() < deadline:
        time.sleep(0.1)
    labels = [[1 - p if flip else p for p in a["predictions"]] for a in answers]
    status, reply = http_json("POST", url.rsplit("/", 1)[0] + "/feedback",
                              {"request_ids": [a["request_id"] for a in answers], "labels": labels})
    assert status == 200, reply
    return int(reply["matched"])


def test_a_performance_alert_from_late_labels_starts_a_cycle(served: dict[str, Any]) -> None:
    """Inputs as in training, labels that contradict the model: only the performance check can
    see it; its alert (not a drift alert) starts the cycle and is the reason of every record."""
    store, url = served["store"], served["url"]
    # a strict gate ends this cycle after training: the later steps are those of the drift tests
    cfg = served["cfg"].model_copy(update={"gate": GateConfig(rules=["roc_auc >= 0.999"])})
    t0 = time.time()
    route = cfg.route
    assert _labelled(url, route, demo_data.requests(100, seed=31, drift="none"), flip=False) == 100  # baseline
    assert _labelled(url, route, demo_data.requests(100, seed=32, drift="none"), flip=True) == 100  # all wrong
    policy = RetrainPolicy(cfg.retrain.model_copy(update={"triggers": ["performance"]}), since=t0)
    watcher = Watcher(RetrainController(cfg, store, progress=lambda line: None), policy)
    result, deadline = None, time.monotonic() + 60
    while result is None and time.monotonic() < deadline and not watcher.failures:
        result = watcher.poll()
        time.sleep(0.2)
    assert not watcher.failures, watcher.failures
    assert result is not None, "no performance alert started a cycle"
    # the window check (accuracy past its limit) or the change detectors on the error stream
    # (ADWIN / Page-Hinkley, which may see the change first): both are performance alerts
    assert result.trigger.kind == "performance"
    assert result.trigger.key.startswith(("performance:accuracy", "concept_drift:")), result.trigger.key
    assert result.status == "rejected"
    records = _cycle_records(store, result)
    assert [r["action"] for r in records][:1] == ["retrain.triggered"]
    assert records[0]["how"]["trigger"]["kind"] == "performance"
    assert all(r["reason"] == result.trigger.reason for r in records if r["action"].startswith("retrain."))
    assert result.trigger.reason.startswith(f"alert {result.trigger.key}")


def test_alert_to_promotion_through_the_watcher(served: dict[str, Any]) -> None:
    import ray

    from raymlops.monitor.names import monitor_name
    from raymlops.ray_session import NAMESPACE
    from raymlops.serve.traffic import current_table

    store, url, cfg, alert = served["store"], served["url"], served["cfg"], served["alert"]
    champion = get_model(store, f"{cfg.name}@champion").id
    monitor_id = ray.get_actor(monitor_name(cfg.route), namespace=NAMESPACE)._actor_id.hex()
    controller = RetrainController(cfg, store, progress=lambda line: None)
    # the dataset alert only: the performance test's alert (labels that contradict the model) and
    # single-feature alerts of windows that mix its undrifted rows with drifted ones are news too
    drift_only = cfg.retrain.model_copy(update={"triggers": ["dataset_drift"]})
    watcher = Watcher(controller, RetrainPolicy(drift_only, since=alert["ts"] - 1))
    with Traffic(url) as traffic:
        result = None
        # a loaded CI machine can take a while to close the next window and raise the alert again
        deadline = time.monotonic() + 120
        while result is None and time.monotonic() < deadline and not watcher.failures:
            result = watcher.poll()  # reads the live monitor's alerts; the dataset alert starts the cycle
    assert not watcher.failures, watcher.failures
    assert result is not None and result.trigger.kind == "dataset_drift", "the watcher did not start a cycle"
    assert result.status == "promoted", result.to_dict()
    new = result.challenger
    assert new is not None and new != champion and result.champion_after == new
    assert result.evidence is not None and result.evidence.rows >= 100 and result.evidence.errors == 0
    assert result.evidence.challenger_score > result.evidence.champion_score  # type: ignore[operator]
    assert traffic.failed == 0 and traffic.versions[new] > 0, traffic.failures  # promoted live, none lost
    assert get_model(store, f"{cfg.name}@champion").id == new
    table = current_table(cfg.route)
    assert table.champion.model_id == new and table.challenger is None
    assert _live(url) == {new}
    # re-baselined in place (the same actor, no redeploy): its reference is now the drifted world,
    # so drifted traffic is no news
    monitor = ray.get_actor(monitor_name(cfg.route), namespace=NAMESPACE)
    assert monitor._actor_id.hex() == monitor_id
    t0 = time.time()
    for body in demo_data.requests(400, seed=123, drift="global"):
        assert http_json("POST", url, {"instances": body})[0] == 200
    deadline = time.monotonic() + 20
    while ray.get(monitor.rows.remote()) < 400 and time.monotonic() < deadline:
        time.sleep(0.2)
    status = ray.get(monitor.status.remote())
    assert status["rows_total"] >= 400
    assert not [a for a in status["alerts"]["recent"] if a["kind"] == "dataset_drift" and a["ts"] >= t0]

    reason = f"alert {alert['key']}: {alert['message']}"  # dataset_drift:<the drifted features>
    assert result.trigger.reason == reason
    records = _cycle_records(store, result)
    actions = [r["action"] for r in records]
    # snapshot.created / model.registered may belong to an earlier cycle: the same fresh data gives the
    # same snapshot, and the pipeline's step cache the same model version (registered with the same reason)
    registered = audit.records(store.metadata, action="model.registered", id=new)
    assert len(registered) == 1 and registered[0].record["reason"] == reason
    expected = ["retrain.triggered", "retrain.trained",
                "deployment.traffic_changed", "retrain.evaluated", "alias.moved", "deployment.promoted",
                "monitor.rebaselined", "retrain.promoted"]
    assert [a for a in actions if a in expected] == expected, actions
    assert all(r["reason"] == reason for r in records if r["action"] in expected)
    assert "deployment.created" not in actions
    rebaselined = next(r for r in records if r["action"] == "monitor.rebaselined")
    assert rebaselined["how"]["how"] == "in place" and rebaselined["how"]["reference_rows"] > 0
    trained = next(r for r in records if r["action"] == "retrain.trained")
    assert trained["ids"]["snapshot"] == result.snapshot and trained["ids"]["model"] == new
    promoted = next(r for r in records if r["action"] == "retrain.promoted")
    assert promoted["ids"] == {"cycle": result.cycle, "deployment": cfg.route, "model": new, "previous": champion}
    triggered = next(r for r in records if r["action"] == "retrain.triggered")
    assert triggered["how"]["trigger"]["key"].startswith("dataset_drift:")
    assert triggered["how"]["source"] == "callable:raymlops.loop.demo_data:drifted"
    # the alert itself is an audit record too (the monitor's audit sink), and the chain holds
    assert [r for r in audit.records(store.metadata, action="alert.dataset_drift")
            if r.record["how"]["alert"]["ts"] == alert["ts"]]
    assert audit.verify(store.metadata)[0]
    assert isinstance(served["home"], Path)
