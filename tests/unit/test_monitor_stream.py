"""The streaming monitor core (reference, state, verdicts, windows, checks): pure, no Ray."""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from scipy import stats

from raymlops.config import BurnWindowConfig, MonitorConfig, MonitorSLOConfig
from raymlops.exceptions import ValidationError
from raymlops.monitor import Monitor, StreamState, build_reference, evaluate
from raymlops.monitor.alerts import Alert
from raymlops.monitor.metrics import MonitorCollector
from raymlops.monitor.reference import OTHER_SLICE, MonitorReference

SEGMENTS = np.array(["a", "b", "c"], dtype=object)


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def table(rng: np.random.Generator, n: int, shift: float = 0.0, scale: float = 1.0, new_cat: float = 0.0,
          seg_shift: str | None = None) -> dict[str, np.ndarray]:
    seg = SEGMENTS[rng.integers(0, 3, size=n)]
    x = rng.normal(0.0, scale, size=n) + shift
    if seg_shift is not None:
        x = np.where(seg == seg_shift, x + 1.0, x)
    color = np.array(["red", "green", "blue"], dtype=object)[rng.choice(3, size=n, p=[0.5, 0.3, 0.2])]
    if new_cat:
        color[rng.random(n) < new_cat] = "violet"
    return {"x": x, "y": rng.lognormal(0.0, 1.0, size=n), "color": color, "seg": seg}


@pytest.fixture(scope="module")
def reference() -> MonitorReference:
    return build_reference(table(np.random.default_rng(0), 30_000), slice_columns=["seg"])


def kinds(alerts: list[Alert]) -> set[str]:
    return {a.key for a in alerts}


# ------------------------------------------------------------------------------ reference/state


def test_reference_buckets_slices_and_json(reference: MonitorReference) -> None:
    assert reference.names == ("x", "y", "color")
    assert set(reference.slices[:3]) == {"seg=a", "seg=b", "seg=c"}  # most frequent first
    assert reference.slices[3] == OTHER_SLICE
    color = reference.column("color")
    assert color.kind == "categorical" and set(color.categories) == {"red", "green", "blue"} and color.complete
    x = reference.column("x")
    assert x.kind == "numeric" and x.n_buckets == x.edges.size + 2
    assert reference.counts[:3].sum() == 3 * 30_000 and reference.counts[3].sum() == 0
    back = MonitorReference.from_json(reference.to_json())
    assert back.same_as(reference) and back.digest == reference.digest


def test_grid_bucketing_matches_binary_search(reference: MonitorReference) -> None:
    rng = np.random.default_rng(1)
    for name in ("x", "y"):
        col = reference.column(name)
        e = col.edges
        values = np.concatenate([rng.normal(size=50_000), rng.lognormal(0, 1, 50_000), e, np.nextafter(e, -np.inf),
                                 np.nextafter(e, np.inf), [np.nan, np.inf, -np.inf, 1e300, -1e300, 0.0]])
        np.testing.assert_array_equal(col.bucketize(values), col.bucketize_exact(values))
    assert list(reference.column("color").bucketize(np.array(["red", "violet", None], dtype=object))) == [
        reference.column("color").categories.index("red"), 3, 4]


def test_merge_of_two_states_equals_one_state_over_all_rows(reference: MonitorReference) -> None:
    rng = np.random.default_rng(2)
    batches = [table(rng, n) for n in (300, 1_234, 57, 2_000, 911)]
    one = StreamState(reference)
    for b in batches:
        one.update(b)
    left, right = StreamState(reference), StreamState(reference)
    for b in batches[:2]:
        left.update(b)
    for b in batches[2:]:
        right.update(b)
    assert left.merge(right) == one and right.merge(left) == one
    assert left.merge(right).rows == sum(len(b["x"]) for b in batches)
    everything = np.concatenate([b["x"] for b in batches])
    assert one.moments("x").mean == pytest.approx(everything.mean(), rel=1e-12)
    assert one.moments("x").count == everything.size


