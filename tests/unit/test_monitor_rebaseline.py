"""The monitor actor's class moved to a new reference in place (no Ray needed: the class is
plain Python that Ray wraps): fresh state on the new reference, and a restart with the original
constructor arguments (what Ray does after a crash) resumes on the new reference, not the old."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from raymlops.exceptions import ValidationError
from raymlops.monitor.actor import DriftMonitor
from raymlops.monitor.lifecycle import _store_reference
from raymlops.monitor.reference import build_reference
from raymlops.store.artifacts import ArtifactStore

SETTINGS = {"seed": 0, "window_rows": 100, "alerts": {"log": False, "audit": False}, "checkpoint_s": 3600}


def _reference(shift: float, seed: int) -> object:
    rng = np.random.default_rng(seed)
    return build_reference({"a": rng.normal(shift, 1.0, 2000), "b": rng.normal(0.0, 1.0, 2000)})


def test_rebaseline_swaps_the_reference_and_a_restart_keeps_the_new_one(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "artifacts"))
    old, new = _reference(0.0, 1), _reference(3.0, 2)
    old_key = _store_reference(store, "r", old)  # type: ignore[arg-type]
    args = {"route": "r", "settings": SETTINGS, "reference_key": old_key, "artifact_root": str(tmp_path / "artifacts"),
            "start_id": "s1"}
    rng = np.random.default_rng(3)
    shifted = np.column_stack([rng.normal(3.0, 1.0, 300), rng.normal(0.0, 1.0, 300)])

    first = DriftMonitor(**args)  # type: ignore[arg-type]
    try:
        first.ingest(shifted)
        assert first.monitor.rows_total == 300
        drifted_before = [a["kind"] for a in first.status()["alerts"]["recent"]]
        assert "dataset_drift" in drifted_before or "feature_drift" in drifted_before  # a moved: drift on the old
        totals = dict(first.status()["alerts"]["totals"])
        info = first.rebaseline(reference_key=_store_reference(store, "r", new))  # type: ignore[arg-type]
        assert info == {"shard": 0, "reference": new.digest, "rows_before": 300}  # type: ignore[attr-defined]
        assert first.reference.same_as(new) and first.monitor.current.rows == 0  # windows start over
        assert first.monitor.rows_total == 300 and first.status()["alerts"]["totals"] == totals  # counters go on
        first.ingest(shifted)  # the same traffic is the new normal
        assert first.status()["alerts"]["totals"] == totals  # no new drift alert
        first.checkpoint()
    finally:
        first.stop()

    restarted = DriftMonitor(**args)  # type: ignore[arg-type]  # Ray restarts with the original arguments
    try:
        assert restarted.reference.same_as(new) and restarted.restored
        assert restarted.monitor.rows_total == 600  # resumed from the checkpoint made on the new reference
    finally:
        restarted.stop()

    fresh = DriftMonitor(**{**args, "start_id": "s2"})  # type: ignore[arg-type]  # a new start: what it was given
    try:
        assert fresh.reference.same_as(old) and not fresh.restored
    finally:
        fresh.stop()


def test_checkpoints_are_written_once_per_interval_not_one_and_a_half(tmp_path: Path) -> None:
    import statistics
    import time

    store = ArtifactStore(str(tmp_path / "artifacts"))
    key = _store_reference(store, "r", _reference(0.0, 1))  # type: ignore[arg-type]
    mon = DriftMonitor(route="r", settings={**SETTINGS, "checkpoint_s": 0.3}, reference_key=key,
                       artifact_root=str(tmp_path / "artifacts"), start_id="s")
    rng = np.random.default_rng(0)
    taken: list[float] = []  # when each checkpoint's state was taken
    try:
        end = time.time() + 2.5
        while time.time() < end:  # rows keep arriving: the state is always dirty
            mon.ingest(rng.normal(size=(10, 2)))
            if not taken or mon.last_checkpoint != taken[-1]:
                taken.append(mon.last_checkpoint)
            time.sleep(0.01)
    finally:
        mon.stop()
    gaps = [b - a for a, b in zip(taken[1:], taken[2:], strict=False)]  # from the first one written here
    # due exactly one interval after the previous state was taken: a crash loses at most about one
    # interval (polling every half interval against the end of the last write gave 0.3-0.45 s + write)
    assert len(gaps) >= 4 and 0.29 <= statistics.median(gaps) <= 0.38, gaps  # the old code: 0.45


def test_rebaseline_takes_the_new_models_calibration_and_drops_the_old_one(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "artifacts"))
    old, new = _reference(0.0, 1), _reference(0.0, 2)
    old_calibration = {"x": [0.0, 1.0], "y": [0.1, 0.9], "rows": 50, "reference": {"accuracy": 0.9}}
    settings = {**SETTINGS, "performance": {"calibration": old_calibration}}
    mon = DriftMonitor(route="r", settings=settings, reference_key=_store_reference(store, "r", old),  # type: ignore[arg-type]
                       artifact_root=str(tmp_path / "artifacts"), start_id="s1")
    try:
        def calibration() -> object:
            return mon.monitor.config.performance.calibration

        assert mon.monitor.performance.status()["estimated"]["calibrated"]
        new_calibration = {"x": [0.0, 0.5, 1.0], "y": [0.0, 0.6, 1.0], "rows": 80, "reference": {"accuracy": 0.8}}
        mon.rebaseline(reference_key=_store_reference(store, "r", new), calibration=new_calibration)  # type: ignore[arg-type]
        cal = calibration()
        assert cal is not None and cal.x == [0.0, 0.5, 1.0] and cal.reference == {"accuracy": 0.8}  # type: ignore[attr-defined]
        assert mon.monitor.performance.status()["estimated"]["calibrated"]
        mon.rebaseline(reference_key=_store_reference(store, "r", old))  # type: ignore[arg-type]  # uncalibrated model
        assert calibration() is None and not mon.monitor.performance.status()["estimated"]["calibrated"]
    finally:
        mon.stop()


def test_a_rebaseline_keeps_what_counts_the_served_traffic() -> None:
    """A promotion moved the monitor to the new champion's rows with a fresh Monitor: every exported
    counter went back to 0 (rows, windows, labels, alerts by kind), the SLO windows were emptied
    (availability NaN), and a label for a row served before the switch could no longer match."""
    from raymlops.config import MonitorConfig
    from raymlops.monitor import Monitor
    from raymlops.monitor.metrics import MonitorCollector

    old, new = _reference(0.0, 1), _reference(3.0, 2)
    t = [1000.0]
    m = Monitor(old, MonitorConfig(window_rows=100, alerts={"log": False}), clock=lambda: t[0])  # type: ignore[arg-type]
    rng = np.random.default_rng(3)
    m.ingest({"a": rng.normal(3.0, 1.0, 250), "b": rng.normal(0.0, 1.0, 250)}, np.ones(250),
             request_ids=[f"r{i}" for i in range(250)], latency_ms=np.full(250, 5.0), status=np.full(250, 200))
    m.feedback(["r0", "r1"], [1, 0])
    before = m.status()
    assert before["windows_closed"] == 2 and before["alerts"]["totals"]["feature_drift"] >= 1
    moved = m.rebased(new, m.config)  # type: ignore[arg-type]
    after = moved.status()
    for key in ("rows_total", "batches", "windows_closed"):
        assert after[key] == before[key], key
    assert after["alerts"]["totals"] == before["alerts"]["totals"]
    assert after["slo"]["short"]["requests"] == 250 and after["slo"]["short"]["availability"] == 1.0
    assert after["performance"]["labels"] == before["performance"]["labels"]
    assert moved.current.rows == 0 and moved.reference is new and moved.performance.baseline is None
    assert moved.feedback(["r2"], [1])[0] == 1  # a row served before the switch still takes its label
    assert moved.feedback(["r1"], [1])[0] == 0 and moved.performance.last_outcomes == ["unknown"]  # labelled before
    # a monitor that has seen no request exports no SLO series (it exported NaN)
    empty = Monitor(new, MonitorConfig(window_rows=100, alerts={"log": False}))  # type: ignore[arg-type]
    names = {s.name for f in MonitorCollector("m", empty.status).collect() for s in f.samples}
    assert "raymlops_slo_availability_ratio" not in names and "raymlops_slo_latency_seconds" not in names
    served = {s.name for f in MonitorCollector("m", moved.status).collect() for s in f.samples}
    assert "raymlops_slo_availability_ratio" in served


def test_labels_of_rows_a_canary_answered_are_scored_for_the_canary() -> None:
    """Every label for a row the canary answered waited and then counted as expired ("an id never
    served"), so the canary's accuracy could never be read from labels. Now each is matched and
    scored for that version alone, before or after its row arrives; the champion's windows see none."""
    from raymlops.config import MonitorConfig
    from raymlops.monitor import Monitor

    m = Monitor(_reference(0.0, 1), MonitorConfig(window_rows=1000, alerts={"log": False}))  # type: ignore[arg-type]
    rng = np.random.default_rng(5)

    def rows(n: int) -> dict[str, np.ndarray]:
        return {"a": rng.normal(size=n), "b": rng.normal(size=n)}

    m.ingest(rows(4), np.array([1, 0, 1, 1]), version="m:v1", request_ids=["c0", "c1", "c2", "c3"])
    assert m.feedback(["k3"], [0])[0] == 0  # a label before its canary row: it waits
    m.ingest(rows(4), np.array([1, 1, 0, 0]), version="m:v2", request_ids=["k0", "k1", "k2", "k3"])
    m.ingest(rows(3), np.array([1, 0, 1]), version="m:v2", request_ids=["multi"] * 3)
    matched, _ = m.feedback(["k0", "k1", "k2", "c0", "multi"], [1, 0, 0, 1, [1, 0, 0]])
    assert matched == 7 and m.performance.last_outcomes == ["matched"] * 7
    status = m.status()["performance"]
    # k0 right, k1 wrong, k2 right, k3 (early) right, multi: right, right, wrong
    assert status["challengers"] == {"m:v2": {"labels": 7, "accuracy": 5 / 7}}
    assert m.performance.baseline_window.rows == 1  # the champion's row c0 only
    assert status["labels"]["matched"] == 8 and status["labels"]["expired"] == 0
    assert m.feedback(["k0"], [1])[0] == 0 and m.performance.last_outcomes == ["unknown"]  # labelled already
    with pytest.raises(ValidationError, match="answered 3 rows"):
        m.feedback(["multi"], [[1, 0]])
    from raymlops.monitor.metrics import MonitorCollector

    samples = {(s.name, s.labels.get("version"), s.labels.get("metric")): s.value
               for f in MonitorCollector("m", m.status).collect() for s in f.samples}
    assert samples[("raymlops_monitor_challenger_quality", "m:v2", "accuracy")] == 5 / 7
    m.ingest(rows(1), np.array([1]), version="m:v2", request_ids=["k9"])  # still waiting for its label
    back = Monitor.from_bytes(m.to_bytes())  # a checkpoint keeps the canary's rows and scores
    assert back.status()["performance"]["challengers"] == status["challengers"]
    assert back.feedback(["k9"], [1])[0] == 1
    assert back.status()["performance"]["challengers"]["m:v2"] == {"labels": 8, "accuracy": 6 / 8}
