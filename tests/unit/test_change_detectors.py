"""Change detectors on the error stream (raymlops.stats.change) and their use as concept drift
alerts in the performance tracker (raymlops.monitor.concept)."""

from __future__ import annotations

import json
import pickle
from typing import Any

import numpy as np
import pytest

from raymlops.config import MonitorConfig, MonitorPerformanceConfig
from raymlops.monitor.alerts import Alert
from raymlops.monitor.performance import PerformanceTracker
from raymlops.stats.change import ADWIN, PageHinkley, detector_from_state, make_detector


def errors(rng: np.random.Generator, p_error: float, n: int) -> np.ndarray:
    return (rng.random(n) < p_error).astype(np.float64)


def alarms(det: Any, stream: np.ndarray) -> list[int]:
    return [i for i, x in enumerate(stream) if det.update(x)]


@pytest.mark.parametrize("kind", ["adwin", "page_hinkley"])
def test_no_alarm_on_a_stationary_stream(kind: str) -> None:
    det = make_detector(kind)
    assert alarms(det, errors(np.random.default_rng(0), 0.1, 10_000)) == []
    assert det.n_seen == 10_000 and det.detections == 0
    assert abs(det.mean - 0.1) < 0.02


@pytest.mark.parametrize("kind", ["adwin", "page_hinkley"])
def test_false_alarm_rate_is_bounded(kind: str) -> None:
    found = 0
    for seed in range(10):
        found += len(alarms(make_detector(kind), errors(np.random.default_rng(100 + seed), 0.1, 10_000)))
    assert found <= 2  # at most 2 in 100k stationary labels


@pytest.mark.parametrize("kind", ["adwin", "page_hinkley"])
def test_alarm_soon_after_accuracy_falls_from_90_to_60_percent(kind: str) -> None:
    for seed in range(5):
        rng = np.random.default_rng(seed)
        stream = np.concatenate([errors(rng, 0.1, 5_000), errors(rng, 0.4, 2_000)])
        det = make_detector(kind)
        found = alarms(det, stream)
        assert found, f"seed {seed}: no alarm"
        assert 5_000 <= found[0] < 5_000 + 400, f"seed {seed}: first alarm at {found[0]}"
        assert det.increases >= 1


def test_adwin_shrinks_to_the_new_concept_and_knows_the_direction() -> None:
    rng = np.random.default_rng(3)
    det = ADWIN()
    alarms(det, errors(rng, 0.4, 3_000))
    up_before = det.increases
    found = alarms(det, errors(rng, 0.05, 3_000))  # the error falls: a change, not an increase
    assert found and det.increases == up_before
    assert det.width < 3_200 and abs(det.mean - 0.05) < 0.03


def test_page_hinkley_ignores_a_falling_error() -> None:
    rng = np.random.default_rng(4)
    det = PageHinkley()
    assert alarms(det, np.concatenate([errors(rng, 0.4, 2_000), errors(rng, 0.05, 5_000)])) == []


@pytest.mark.parametrize("kind", ["adwin", "page_hinkley"])
def test_state_round_trips_through_json_and_pickle(kind: str) -> None:
    rng = np.random.default_rng(5)
    det = make_detector(kind)
    alarms(det, errors(rng, 0.1, 3_000))
    text = json.dumps(det.state())
    again = detector_from_state(json.loads(text))
    copied = pickle.loads(pickle.dumps(det))
    assert again.state() == det.state() == copied.state()
    rest = np.concatenate([errors(rng, 0.1, 1_000), errors(rng, 0.5, 1_000)])
    assert alarms(det, rest) == alarms(again, rest) == alarms(copied, rest)
    assert det.state() == again.state()


def test_bad_parameters_and_states_are_refused() -> None:
    with pytest.raises(ValueError, match="delta"):
        ADWIN(delta=0.0)
    with pytest.raises(ValueError, match="threshold"):
        PageHinkley(threshold=-1)
    with pytest.raises(ValueError, match="unknown change detector"):
        make_detector("ddm2")
    with pytest.raises(ValueError, match="format"):
        detector_from_state({"kind": "adwin"})