def test_state_memory_is_flat_as_rows_grow(reference: MonitorReference) -> None:
    state = StreamState(reference)
    rng = np.random.default_rng(3)
    state.update(table(rng, 1_000))
    first = state.nbytes()
    for _ in range(40):
        state.update(table(rng, 5_000))
    assert state.rows == 201_000
    assert state.nbytes() <= first + 64 * state.finite.size  # a few more bits per exact sum, nothing per row


def test_bad_batch_changes_nothing(reference: MonitorReference) -> None:
    state = StreamState(reference)
    batch = table(np.random.default_rng(4), 100)
    del batch["y"]
    with pytest.raises(ValidationError, match=r"lacks reference columns \['y'\]"):
        state.update(batch)
    ragged = table(np.random.default_rng(4), 100)
    ragged["x"] = ragged["x"][:-1]
    with pytest.raises(ValidationError, match="expected 1-D values of length"):
        state.update(ragged)
    assert state.rows == 0


# ------------------------------------------------------------------------------ statistics


def test_binned_statistics_track_the_exact_ones(reference: MonitorReference) -> None:
    rng = np.random.default_rng(5)
    ref_x = table(np.random.default_rng(0), 30_000)["x"]
    cur = table(rng, 800, shift=0.15)
    state = StreamState(reference)
    state.update(cur)
    v = evaluate(state, MonitorConfig()).overall.column("x")
    exact = stats.ks_2samp(ref_x, cur["x"])
    assert v.ks == pytest.approx(exact.statistic, abs=0.02)  # up to one fine bin (1% of the mass)
    assert v.p_value == pytest.approx(exact.pvalue, rel=1.0, abs=1e-3)
    w = stats.wasserstein_distance(ref_x, cur["x"]) / ref_x.std()
    assert v.wasserstein == pytest.approx(w, rel=0.1)


@pytest.mark.parametrize("rows", [400, 5_000])
def test_no_drift_no_alert_at_the_corrected_level(reference: MonitorReference, rows: int) -> None:
    rng = np.random.default_rng(10 + rows)
    drifted_windows = 0
    for _ in range(20):
        state = StreamState(reference)
        state.update(table(rng, rows))
        v = evaluate(state, MonitorConfig())
        drifted_windows += bool(v.overall.drifted)
        assert not v.overall.dataset_drift
    assert drifted_windows <= 2  # Bonferroni at 0.05: about 1 in 20 windows at most


@pytest.mark.parametrize("rows", [400, 5_000])
@pytest.mark.parametrize(("change", "column"), [({"shift": 0.5}, "x"), ({"scale": 1.6}, "x"),
                                                ({"new_cat": 0.2}, "color")])
def test_mean_shift_variance_change_and_new_category_are_found(reference: MonitorReference, rows: int,
                                                               change: dict[str, float], column: str) -> None:
    state = StreamState(reference)
    state.update(table(np.random.default_rng(20 + rows), rows, **change))
    v = evaluate(state, MonitorConfig()).overall
    assert v.drifted == (column,)
    c = v.column(column)
    assert c.test == {("x", True): "ks", ("x", False): "wasserstein", ("color", True): "chi2",
                      ("color", False): "js"}[(column, rows <= 1000)]
    assert c.psi > 0.1 and c.psi_band in ("moderate", "significant")


def test_tests_and_corrections_are_configurable(reference: MonitorReference) -> None:
    state = StreamState(reference)
    state.update(table(np.random.default_rng(6), 3_000, shift=0.5))
    v = evaluate(state, MonitorConfig(numeric_test="psi", categorical_test="chi2", correction="bh")).overall
    assert v.column("x").test == "psi" and v.column("x").drift
    assert v.column("color").test == "chi2" and not v.column("color").drift
    strict = evaluate(state, MonitorConfig(wasserstein_threshold=5.0)).overall
    assert not strict.column("x").drift and strict.column("x").wasserstein > 0.4  # score reported anyway


def test_drift_in_one_slice_only_is_found_in_that_slice(reference: MonitorReference) -> None:
    state = StreamState(reference)
    state.update(table(np.random.default_rng(7), 1_500, seg_shift="b"))
    v = evaluate(state, MonitorConfig())
    assert v.drifted_slices == ("seg=b",)
    assert next(s for s in v.slices if s.name == "seg=b").column("x").drift


