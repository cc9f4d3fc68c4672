"""Early labels: a label that arrives before its row waits (bounded, with a time-to-live) and is
joined when the row comes; every label ends matched, waiting, expired or unknown (pure: no Ray,
a fake clock, no sleeping)."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

from raymlops.config import MonitorConfig, MonitorPerformanceConfig
from raymlops.monitor.labels import EarlyLabels, LabelCounts, RecentIds
from raymlops.monitor.monitor import Monitor
from raymlops.monitor.performance import PerformanceTracker
from raymlops.monitor.reference import MonitorReference, build_reference


class Clock:
    def __init__(self, t: float = 1_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def tracker(clock: Clock, **cfg: Any) -> PerformanceTracker:
    base: dict[str, Any] = {"baseline_labels": 10, "window_labels": 10, "min_labels": 5}
    return PerformanceTracker(MonitorPerformanceConfig.model_validate(base | cfg), ("all",), clock=clock)


def serve(t: PerformanceTracker, ids: list[str], preds: list[Any] | None = None, now: float | None = None) -> list[Any]:
    preds = [1] * len(ids) if preds is None else preds
    return t.remember(ids, preds, None, [0] * len(ids), now=now)


def balanced(t: PerformanceTracker) -> None:
    c = t.label_counts()
    assert c["received"] == c["matched"] + c["waiting"] + c["expired"] + c["unknown"], c


# ------------------------------------------------------------------------------- the pure store


def test_early_store_holds_until_taken_or_expired() -> None:
    clock = Clock()
    store = EarlyLabels(10, 60.0, clock)
    assert store.add("a", 1) and store.add("b", 0)
    assert not store.add("a", 0)  # one label per key: the first waits
    clock.t += 30
    assert store.add("c", 1)
    assert store.take(["b", "zzz"]) == [("b", 0)] and len(store) == 2
    clock.t += 30  # a's 60 s are up, c has 30 s left
    assert store.expire() == 1 and "a" not in store and "c" in store
    assert store.expire(now=clock.t + 30) == 1 and len(store) == 0 and store.expired == 2


def test_early_store_is_bounded_oldest_pushed_out() -> None:
    store = EarlyLabels(3, 60.0, Clock())
    for k in "abcde":
        store.add(k, 1)
    assert list(store.items) == ["c", "d", "e"] and store.expired == store.pushed_out == 2


def test_early_store_pickles_without_its_clock() -> None:
    store = EarlyLabels(3, 60.0, lambda: 5.0)  # a lambda does not pickle: the clock is left out
    store.add("a", 1)
    back = pickle.loads(pickle.dumps(store))
    assert back.items == store.items and callable(back.clock)
    with pytest.raises(ValueError, match="ttl_s"):
        EarlyLabels(3, 0.0)


def test_recent_ids_and_counts() -> None:
    r = RecentIds(2)
    for k in "abc":
        r.add(k)
    assert "a" not in r and "c" in r and len(r) == 2
    merged = LabelCounts(received=3, matched=2, unknown=1).merged([LabelCounts(received=1, expired=1)])
    assert merged.to_dict(waiting=0) == {"received": 4, "matched": 2, "matched_late": 0, "expired": 1,
                                         "pushed_out": 0, "unknown": 1, "waiting": 0}


# ------------------------------------------------------------------------ the tracker's join


def test_label_after_row_matches_at_once() -> None:
    t = tracker(Clock())
    serve(t, ["r1", "r2"])
    matched, _ = t.feedback(["r1"], [1], ts=1_000.0, window=0)
    assert matched == 1 and t.last_outcomes == ["matched"]
    assert t.label_counts() | {} == {"received": 1, "matched": 1, "matched_late": 0, "expired": 0, "pushed_out": 0,
                                     "unknown": 0, "waiting": 0}


def test_label_before_row_waits_and_is_joined_when_the_row_arrives() -> None:
    clock = Clock()
    t = tracker(clock)
    matched, _ = t.feedback(["r1", "r2"], [1, 0], ts=clock.t, window=0)
    assert matched == 0 and t.last_outcomes == ["waiting", "waiting"]
    assert t.label_counts()["waiting"] == 2
    clock.t += 10
    serve(t, ["r0", "r1", "r2", "r3"], [1, 1, 1, 1])
    c = t.label_counts()
    assert (c["matched"], c["matched_late"], c["waiting"]) == (2, 2, 0)
    assert t.baseline_window.rows == 2 and t.baseline_window.correct.sum() == 1  # r2: predicted 1, label 0
    assert len(t.store) == 2  # r0, r3 still wait for their labels
    balanced(t)


def test_labels_posted_much_later_still_match() -> None:
    """The prediction store has no time limit, only a size: a label ten minutes later matches."""
    clock = Clock()
    t = tracker(clock)
    serve(t, [f"r{i}" for i in range(50)], now=clock.t)
    clock.t += 600
    matched, _ = t.feedback([f"r{i}" for i in range(50)], [1] * 50, ts=clock.t, window=0)
    assert matched == 50 and t.label_counts()["matched"] == 50


def test_a_waiting_label_expires_after_its_ttl() -> None:
    clock = Clock()
    t = tracker(clock, early_label_ttl_s=30.0)
    t.feedback(["never-served", "late"], [1, 1], ts=clock.t, window=0)
    clock.t += 29.0
    assert t.expire() == 0 and t.label_counts()["waiting"] == 2
    clock.t += 1.0
    assert t.expire() == 2
    serve(t, ["late"], now=clock.t)  # the row came too late: its label is gone, the row waits for another
    c = t.label_counts()
    assert (c["expired"], c["waiting"], c["matched"]) == (2, 0, 0) and len(t.store) == 1
    balanced(t)


def test_expiry_happens_on_feedback_and_remember_too() -> None:
    clock = Clock()
    t = tracker(clock, early_label_ttl_s=5.0)
    t.feedback(["a"], [1], ts=clock.t, window=0)
    t.feedback(["b"], [1], ts=clock.t + 6, window=0)  # a expires here
    assert t.label_counts()["expired"] == 1
    serve(t, ["b"], now=clock.t + 12)  # b's ttl ended before its row: expired, not joined
    assert t.label_counts()["expired"] == 2 and t.label_counts()["matched"] == 0


def test_the_early_store_is_bounded() -> None:
    clock = Clock()
    t = tracker(clock, early_label_store_size=3)
    t.feedback([f"e{i}" for i in range(5)], [1] * 5, ts=clock.t, window=0)
    assert t.last_outcomes == ["expired", "expired", "waiting", "waiting", "waiting"]
    c = t.label_counts()
    assert (c["waiting"], c["expired"], c["pushed_out"]) == (3, 2, 2)
    serve(t, ["e0", "e4"])
    assert t.label_counts()["matched"] == 1  # e0 was pushed out
    balanced(t)


def test_duplicates_are_unknown_and_the_first_label_counts() -> None:
    clock = Clock()
    t = tracker(clock)
    serve(t, ["r1"], [1])
    t.feedback(["r1", "r1"], [1, 0], ts=clock.t, window=0)
    assert t.last_outcomes == ["matched", "unknown"]
    t.feedback(["w", "w"], [0, 1], ts=clock.t, window=0)  # both before the row
    assert t.last_outcomes == ["waiting", "unknown"]
    serve(t, ["w"], [0])
    assert t.baseline_window.correct.sum() == 2  # r1 = 1 and w = 0: the first labels
    t.feedback(["w"], [1], ts=clock.t, window=0)  # labelled already
    assert t.last_outcomes == ["unknown"]
    c = t.label_counts()
    assert (c["received"], c["matched"], c["unknown"], c["waiting"]) == (5, 2, 3, 0)
    balanced(t)


def test_multi_row_keys_wait_and_join_per_row() -> None:
    clock = Clock()
    t = tracker(clock)
    t.feedback(["m/0", "m/1", "m/2"], [1, 0, 1], ts=clock.t, window=0)
    serve(t, ["m/0", "m/1", "m/2", "s"], [1, 1, 1, 0])
    assert t.label_counts()["matched"] == 3 and t.baseline_window.correct.sum() == 2
    serve(t, ["n/0", "n/1"])
    t.feedback(["n"], [1], ts=clock.t, window=0)  # one label for a request of two rows
    assert t.last_outcomes == ["unknown"]
    balanced(t)


def test_joins_at_ingest_close_windows_and_alert() -> None:
    clock = Clock()
    t = tracker(clock)
    ids = [f"b{i}" for i in range(10)]
    serve(t, ids, [1] * 10)
    t.feedback(ids, [1] * 10, ts=clock.t, window=0)  # baseline: accuracy 1
    assert t.baseline is not None and t.baseline["accuracy"] == 1.0
    late = [f"l{i}" for i in range(10)]
    t.feedback(late, [0] * 10, ts=clock.t, window=0)  # every label before its row, all wrong
    alerts = serve(t, late, [1] * 10, now=clock.t)
    assert [a.key for a in alerts] == ["performance:accuracy:all"]


# ------------------------------------------------------------------------- through the Monitor


@pytest.fixture(scope="module")
def reference() -> MonitorReference:
    rng = np.random.default_rng(0)
    return build_reference({"x": rng.normal(size=2_000)}, n_bins=10)


def test_monitor_joins_early_labels_at_ingest_and_checkpoints_them(reference: MonitorReference) -> None:
    clock = Clock()
    m = Monitor(reference, MonitorConfig.model_validate({"window_rows": 100}), clock=clock)
    ids = [f"q{i}" for i in range(20)]
    matched, _ = m.feedback(ids[:10] + ["m"], [1] * 10 + [[1, 0]])
    assert matched == 0 and m.performance.last_outcomes == ["waiting"] * 12
    restored = Monitor.from_bytes(m.to_bytes(), clock=clock)  # waiting labels survive a restart
    X = np.random.default_rng(1).normal(size=23)
    restored.ingest({"x": X}, np.ones(23), request_ids=ids + ["m", "m", "other"])
    c = restored.performance.label_counts()
    assert (c["matched"], c["matched_late"], c["waiting"]) == (12, 12, 0)
    assert restored.status()["performance"]["labels"]["matched"] == 12


def test_a_reused_request_id_names_its_last_request_in_one_batch_and_across_batches(
        reference: MonitorReference) -> None:
    """A client that reuses its X-Request-Id (a retry): two single-row requests in one hand-off
    were taken for one request of two rows (its label "unknown", both rows pending forever); a
    3-row request followed by a 2-row one with the same id refused the right list of labels. The
    id now names its last request; the earlier request's rows are counted ``replaced``."""
    clock = Clock()
    m = Monitor(reference, MonitorConfig.model_validate({"window_rows": 100}), clock=clock)
    x = np.random.default_rng(2).normal(size=7)
    # one hand-off: "r" twice (answers 0 then 1), "m" as 3 rows then as 2 rows
    ok = {"latency_ms": np.full(7, 5.0), "status": np.full(7, 200)}
    m.ingest({"x": x}, np.array([0, 1, 1, 1, 1, 0, 1]), request_ids=["r", "r", "m", "m", "m", "m", "m"],
             request_sizes=[1, 1, 3, 2], **ok)
    perf = m.status()["performance"]
    assert perf["pending"] == 3 and perf["replaced"] == 4  # r, m/0, m/1 wait; 1 + 3 rows replaced
    assert m.feedback(["r", "m"], [1, [0, 1]])[0] == 3  # the list of the last "m" request's 2 rows
    assert m.performance.last_outcomes == ["matched"] * 3
    assert m.performance.baseline_window.correct.sum() == 3  # joined with the last answers (1; 0, 1)

    # across hand-offs: "s" as 3 rows, then as 1 row, then as 2 rows
    m.ingest({"x": x[:3]}, np.array([1, 1, 1]), request_ids=["s"] * 3, request_sizes=[3])
    m.ingest({"x": x[:1]}, np.array([0]), request_ids=["s"], request_sizes=[1], latency_ms=[5.0], status=[200])
    assert m.status()["performance"]["pending"] == 1  # s/0..s/2 replaced by s
    m.ingest({"x": x[:2]}, np.array([0, 1]), request_ids=["s", "s"], request_sizes=[2])
    perf = m.status()["performance"]
    assert perf["pending"] == 2 and perf["replaced"] == 4 + 3 + 1
    assert m.feedback(["s"], [[0, 1]])[0] == 2
    restored = Monitor.from_bytes(m.to_bytes(), clock=clock)
    assert restored.status()["performance"]["replaced"] == 8
    c = restored.performance.label_counts()
    assert (c["received"], c["matched"], c["unknown"], c["waiting"]) == (5, 5, 0, 0)
    # the SLO counts requests, not ids: 4 in the first hand-off, 1 in the one that gave latencies
    assert m.slo.total_requests == 5


