"""What the serving side tells the monitor: roles and epochs (the champion follows promotions),
and the merged view of sharded monitors (pure: the Monitor core, no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from raymlops.config import MonitorConfig
from raymlops.monitor import build_reference
from raymlops.monitor.monitor import Monitor
from raymlops.monitor.shards import merge_monitors, snapshot

FEATURES = ("a", "b")


@pytest.fixture()
def monitor() -> Monitor:
    rng = np.random.default_rng(0)
    ref = build_reference({n: rng.normal(size=3_000) for n in FEATURES})
    cfg = MonitorConfig(window_rows=100, performance={"baseline_labels": 20, "window_labels": 20, "min_labels": 10},
                        differential={"min_pairs": 10})
    return Monitor(ref, cfg, clock=lambda: 1_000.0)


def cols(n: int, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {f: rng.normal(size=n) for f in FEATURES}


def feed(m: Monitor, version: str, role: str, epoch: int, ids: list[str], preds: np.ndarray) -> None:
    m.differential.follow(version, role, epoch, len(ids))  # as the monitor actor does
    m.ingest(cols(len(ids)), preds, version=version, request_ids=ids, role=role)


def test_the_champion_follows_roles_across_a_promotion(monitor: Monitor) -> None:
    ids = [f"r{i}" for i in range(30)]
    feed(monitor, "m:v1", "champion", 1, [f"x{i}" for i in range(5)], np.zeros(5))
    feed(monitor, "m:v2", "shadow", 2, ids, np.ones(30))  # shadow copies may arrive first
    feed(monitor, "m:v1", "champion", 2, ids, np.zeros(30))
    assert monitor.differential.champion == "m:v1" and monitor.rows_total == 35
    assert monitor.challenger_rows == 30 and int(monitor.differential.pairs.sum()) == 30
    # promote: v2 serves as champion in table 3; v1's rows of a replica still on table 2 come late
    later = [f"s{i}" for i in range(40)]
    feed(monitor, "m:v2", "champion", 3, later, np.ones(40))
    feed(monitor, "m:v1", "champion", 2, [f"t{i}" for i in range(5)], np.zeros(5))
    st = monitor.differential.status()
    assert st["champion"] == "m:v2" and st["champion_epoch"] == 3 and st["champion_switches"] == 1
    assert monitor.rows_total == 75  # v2's rows after the promotion count as champion rows ...
    assert monitor.challenger_rows == 35  # ... v1's stale ones do not switch it back
    assert st["rows_by_role"] == {"champion": 80, "shadow": 30}
    assert st["roles"]["m:v2"] == {"role": "champion", "epoch": 3}
    # labels now score the new champion's predictions
    matched, _ = monitor.feedback(later[:10], [1] * 10)
    assert matched == 10


def test_labels_of_shadowed_requests_score_the_champion_that_answered(monitor: Monitor) -> None:
    """A shadow's copy has the champion's request id and may reach the monitor first: it took the
    label (scored against an answer no client saw) and left the champion's row pending for good,
    20-30 % of labels with one client."""
    ids = [f"q{i}" for i in range(20)]
    feed(monitor, "m:v1", "champion", 1, ["w0"], np.zeros(1))
    feed(monitor, "m:v2", "shadow", 2, ids, np.ones(20))  # the copies first
    assert monitor.feedback(ids[:10], [0] * 10)[0] == 0  # labels before the champion's rows: they wait
    feed(monitor, "m:v1", "champion", 2, ids, np.zeros(20))  # ... and join them here
    assert monitor.feedback(ids[10:], [0] * 10)[0] == 10
    perf = monitor.status()["performance"]
    assert perf["labels"]["matched"] == 20 and perf["pending"] == 1  # (w0)
    assert perf["challengers"] == {}  # the shadow answered nobody: no labels of its own
    assert monitor.performance.baseline_window.correct.sum() == 20  # every label scored v1's answer


def test_a_demoted_champion_is_not_guessed_back(monitor: Monitor) -> None:
    feed(monitor, "m:v1", "champion", 1, ["a", "b"], np.zeros(2))
    feed(monitor, "m:v1", "shadow", 2, ["c"], np.zeros(1))  # rollback made v1 the shadow; v2's rows not here yet
    assert monitor.differential.champion is None and monitor.rows_total == 2
    assert not monitor.differential.is_champion("m:v1")
    feed(monitor, "m:v2", "champion", 2, ["d"], np.zeros(1))
    assert monitor.differential.champion == "m:v2" and monitor.rows_total == 3


def test_epochs_that_restart_are_followed_after_a_long_run(monitor: Monitor) -> None:
    feed(monitor, "m:v1", "champion", 7, ["a"], np.zeros(1))
    for i in range(50):  # the control actor restarted: the new champion's table is epoch 1
        feed(monitor, "m:v2", "champion", 1, [f"b{i}"], np.zeros(1))
    assert monitor.differential.champion == "m:v1"
    feed(monitor, "m:v2", "champion", 1, ["c"], np.zeros(1))
    assert monitor.differential.champion == "m:v2" and monitor.differential.champion_epoch == 1
    feed(monitor, "m:v2", "champion", 2, ["d"], np.zeros(1))
    assert monitor.differential.champion_epoch == 2


def test_without_roles_the_first_version_is_the_champion(monitor: Monitor) -> None:
    monitor.ingest(cols(5), np.zeros(5), version="m:v1", request_ids=list("abcde"))
    monitor.ingest(cols(5), np.zeros(5), version="m:v2", request_ids=list("abcde"))
    assert monitor.differential.champion == "m:v1" and monitor.rows_total == 5


def test_merged_shards_equal_one_monitor_that_saw_everything(monitor: Monitor) -> None:
    import copy

    shards = [copy.deepcopy(monitor), copy.deepcopy(monitor)]
    rng = np.random.default_rng(5)
    X = {f: rng.normal(size=250) for f in FEATURES}
    preds = (X["a"] > 0).astype(float)
    ids = [f"q{i}" for i in range(250)]
    for i in range(0, 250, 10):  # the rows of 25 batches, alternately to shard 0 and 1
        part = slice(i, i + 10)
        for m in (monitor, shards[(i // 10) % 2]):
            m.differential.follow("m:v1", "champion", 1, 10)
            m.ingest({f: X[f][part] for f in FEATURES}, preds[part], version="m:v1", request_ids=ids[part],
                     latency_ms=np.full(10, 3.0), status=np.full(10, 200))
    for m, part in ((shards[0], ids[:10]), (shards[1], ids[10:20]), (monitor, ids[:20])):
        m.feedback(part, [1.0] * len(part))
    merged = merge_monitors([snapshot(s) for s in shards], config=monitor.config)
    whole, view = monitor.status(), merged.status()
    assert view["rows_total"] == whole["rows_total"] == 250 and view["batches"] == 25
    assert view["windows_closed"] == 2 == whole["windows_closed"]  # one window of 100 rows in each shard
    assert merged.long_term() is not None and merged.long_term().to_dict() == monitor.long_term().to_dict()
    assert view["performance"]["matched"] == 20 and view["performance"]["pending"] == 230
    # the change detectors and the estimate before labels are every shard's, not shard 0's alone
    concept, alone = view["performance"]["concept_drift"], whole["performance"]["concept_drift"]
    assert concept["labels"] == alone["labels"] == 20
    assert {k: d["labels"] for k, d in concept["overall"].items()} == {k: d["labels"] for k, d in
                                                                     alone["overall"].items()}
    assert view["performance"]["estimated"]["rows"] == whole["performance"]["estimated"]["rows"]
    assert view["performance"]["estimated"]["current"] == whole["performance"]["estimated"]["current"]
    assert view["slo"]["total_requests"] == 250
    assert view["differential"]["rows_by_role"] == {"champion": 250}
    assert snapshot(shards[0])  # the label store is not shipped, only its size
    assert len(merge_monitors([snapshot(shards[0])]).performance.store) == len(shards[0].performance.store)


def test_a_shadow_added_mid_window_pairs_from_its_first_request_and_agrees(monitor: Monitor) -> None:
    """v1 served 80 rows alone (all class 0), then v2 was added as a shadow that answers every later
    request as v1 does. Its first copies paired with nothing (the champion's rows were not kept while
    it was alone: 'pending' for good), and the window's champion distribution held the 80 rows the
    shadow never saw: a false 'predicts differently' alert at 100 % agreement."""
    monitor.config = monitor.config.model_copy(update={"window_rows": 400})
    alone = [f"a{i}" for i in range(80)]
    feed(monitor, "m:v1", "champion", 1, alone, np.zeros(80))
    rng = np.random.default_rng(2)
    for k in range(7):  # each request answered by the champion, then copied to the shadow
        ids = [f"s{k}-{i}" for i in range(30)]
        preds = rng.integers(0, 2, 30).astype(float)
        feed(monitor, "m:v1", "champion", 2, ids, preds)
        feed(monitor, "m:v2", "shadow", 2, ids, preds)
    d = monitor.differential
    assert int(d.pairs.sum()) == 210 and int(d.agree.sum()) == 210
    assert len(d.pending) == 80  # the rows v1 served alone: no copy will come for them
    alerts = d.evaluate(1_000.0, 0)
    assert alerts == [], [a.message for a in alerts]
    assert d.last is not None and d.last["challengers"]["m:v2"]["prediction_distance"] < 0.02  # was 0.39


def test_shadow_copies_are_no_requests_of_the_slo_a_canarys_are(monitor: Monitor) -> None:
    """An SLO counts what clients get: a shadow's copies are answered to nobody (its slowness or
    its 5xx burned the route's error budget, and its copies diluted the champion's)."""
    def send(version: str, role: str, ids: list[str], latency: float, status: int) -> None:
        monitor.differential.follow(version, role, 1, len(ids))
        monitor.ingest(cols(len(ids)), np.zeros(len(ids)), version=version, request_ids=ids,
                       latency_ms=np.full(len(ids), latency), status=np.full(len(ids), status), role=role)

    send("m:v1", "champion", [f"c{i}" for i in range(40)], 5.0, 200)
    send("m:v2", "shadow", [f"c{i}" for i in range(40)], 900.0, 500)  # the same requests, copied
    send("m:v3", "challenger", [f"k{i}" for i in range(10)], 5.0, 200)  # a canary answers its clients
    slo = monitor.status()["slo"]
    assert slo["total_requests"] == 50, slo
    assert slo["long"]["requests"] == 50 and slo["long"]["error_rate"] == 0.0, slo
    assert slo["long"]["latency_p99_ms"] < 900, slo