# ------------------------------------------------------------------------------ Monitor


def monitor(reference: MonitorReference, clock: Clock | None = None, **cfg: Any) -> Monitor:
    base: dict[str, Any] = {"window_rows": 1_000, "slice_columns": ["seg"]}
    return Monitor(reference, MonitorConfig.model_validate(base | cfg), clock=clock or Clock())


def test_tumbling_windows_split_batches_exactly(reference: MonitorReference) -> None:
    m = monitor(reference)
    rng = np.random.default_rng(8)
    m.ingest(table(rng, 2_500))
    assert m.window_index == 2 and m.current.rows == 500
    assert [r.verdict.rows for r in m.history] == [1_000, 1_000]
    long_term = m.long_term()
    assert long_term is not None and long_term.rows == 2_500


def test_time_windows_use_the_injected_clock(reference: MonitorReference) -> None:
    clock = Clock()
    m = monitor(reference, clock, window_rows=None, window_s=60.0)
    rng = np.random.default_rng(9)
    m.ingest(table(rng, 300))
    clock.t += 59
    m.tick()
    assert m.window_index == 0
    clock.t += 2
    m.tick()
    assert m.window_index == 1 and m.history[-1].verdict.rows == 300


def test_monitor_alerts_once_per_cooldown_then_again(reference: MonitorReference) -> None:
    clock = Clock()
    m = monitor(reference, clock)
    rng = np.random.default_rng(11)
    first = m.ingest(table(rng, 1_000, shift=1.0))
    assert {"dataset_drift", "feature_drift:x:all"} <= kinds(first) or "feature_drift:x:all" in kinds(first)
    assert m.ingest(table(rng, 1_000, shift=1.0)) == []  # same alert within the cooldown
    clock.t += 301
    assert "feature_drift:x:all" in kinds(m.ingest(table(rng, 1_000, shift=1.0)))


def test_a_dataset_drift_of_other_features_within_the_cooldown_is_alerted(reference: MonitorReference) -> None:
    """The cooldown holds back a repeat of the same drift (keyed by the drifted features), not a
    new one: the key was the constant "dataset_drift", so it swallowed a drift of other columns."""
    m = monitor(reference, Clock())
    rng = np.random.default_rng(12)
    first = [a for a in m.ingest(table(rng, 1_000, shift=1.0)) if a.kind == "dataset_drift"]
    assert [a.key for a in first] == ["dataset_drift:x"]
    other = table(rng, 1_000)
    other["color"] = np.array(["blue"] * 1_000, dtype=object)  # another feature, within the cooldown
    second = [a for a in m.ingest(other) if a.kind == "dataset_drift"]
    assert [a.key for a in second] == ["dataset_drift:color"]
    assert m.alerts.totals["dataset_drift"] == 2


def test_monitor_slice_alert_names_the_slice(reference: MonitorReference) -> None:
    m = monitor(reference)
    alerts = m.ingest(table(np.random.default_rng(12), 1_500, seg_shift="c"))
    assert "slice_drift:x:seg=c" in kinds(alerts)
    assert not any(k.startswith("slice_drift") and not k.endswith("seg=c") for k in kinds(alerts))


def test_prediction_drift_against_the_first_window(reference: MonitorReference) -> None:
    m = monitor(reference)
    rng = np.random.default_rng(13)
    for _ in range(2):
        assert not any(a.kind == "prediction_drift" for a in m.ingest(table(rng, 1_000), rng.random(1_000) < 0.3))
    alerts = m.ingest(table(rng, 1_000), rng.random(1_000) < 0.7)
    assert "prediction_drift:__prediction__:all" in kinds(alerts)