# ------------------------------------------------------------------------------ in the tracker


def tracker(**cfg: Any) -> PerformanceTracker:
    base: dict[str, Any] = {"baseline_labels": 500, "window_labels": 5_000}
    return PerformanceTracker(MonitorPerformanceConfig.model_validate(base | cfg), ("seg=a", "seg=b"),
                              clock=lambda: 0.0)


def feed(t: PerformanceTracker, rng: np.random.Generator, n: int, p_error: float, start: int,
         slice_error: dict[int, float] | None = None) -> list[tuple[int, Alert]]:
    """n served rows (prediction 1) and their labels; (label number, alert) of what came out."""
    ids = [str(start + i) for i in range(n)]
    slices = (np.arange(n) % 2).tolist()
    t.remember(ids, [1] * n, None, slices, now=0.0)
    out: list[tuple[int, Alert]] = []
    for i, (rid, s) in enumerate(zip(ids, slices, strict=True)):
        p = (slice_error or {}).get(s, p_error)
        label = 0 if rng.random() < p else 1
        _, alerts = t.feedback([rid], [label], ts=float(start + i), window=0)
        out += [(start + i, a) for a in alerts]
    return out


def test_tracker_raises_concept_drift_alerts_soon_after_a_change() -> None:
    t = tracker()
    rng = np.random.default_rng(6)
    assert feed(t, rng, 4_000, 0.1, 0) == []
    after = feed(t, rng, 1_000, 0.4, 4_000)
    keys = {a.key for _, a in after}
    assert {"concept_drift:adwin:all", "concept_drift:page_hinkley:all"} <= keys
    first = min(i for i, a in after if a.key.startswith("concept_drift"))
    assert first < 4_000 + 300  # labels, not a whole window of 5,000
    a = next(a for _, a in after if a.key == "concept_drift:adwin:all")
    assert a.kind == "performance" and a.slice == "all" and a.value > a.threshold
    st = t.status()["concept_drift"]
    assert st["detectors"] == ["adwin", "page_hinkley"] and st["labels"] == 5_000
    assert st["overall"]["adwin"]["increases"] >= 1 and set(st["slices"]) == {"seg=a", "seg=b"}
    json.dumps(st)


def test_concept_drift_per_slice() -> None:
    t = tracker()
    rng = np.random.default_rng(7)
    feed(t, rng, 4_000, 0.1, 0)
    after = feed(t, rng, 2_000, 0.1, 4_000, slice_error={1: 0.5})  # only seg=b changes
    keys = {a.key for _, a in after}
    assert "concept_drift:adwin:seg=b" in keys
    assert not any(k.endswith(":seg=a") for k in keys)


def test_detectors_can_be_turned_off_and_regression_uses_scaled_errors() -> None:
    t = tracker(change_detectors=[])
    assert not [a for _, a in feed(t, np.random.default_rng(8), 2_000, 0.5, 0) if "concept_drift" in a.key]
    assert t.status()["concept_drift"]["labels"] == 0
    r = tracker(task="regression")
    rng = np.random.default_rng(9)
    ids = [str(i) for i in range(6_000)]
    r.remember(ids, [0.0] * 6_000, None, [0] * 6_000, now=0.0)
    scale = np.where(np.arange(6_000) < 4_000, 10.0, 30.0)  # the absolute error triples at row 4,000
    labels = rng.normal(0.0, 1.0, 6_000) * scale
    found = []
    for i in range(6_000):
        _, alerts = r.feedback([ids[i]], [float(labels[i])], ts=float(i), window=0)
        found += [(i, a.key) for a in alerts if a.key.startswith("concept_drift")]
    assert found and all(i >= 4_000 for i, _ in found) and found[0][0] < 4_300
    assert r.status()["concept_drift"]["labels"] == 6_000 - 500  # fed once the baseline MAE is known


def test_config_validates_detectors() -> None:
    assert MonitorConfig().performance.change_detectors == ["adwin", "page_hinkley"]
    with pytest.raises(ValueError):
        MonitorPerformanceConfig.model_validate({"change_detectors": ["cusum"]})
