"""Performance estimated before labels (raymlops.stats.cbpe, raymlops.monitor.estimated): the
holdout calibration, the CBPE estimate, and their place in the tracker, metrics and the loop."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from raymlops.config import MonitorConfig, MonitorPerformanceConfig, RetrainConfig
from raymlops.loop.policy import RetrainPolicy
from raymlops.monitor import Monitor, build_reference
from raymlops.monitor.metrics import MonitorCollector
from raymlops.monitor.performance import PerformanceTracker
from raymlops.stats.cbpe import Calibration, ExpectedCounts, estimate, fit_isotonic
from raymlops.train.evaluate import calibration_of


def calibrated(rng: np.random.Generator, n: int, a: float = 2.0, b: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    p = rng.beta(a, b, n)
    return p, (rng.random(n) < p).astype(int)


@pytest.mark.parametrize(("a", "b"), [(2.0, 2.0), (0.5, 0.5), (5.0, 1.0)])
def test_estimate_matches_realised_on_a_calibrated_stream(a: float, b: float) -> None:
    rng = np.random.default_rng(0)
    p, y = calibrated(rng, 50_000, a, b)
    est = estimate(p)
    assert est["rows"] == 50_000
    assert abs(est["accuracy"] - np.mean((p >= 0.5) == y)) < 0.01
    assert abs(est["roc_auc"] - roc_auc_score(y, p)) < 0.01


def test_expected_counts_per_slice_and_merge() -> None:
    rng = np.random.default_rng(1)
    p, _ = calibrated(rng, 2_000)
    s = rng.integers(0, 3, 2_000)
    one = ExpectedCounts(3)
    one.add(p, p >= 0.5, s)
    half = ExpectedCounts(3)
    half.add(p[:1_000], p[:1_000] >= 0.5, s[:1_000])
    rest = ExpectedCounts(3)
    for i in range(1_000, 2_000):
        rest.add_one(float(p[i]), bool(p[i] >= 0.5), int(s[i]))
    merged = half.merged([rest])
    for k in (None, 0, 1, 2):
        assert merged.metrics(k) == pytest.approx(one.metrics(k))
    mine = p[s == 1]
    assert one.metrics(1)["accuracy"] == pytest.approx(np.mean(np.maximum(mine, 1 - mine)))
    assert ExpectedCounts(2).metrics() == {"rows": 0}


def test_isotonic_matches_scikit_learn_and_round_trips() -> None:
    rng = np.random.default_rng(2)
    p, y = calibrated(rng, 5_000)
    raw = p**3  # a miscalibrated score
    cal = fit_isotonic(raw, y)
    ref = IsotonicRegression(out_of_bounds="clip").fit(raw, y)
    grid = np.linspace(-0.1, 1.1, 500)
    assert np.allclose(cal.apply(grid), ref.predict(grid))
    again = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert again == cal
    assert np.isnan(cal.apply([np.nan]))[0]
    with pytest.raises(ValueError, match="ascending"):
        Calibration((1.0, 0.0), (0.0, 1.0))


def test_calibration_of_a_classifier_goes_into_the_monitor_config() -> None:
    X, y = make_classification(2_000, random_state=0)
    model = LogisticRegression().fit(X[:1_000], y[:1_000])
    cal = calibration_of(model, X[1_000:], y[1_000:])
    assert cal is not None and cal["method"] == "isotonic" and cal["positive_label"] == 1.0
    assert set(cal["reference"]) == {"accuracy", "roc_auc"}
    json.dumps(cal)
    cfg = MonitorConfig.model_validate({"performance": {"calibration": cal}})
    assert cfg.performance.calibration is not None and cfg.performance.calibration.reference == cal["reference"]
    three = LogisticRegression().fit(X, np.arange(2_000) % 3)
    assert calibration_of(three, X, np.arange(2_000) % 3) is None
    with pytest.raises(ValueError):
        MonitorPerformanceConfig.model_validate({"calibration": {"x": [0.0, 1.0], "y": [0.0]}})


def tracker(cal: dict[str, Any] | None = None, **cfg: Any) -> PerformanceTracker:
    base: dict[str, Any] = {"baseline_labels": 200, "window_labels": 1_000, "estimated_window_rows": 1_000}
    if cal is not None:
        base["calibration"] = cal
    return PerformanceTracker(MonitorPerformanceConfig.model_validate(base | cfg), ("seg=a", "seg=b"),
                              clock=lambda: 0.0)


def serve(t: PerformanceTracker, rng: np.random.Generator, n: int, start: int, a: float = 5.0,
          b: float = 1.0) -> tuple[list[str], np.ndarray, np.ndarray, list[Any]]:
    p, y = calibrated(rng, n, a, b)
    ids = [str(start + i) for i in range(n)]
    preds = (p >= 0.5).astype(int)
    alerts = t.remember(ids, preds.tolist(), p.tolist(), (np.arange(n) % 2).tolist(), now=0.0)
    return ids, y, preds, alerts


def test_tracker_estimates_windows_and_shows_them_beside_the_realised() -> None:
    t = tracker(identity := Calibration.identity().to_dict() | {"reference": {"accuracy": 0.85}})
    assert identity["method"] == "identity"
    rng = np.random.default_rng(3)
    ids, y, preds, alerts = serve(t, rng, 3_000, 0)
    assert alerts == [] and t.estimated.windows == 3
    st = t.status()["estimated"]
    assert st["calibrated"] and st["reference_source"] == "holdout"
    assert st["last_window"]["overall"]["rows"] == 1_000 and set(st["last_window"]["slices"]) == {"seg=a", "seg=b"}
    t.feedback(ids[:1_200], y[:1_200].tolist(), ts=1.0, window=0)  # 200 baseline + one window of 1,000
    last = t.status()["last_window"]
    realised, estimated = last["overall"]["accuracy"], last["estimated"]["overall"]["accuracy"]
    assert last["estimated"]["overall"]["rows"] == 1_000
    assert abs(realised - estimated) < 0.03
    json.dumps(t.status())


def test_a_shift_towards_uncertain_rows_raises_estimated_performance_alerts_without_labels() -> None:
    t = tracker(Calibration.identity().to_dict() | {"reference": {"accuracy": 0.85, "roc_auc": 0.8}})
    rng = np.random.default_rng(4)
    assert serve(t, rng, 2_000, 0)[3] == []  # confident rows: expected accuracy ~0.86
    _, _, _, alerts = serve(t, rng, 1_000, 2_000, a=2.0, b=2.0)  # covariate shift: expected accuracy ~0.69
    keys = {a.key for a in alerts}
    assert "estimated_performance:accuracy:all" in keys
    alert = next(a for a in alerts if a.key == "estimated_performance:accuracy:all")
    assert alert.kind == "estimated_performance" and alert.value < alert.threshold == pytest.approx(0.80)
    policy = RetrainPolicy(RetrainConfig(triggers=["estimated_performance"]), clock=lambda: 10.0)
    trigger = policy.pick([alert.to_dict()])
    assert trigger is not None and trigger.kind == "estimated_performance"
    assert RetrainPolicy(RetrainConfig(), clock=lambda: 10.0).pick([alert.to_dict()]) is None


def test_no_scores_no_estimate_and_first_window_reference() -> None:
    t = tracker()
    t.remember(["a", "b"], [1, 0], None, [0, 1], now=0.0)
    st = t.status()["estimated"]
    assert st["rows"] == 0 and st["rows_without_scores"] == 2 and st["last_window"] is None
    rng = np.random.default_rng(5)
    serve(t, rng, 1_000, 10)
    assert t.estimated.reference_source == "first_window" and t.estimated.reference["accuracy"] > 0.8
    off = tracker(estimate=False)
    serve(off, rng, 1_000, 0)
    assert off.status()["estimated"]["rows"] == 0


def test_monitor_status_and_prometheus_show_the_estimates() -> None:
    rng = np.random.default_rng(6)
    reference = build_reference({"x": rng.normal(size=5_000)})
    cfg = MonitorConfig.model_validate({"window_rows": 1_000, "performance": {
        "calibration": Calibration.identity().to_dict(), "estimated_window_rows": 1_000}})
    m = Monitor(reference, cfg, clock=lambda: 0.0)
    p, _ = calibrated(rng, 1_000, 5.0, 1.0)
    m.ingest({"x": rng.normal(size=1_000)}, (p >= 0.5).astype(int), request_ids=[str(i) for i in range(1_000)],
             scores=p)
    est = m.status()["performance"]["estimated"]
    assert est["windows"] == 1 and 0.8 < est["last_window"]["overall"]["accuracy"] < 0.9
    found = {fam.name: fam for fam in MonitorCollector("m", m.status).collect()}
    samples = {tuple(s.labels.values()): s.value for s in found["raymlops_monitor_estimated_accuracy"].samples}
    assert samples[("m", "all")] == pytest.approx(est["last_window"]["overall"]["accuracy"])
    assert "raymlops_monitor_estimated_roc_auc" in found and "raymlops_monitor_concept_drift_detections" in found


def _labelled_monitor(seed: int, served: int, labelled: int) -> Monitor:
    """A monitor (estimation windows of 500 rows, a 100-label baseline, 400-label windows) that
    served ``served`` calibrated rows, the first ``labelled`` of them labelled."""
    rng = np.random.default_rng(seed)
    reference = build_reference({"x": rng.normal(size=5_000)})
    cfg = MonitorConfig.model_validate({"window_rows": 1_000, "performance": {
        "calibration": Calibration.identity().to_dict(), "estimated_window_rows": 500, "baseline_labels": 100,
        "window_labels": 400}})
    m = Monitor(reference, cfg, clock=lambda: 0.0)
    p, y = calibrated(rng, served, 5.0, 1.0)
    ids = [str(i) for i in range(served)]
    m.ingest({"x": rng.normal(size=served)}, (p >= 0.5).astype(int), request_ids=ids, scores=p)
    m.feedback(ids[:labelled], y[:labelled])
    return m


def test_the_live_report_shows_estimated_beside_realised() -> None:
    from raymlops.monitor.report import live_model, render_html

    m = _labelled_monitor(7, served=600, labelled=500)
    perf = live_model(m.status(), "r")["performance"]
    assert set(perf["all"]) == {"estimated_accuracy", "estimated_roc_auc", "realised_accuracy", "realised_roc_auc"}
    page = render_html(live_model(m.status(), "r"))
    assert 'id="performance"' in page and "estimated accuracy" in page


def test_an_unsliced_monitor_exports_each_series_once() -> None:
    """Without slice columns the one slice is "all" itself: the realised and estimated quality of
    the last label window are one series each (a scrape with two identical series is rejected by
    strict OpenMetrics parsers), and the status lists no slice."""
    from prometheus_client import CollectorRegistry, generate_latest

    m = _labelled_monitor(8, served=1_000, labelled=600)
    perf = m.status()["performance"]
    assert perf["last_window"]["overall"]["labels"] == 400 and perf["last_window"]["slices"] == {}
    assert perf["estimated"]["last_window"]["slices"] == {}
    registry = CollectorRegistry()
    registry.register(MonitorCollector("m", m.status))
    lines = [ln for ln in generate_latest(registry).decode().splitlines() if ln and not ln.startswith("#")]
    series = [ln.rsplit(" ", 1)[0] for ln in lines]
    assert len(series) == len(set(series)), sorted(s for s in series if series.count(s) > 1)
    assert 'raymlops_model_quality{metric="accuracy",model="m",slice="all"}' in series
    assert 'raymlops_monitor_estimated_accuracy{model="m",slice="all"}' in series