def test_anomalies_missing_out_of_range_unseen(reference: MonitorReference) -> None:
    m = monitor(reference)
    batch = table(np.random.default_rng(14), 1_000)
    batch["y"][:200] = np.nan
    batch["x"][:100] = 1e6
    batch["color"][:50] = "violet"
    keys = kinds(m.ingest(batch))
    assert {"anomaly:missing:y", "anomaly:out_of_range:x", "anomaly:unseen:color"} <= keys


def test_bias_positive_rate_gap_across_slices(reference: MonitorReference) -> None:
    m = monitor(reference, max_positive_rate_gap=0.2)
    rng = np.random.default_rng(15)
    batch = table(rng, 1_000)
    preds = np.where(batch["seg"] == "a", rng.random(1_000) < 0.8, rng.random(1_000) < 0.3).astype(int)
    assert "bias:positive_rate_gap" in kinds(m.ingest(batch, preds))
    assert m.history[-1].positive_rates["seg=a"] > 0.7


def test_challenger_that_disagrees_raises_a_differential_alert(reference: MonitorReference) -> None:
    m = monitor(reference)
    rng = np.random.default_rng(16)
    batch = table(rng, 1_000)
    ids = [f"r{i}" for i in range(1_000)]
    champ = (batch["x"] > 0).astype(int)
    challenger = np.where(batch["seg"] == "b", 1 - champ, champ)  # wrong on one slice
    m.ingest(batch, challenger, version="v2-challenger", request_ids=ids)  # shadow first: order does not matter
    alerts = m.ingest(batch, champ, version="v1", request_ids=ids)
    assert m.differential.champion == "v2-challenger"  # first version seen, unless configured
    m2 = monitor(reference, differential={"champion": "v1"})
    m2.ingest(batch, challenger, version="v2", request_ids=ids)
    alerts = m2.ingest(batch, champ, version="v1", request_ids=ids)
    assert {"differential:agreement", "differential:slice:seg=b"} <= kinds(alerts)
    assert m2.challenger_rows == 1_000 and m2.rows_total == 1_000  # shadow rows do not count as traffic
    m3 = monitor(reference, differential={"champion": "v1"})
    m3.ingest(batch, champ, version="v2", request_ids=ids)
    assert not any(a.kind == "differential" for a in m3.ingest(batch, champ, version="v1", request_ids=ids))


def test_a_regression_challenger_agrees_within_the_tolerance(reference: MonitorReference) -> None:
    """A regression's two models never give the same float: they agree within the differential
    tolerance, and their prediction distributions are compared on bins that wide (on exact values
    every float was a category of its own: agreement 0 and Jensen-Shannon distance 1, so a
    regression challenger could never be promoted)."""
    rng = np.random.default_rng(18)
    batch = table(rng, 1_000)
    ids = [f"r{i}" for i in range(1_000)]
    champ = 150.0 + 40.0 * batch["x"]
    close = champ + rng.normal(0.0, 2.0, 1_000)  # another regressor of the same data: within 10 of it
    far = np.where(batch["seg"] == "b", champ + 60.0, close)  # off by 60 on one slice
    regression = {"performance": {"task": "regression"}, "differential": {"champion": "v1", "tolerance": 10.0}}
    m = monitor(reference, **regression)
    m.ingest(batch, close, version="v2", request_ids=ids)
    assert not any(a.kind == "differential" for a in m.ingest(batch, champ, version="v1", request_ids=ids))
    last = m.differential.last  # the window closed: its pairs and distributions were judged
    assert last is not None and last["pairs"] == 1_000 and last["agreement"] == 1.0
    assert last["challengers"]["v2"]["prediction_distance"] < 0.1
    m2 = monitor(reference, **regression)
    m2.ingest(batch, far, version="v2", request_ids=ids)
    alerts = m2.ingest(batch, champ, version="v1", request_ids=ids)
    share_b = float((batch["seg"] == "b").mean())
    assert m2.differential.last is not None
    assert m2.differential.last["agreement"] == pytest.approx(1.0 - share_b)
    assert {"differential:agreement", "differential:slice:seg=b"} <= kinds(alerts)
    # without a tolerance (a classifier's rule): equal values only
    m3 = monitor(reference, differential={"champion": "v1"}, performance={"task": "regression"})
    m3.ingest(batch, close, version="v2", request_ids=ids)
    m3.ingest(batch, champ, version="v1", request_ids=ids)
    assert m3.differential.last is not None and m3.differential.last["agreement"] == 0.0