def test_unchanged_traffic_over_five_slices_seldom_alerts() -> None:
    """Five slices judged at 5 % each (and their AUC with no noise test at all) made a critical
    alert, and a retraining cycle, out of unchanged traffic: 0.72 against a 0.89 baseline of 53
    rows in one slice of five. The window's slice checks are one family now (Bonferroni)."""
    rng = np.random.default_rng(7)
    cfg = MonitorPerformanceConfig(baseline_labels=250, window_labels=250, min_labels=30)
    t = PerformanceTracker(cfg, ("north", "south", "east", "west", "mid"), clock=Clock())
    right = np.array([0.9, 0.8, 0.75, 0.85, 0.7])  # each slice's own accuracy, never changed
    alerting, n = 0, 0
    for w in range(80):
        ids = [f"r{n + i}" for i in range(250)]
        n += 250
        slices = rng.integers(0, 5, size=250)
        y = rng.random(250) < 0.5
        correct = rng.random(250) < right[slices]
        preds = np.where(correct, y, ~y).astype(int)
        scores = np.clip(np.where(preds == 1, 0.75, 0.25) + rng.normal(0, 0.2, 250), 0, 1)
        t.remember(ids, preds.tolist(), scores.tolist(), slices.tolist(), now=0.0)
        alerts = t.feedback(ids, y.astype(int).tolist(), ts=0.0, window=w)[1]
        if w > 0:  # (the first window is the baseline)
            alerting += any(a.key.startswith("performance:") and a.slice != "all" for a in alerts)
    assert alerting <= 0.1 * 79, alerting  # (72 of 79 windows alerted before)


