"""The monitor actor's class moved to a new reference in place (no Ray needed: the class is
plain Python that Ray wraps): fresh state on the new reference, and a restart with the original
constructor arguments (what Ray does after a crash) resumes on the new reference, not the old."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
        info = first.rebaseline(reference_key=_store_reference(store, "r", new))  # type: ignore[arg-type]
        assert info == {"shard": 0, "reference": new.digest, "rows_before": 300}  # type: ignore[attr-defined]
        assert first.monitor.rows_total == 0 and first.reference.same_as(new)
        first.ingest(shifted)  # the same traffic is the new normal
        assert not [a for a in first.status()["alerts"]["recent"] if a["kind"].endswith("drift")]
        first.checkpoint()
    finally:
        first.stop()

    restarted = DriftMonitor(**args)  # type: ignore[arg-type]  # Ray restarts with the original arguments
    try:
        assert restarted.reference.same_as(new) and restarted.restored
        assert restarted.monitor.rows_total == 300  # resumed from the checkpoint made on the new reference
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