def test_agreement_rule_and_the_default_tolerance() -> None:
    from raymlops.stats.agreement import MAE_SHARE, agreeing, regression_tolerance

    assert regression_tolerance({"mae": 41.0, "r2": 0.5}) == pytest.approx(MAE_SHARE * 41.0)
    assert regression_tolerance({"accuracy": 0.9}) is None and regression_tolerance(None) is None
    assert regression_tolerance({"mae": float("nan")}) is None
    assert agreeing([1.0, 2.0, 3.0], [1.4, 2.6, 3.0], 0.5).tolist() == [True, False, True]
    assert agreeing([1.0, 2.0], [1.0, 2.0000001]).tolist() == [True, False]
    assert agreeing(np.array(["a", "b"], dtype=object), np.array(["a", "c"], dtype=object), 0.5).tolist() == \
        [True, False]
    from raymlops.stats.agreement import labels_agree

    assert labels_agree("150", "154.5", 5.0) and not labels_agree("150", "156", 5.0)
    assert labels_agree("<missing>", "<missing>", 5.0) and not labels_agree("<missing>", "150", 5.0)
    assert not labels_agree("1", "1.0")  # without a tolerance: equal labels only

    # a replica's champion works its tolerance out once: half its holdout MAE, for a regression only
    from raymlops.registry.spec import ModelSpec
    from raymlops.serve.loaded import LoadedModel
    from raymlops.serve.request import Signature

    def loaded(output: str) -> LoadedModel:
        signature = {"inputs": [{"name": "x", "type": "double"}], "output": output}
        spec = ModelSpec("m:v1", "/tmp", "k", "0" * 64, signature, metrics={"mae": 8.0, "accuracy": 0.9})
        return LoadedModel("m:v1", spec, None, Signature.from_dict(signature), False)

    assert loaded("regression").agreement_tolerance == 4.0 and loaded("classification").agreement_tolerance is None


def test_label_only_change_raises_a_performance_alert(reference: MonitorReference) -> None:
    m = monitor(reference, performance={"baseline_labels": 500, "window_labels": 1_000})
    rng = np.random.default_rng(17)
    alerts: list[Alert] = []
    for step in range(4):
        batch = table(rng, 1_000)  # inputs never change
        preds = (batch["x"] > 0).astype(int)
        ids = [f"{step}-{i}" for i in range(1_000)]
        alerts += m.ingest(batch, preds, request_ids=ids)
        flip = 0.05 if step < 2 else 0.4  # P(y|x) changes from step 2 on
        labels = np.where(rng.random(1_000) < flip, 1 - preds, preds)
        matched, new = m.feedback(ids, labels)
        assert matched == 1_000
        alerts += new
        if step == 1:
            assert not any(a.kind == "performance" for a in alerts)
    assert "performance:accuracy:all" in kinds(alerts)
    assert not any(a.kind in ("feature_drift", "dataset_drift") for a in alerts)
    assert m.performance.baseline is not None and m.performance.baseline["accuracy"] > 0.9


def test_label_store_is_bounded(reference: MonitorReference) -> None:
    m = monitor(reference, performance={"label_store_size": 100})
    batch = table(np.random.default_rng(18), 500)
    m.ingest(batch, np.zeros(500), request_ids=[str(i) for i in range(500)])
    assert len(m.performance.store) == 100 and m.performance.store.evicted == 400
    matched, _ = m.feedback(["0", "499"], [0, 0])
    assert matched == 1