def test_a_slice_is_judged_against_its_own_baseline_and_beyond_noise() -> None:
    """A slice harder than the others on unchanged traffic (south: 60 % right, north: 90 %) raised
    a critical performance alert in every window, judged against the overall baseline (75 %).
    Judged against its own, it alerts only when it drops past the limit by more than noise."""
    clock = Clock()
    cfg = MonitorPerformanceConfig(baseline_labels=400, window_labels=400, min_labels=50)
    t = PerformanceTracker(cfg, ("north", "south"), clock=clock)
    rng = np.random.default_rng(0)
    n = 0

    def window(south_right: float, north_right: float = 0.9) -> list[Any]:
        nonlocal n
        ids = [f"r{n + i}" for i in range(400)]
        n += 400
        slices = [i % 2 for i in range(400)]  # 0: north, 1: south
        right = rng.random(400) < np.where(np.array(slices) == 1, south_right, north_right)
        alerts = t.remember(ids, [1] * 400, None, slices, now=clock.t)
        return alerts + t.feedback(ids, [1 if r else 0 for r in right], ts=clock.t, window=0)[1]

    window(0.6)  # the baseline
    assert t.slice_baselines["south"]["labels"] == 200 and t.baseline is not None
    quiet = [a for _ in range(5) for a in window(0.6)]
    assert not [a for a in quiet if a.key.startswith("performance:")], [a.message for a in quiet]
    dropped = [a for a in window(0.3) if a.key.startswith("performance:")]  # south's accuracy halves
    keys = [a.key for a in dropped]  # (all rows drop too: south is half of them)
    assert "performance:accuracy:south" in keys and "performance:accuracy:north" not in keys, keys
    south = next(a for a in dropped if a.key == "performance:accuracy:south")
    assert "(baseline 0.5800, 200 labelled rows)" in south.message