def test_multi_row_requests_count_once_and_take_labels_per_row(reference: MonitorReference) -> None:
    m = monitor(reference)
    batch = table(np.random.default_rng(23), 5)
    ids = ["single", "multi", "multi", "multi", "other"]  # as the serving handoff sends them: one id per row
    m.ingest(batch, np.array([1, 0, 1, 1, 0]), request_ids=ids, latency_ms=np.full(5, 3.0),
             status=np.array([200, 500, 500, 500, 200]))
    assert m.slo.total_requests == 3 and m.slo.total_errors == 1
    assert sorted(m.performance.store.items) == ["multi/0", "multi/1", "multi/2", "other", "single"]
    matched, _ = m.feedback(["multi", "single"], [[0, 1, 0], 1])
    assert matched == 4 and len(m.performance.store) == 1
    with pytest.raises(ValidationError, match="differ in length"):
        m.feedback(["a", "b"], [1])


def test_a_list_of_labels_of_another_length_than_the_request_is_refused_and_changes_nothing(
        reference: MonitorReference) -> None:
    """Two labels for a three-row request matched two rows, and the right list sent after it found
    them labelled ("unknown"): now it is refused, naming the label, before any label of the call counts."""
    m = monitor(reference)
    m.ingest(table(np.random.default_rng(24), 4), np.array([1, 0, 1, 1]),
             request_ids=["one", "multi", "multi", "multi"])
    received = m.performance.counts.received
    for wrong in ([0, 1], [0, 1, 0, 1]):
        with pytest.raises(ValidationError, match=rf"labels\[1\]: request 'multi' answered 3 rows, so its list needs "
                                                  rf"3 labels \(one per row\), found {len(wrong)}"):
            m.feedback(["one", "multi"], [1, wrong])
    assert m.performance.counts.received == received and len(m.performance.store) == 4  # nothing taken
    assert m.feedback(["one", "multi"], [1, [0, 1, 0]])[0] == 4
    assert m.feedback(["later"], [[1, 0]])[0] == 0  # rows not seen yet: the labels wait, unchecked
    assert m.performance.rows_of("multi") == 3 and m.performance.rows_of("later") is None


def test_slo_burn_rate_alerts_on_both_windows(reference: MonitorReference) -> None:
    clock = Clock()
    slo = MonitorSLOConfig(availability_target=0.99, latency_ms=100.0, bucket_s=1.0,
                           burn_windows=[BurnWindowConfig(long_s=60.0, short_s=5.0, burn_rate=10.0)])
    m = monitor(reference, clock, slo=slo.model_dump())
    batch = table(np.random.default_rng(19), 10)
    for _ in range(60):  # a healthy minute
        clock.t += 1
        m.ingest(batch, latency_ms=np.full(10, 20.0), status=np.array([200] * 10))
    assert m.tick() == []
    for i in range(30):  # then 30% errors: burn 30x over 5 s at once, over 60 s only after 20 s
        clock.t += 1
        m.ingest(batch, latency_ms=np.full(10, 20.0), status=np.array([500] * 3 + [200] * 7))
        if i == 10:
            assert m.tick() == []  # long window: 33 errors in 600 requests, burn 5.5 < 10
    alerts = m.tick()
    assert kinds(alerts) == {"slo_burn:availability:60s/5s"}
    status = m.status()["slo"]
    assert status["short"]["error_rate"] == pytest.approx(0.3)
    assert status["short"]["latency_p50_ms"] == pytest.approx(25.1, rel=0.01)  # bucket upper edge


def test_checkpoint_round_trip_continues_the_windows(reference: MonitorReference) -> None:
    clock = Clock()
    m = monitor(reference, clock)
    rng = np.random.default_rng(20)
    m.ingest(table(rng, 1_500))
    back = Monitor.from_bytes(m.to_bytes(), clock=clock)
    assert back.current == m.current and back.window_index == 1 and len(back.history) == 1
    back.ingest(table(rng, 600))
    assert back.window_index == 2
    with pytest.raises(ValidationError, match="not a monitor checkpoint|unreadable"):
        Monitor.from_bytes(b"garbage")


def test_status_is_json(reference: MonitorReference) -> None:
    m = monitor(reference)
    m.ingest(table(np.random.default_rng(21), 1_200, shift=1.0), np.zeros(1_200))
    data = json.loads(json.dumps(m.status(), allow_nan=False))
    assert data["window"]["rows"] == 200 and data["windows_closed"] == 1
    assert data["last_window"]["overall"]["dataset_drift"] in (True, False)


def test_prometheus_exposition_parses(reference: MonitorReference) -> None:
    m = monitor(reference)
    m.ingest(table(np.random.default_rng(22), 1_200, shift=1.0), np.zeros(1_200), latency_ms=np.full(1_200, 5.0),
             status=np.full(1_200, 200))
    registry = CollectorRegistry(auto_describe=False)
    registry.register(MonitorCollector("m1", m.status))
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert {"raymlops_drift_score", "raymlops_drift_p_value", "raymlops_alerts", "raymlops_monitor_window_rows",
            "raymlops_slo_latency_seconds", "raymlops_dataset_drift"} <= set(families)
    scores = {(s.labels["feature"], s.labels["slice"]): s.value for s in families["raymlops_drift_score"].samples}
    assert scores[("x", "all")] > 0.1 and ("x", "seg=a") in scores
    alerts = {s.labels["kind"]: s.value for s in families["raymlops_alerts"].samples if s.name.endswith("_total")}
    assert alerts["feature_drift"] >= 1
    # promtool's rules: only summaries carry "quantile", only histograms "le"
    for family in families.values():
        if family.type not in ("summary", "histogram"):
            assert not any({"quantile", "le"} & set(x.labels) for x in family.samples), family.name
    latency = {(x.labels["window"], x.labels["percentile"]) for x in families["raymlops_slo_latency_seconds"].samples}
    assert ("short", "99") in latency



def test_per_feature_series_are_exported_before_the_first_window_closes(reference: MonitorReference) -> None:
    m = monitor(reference)
    m.ingest(table(np.random.default_rng(23), 117, shift=1.0), np.zeros(117))  # a window is 1,000 rows
    assert m.status()["windows_closed"] == 0
    registry = CollectorRegistry()
    registry.register(MonitorCollector("m1", m.status))
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    assert not families["raymlops_drift_p_value"].samples  # no closed window yet
    p_values = {(x.labels["feature"], x.labels["slice"]): x.value
                for x in families["raymlops_drift_long_term_p_value"].samples}
    assert {("x", "all"), ("y", "all"), ("color", "all")} <= set(p_values)
    assert p_values[("x", "all")] < 1e-6  # x is shifted by 1 sd
    detected = {x.labels["feature"]: x.value for x in families["raymlops_drift_long_term_detected"].samples
                if x.labels["slice"] == "all"}
    assert detected["x"] == 1.0
    assert families["raymlops_drift_long_term_rows"].samples[0].value == 117


# ------------------------------------------------------------------------------ sinks


def test_alerts_reach_webhook_and_audit_log(tmp_path: Any) -> None:
    from raymlops import audit
    from raymlops.config import MonitorAlertsConfig
    from raymlops.monitor.sinks import send_alerts
    from raymlops.store.home import Store

    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = MonitorAlertsConfig(webhook_url=f"http://127.0.0.1:{server.server_address[1]}/hook", log=False)
        alert = Alert(kind="feature_drift", key="feature_drift:x:all", severity="warning", message="x drifted",
                      value=1e-9, threshold=float("nan"), ts=1.0)
        assert send_alerts([alert], cfg, "m1", tmp_path) == []
        assert received[0]["model"] == "m1" and received[0]["alerts"][0]["key"] == "feature_drift:x:all"
        records = audit.records(Store.open(tmp_path).metadata, action="alert.")
        assert [r.action for r in records] == ["alert.feature_drift"]
        bad = MonitorAlertsConfig(webhook_url="http://127.0.0.1:9/nothing", log=False, audit=False, timeout_s=0.5)
        problems = send_alerts([alert], bad, "m1", None)
        assert len(problems) == 1 and problems[0].startswith("webhook")
    finally:
        server.shutdown()