def test_a_label_list_posted_before_its_rows_is_judged_as_if_posted_after() -> None:
    """Posted after the rows, a list of the wrong length is a 422 and nothing counts; posted the
    instant the answer arrived (before the rows reached the monitor) it was joined row by row."""
    clock = Clock()
    t = tracker(clock, baseline_labels=100)
    t.feedback(["short/0", "short/1"], [1, 0], ts=clock.t, window=0, lists={"short": 2})
    t.feedback(["whole/0", "whole/1", "whole/2"], [1, 0, 1], ts=clock.t, window=0, lists={"whole": 3})
    t.feedback(["one/0"], [1], ts=clock.t, window=0, lists={"one": 1})  # [[1]] for a single-row request
    t.feedback(["plain"], [1], ts=clock.t, window=0)  # one label for a request of two rows
    assert t.label_counts()["waiting"] == 7
    serve(t, ["short/0", "short/1", "short/2", "whole/0", "whole/1", "whole/2", "one", "plain/0", "plain/1"])
    c = t.label_counts()
    assert (c["matched"], c["unknown"], c["waiting"]) == (4, 3, 0), c  # whole's 3 and one's; short's 2 and plain
    assert t.baseline_window.n.sum() == 4
    balanced(t)
    serve(t, ["late"])  # [[1]] for a single-row request already served: that row's label
    t.feedback(["late/0"], [1], ts=clock.t, window=0, lists={"late": 1})
    assert t.last_outcomes == ["matched"]
    balanced(t)