def test_monitor_core_imports_no_ray() -> None:
    import subprocess

    code = ("import sys, raymlops.monitor, raymlops.monitor.offline, raymlops.monitor.metrics, "
            "raymlops.cli.monitor_cmd; print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("kind", ["normal", "heavy", "integers", "narrow", "huge", "subnormal"])
def test_stacked_grids_bucket_every_column_as_binary_search(kind: str) -> None:
    """All numeric columns bucketed at once (:class:`GridSet`) equal ``searchsorted`` per column,
    on edges, their neighbours, infinities, NaN and values far outside the range."""
    from raymlops.monitor.bucketing import GridSet

    rng = np.random.default_rng(5)
    n = 20_000
    base = {"normal": rng.normal(size=n), "heavy": rng.standard_cauchy(size=n) * 1e3,
            "integers": rng.integers(0, 7, size=n).astype(np.float64), "narrow": 1.0 + rng.normal(size=n) * 1e-13,
            "huge": 1e300 + rng.normal(size=n) * 1e290, "subnormal": rng.integers(0, 3, size=n) * 5e-324}[kind]
    reference = build_reference({"a": base, "b": rng.normal(size=n), "c": base[::-1].copy()})
    edges = [c.edges for c in reference.columns]
    grids = GridSet(edges, reference.offsets.tolist())
    probe = np.concatenate([base[:3_000], edges[0], np.nextafter(edges[0], -np.inf), np.nextafter(edges[0], np.inf),
                            [np.nan, np.inf, -np.inf, 1e308, -1e308, 0.0, -0.0, 5e-324]])
    x = np.stack([probe, rng.normal(size=probe.size) * 3, probe[::-1]])
    x[1, :5] = [np.nan, np.inf, -np.inf, edges[1][0], edges[1][-1]]
    out = np.empty(x.shape, dtype=np.int64)
    grids.lookup(x, out)
    for i, e in enumerate(edges):
        expected = np.searchsorted(np.append(e, np.nan), x[i], side="right") + reference.offsets[i]
        np.testing.assert_array_equal(out[i], expected)
    # and through the reference and the state: the same counts as bucketing column by column
    batch = {"a": x[0], "b": x[1], "c": x[2]}
    _, idx, _ = reference.bucketize(batch)
    for i, name in enumerate("abc"):
        np.testing.assert_array_equal(idx[i] - reference.offsets[i], reference.column(name).bucketize_exact(x[i]))


def test_a_window_of_huge_values_closes_without_overflow() -> None:
    """A mean past 1e154 used to raise OverflowError (``mean ** 2``) when the window closed."""
    rng = np.random.default_rng(9)
    reference = build_reference({"x": rng.normal(size=2_000), "seg": rng.choice(["a", "b"], size=2_000)},
                                slice_columns=["seg"])
    m = Monitor(reference, MonitorConfig(window_rows=100, slice_columns=["seg"], alerts={"log": False}))
    m.ingest({"x": np.full(100, 1e300), "seg": np.array(["a", "b"] * 50)})
    (report,) = m.history
    x = report.verdict.overall.column("x")
    assert x.drift and x.out_of_range_rate == 1.0 and x.mean == pytest.approx(1e300)


def test_a_regression_label_past_the_error_sums_range_changes_nothing(reference: MonitorReference) -> None:
    """Two labels of 1e308 made the window's MAE inf (an alert "mae inf", NaN in Prometheus). Such a
    label is refused, naming it, before any label of the call is counted; the rows stay to be labelled."""
    m = monitor(reference, performance={"task": "regression", "baseline_labels": 2, "window_labels": 2})
    rng = np.random.default_rng(3)
    ids = ["r0", "r1", "r2", "r3"]
    m.ingest(table(rng, 4), np.array([1.0, 2.0, 3.0, 4.0]), request_ids=ids)
    with pytest.raises(ValidationError, match=r"labels\[1\]: .*magnitude at most 1e\+150.*1e\+308"):
        m.feedback(ids[:2], [1.5, 1e308])
    assert m.status()["performance"]["labels"]["received"] == 0
    assert m.feedback(ids, [1.5, 2.0, 3.0, 5.0])[0] == 4  # every row still waits for its label
    assert m.status()["performance"]["baseline"]["mae"] == pytest.approx(0.25)