def test_status_unmatched_is_every_label_but_the_matched_ones() -> None:
    """It counted the labels that came before their row, though they all matched later."""
    clock = Clock()
    t = tracker(clock, baseline_labels=100)
    t.feedback(["e0", "e1"], [1, 1], ts=clock.t, window=0)  # before their rows
    serve(t, ["e0", "e1", "n0"])
    t.feedback(["n0", "nobody"], [1, 1], ts=clock.t, window=0)
    st = t.status()
    assert st["labels"]["matched"] == 3 and st["labels"]["matched_late"] == 2 and st["labels"]["waiting"] == 1
    assert st["unmatched"] == 1  # "nobody" alone


def test_after_a_promotion_the_old_champions_rows_score_its_version_not_the_new_baseline(
        reference: MonitorReference) -> None:
    """Labels that come after a promotion for rows the old champion answered are that version's;
    the new champion's baseline is made of its own answers (the old one's 100 % made the new
    model's normal 90 % a critical performance alert)."""
    clock = Clock()
    cfg = MonitorConfig.model_validate({"window_rows": 1000, "performance": {"baseline_labels": 20,
                                                                              "window_labels": 20, "min_labels": 5}})
    m = Monitor(reference, cfg, clock=clock)
    X = np.random.default_rng(2).normal(size=40)
    old = [f"v1-{i}" for i in range(40)]
    m.ingest({"x": X}, np.ones(40), version="m:v1", request_ids=old)  # v1 answers, labels still to come
    m = m.rebased(reference, cfg)  # promoted: m:v3 is the champion now
    new = [f"v3-{i}" for i in range(40)]
    m.ingest({"x": X}, np.ones(40), version="m:v3", request_ids=new)
    matched, _ = m.feedback(old, [1] * 40)  # v1 was right every time
    assert matched == 40 and m.performance.baseline is None  # no baseline from v1's answers
    assert m.status()["performance"]["challengers"]["m:v1"] == {"labels": 40, "accuracy": 1.0}
    truth = [0 if i % 10 == 0 else 1 for i in range(40)]  # v3 is right 90 % of the time, as it always was
    _, alerts = m.feedback(new, truth)
    assert m.performance.baseline is not None and m.performance.baseline["accuracy"] == pytest.approx(0.9)
    assert not [a for a in alerts if a.key.startswith("performance:")], [a.message for a in alerts]
