"""Fault 3: the monitor actor is killed while rows stream in. Ray restarts it, it resumes from its
last checkpoint (the rows of at most about one checkpoint interval are lost: see the bound below)
and its verdicts continue."""

from __future__ import annotations

from pathlib import Path

from tests.reliability.faults import kill_monitor_under_ingest


def test_monitor_killed_mid_stream_resumes_from_its_checkpoint(tmp_path: Path, ray_local: str) -> None:
    r = kill_monitor_under_ingest(tmp_path / "home", checkpoint_s=1.0, batch=50, run_s=3.0, seed=1)
    assert r["restored_flag"] is True, r
    # the actor wakes when a checkpoint is due (checkpoint_s after the last one's state was taken),
    # so the newest checkpoint is at most one interval old, plus the write and one batch in flight
    assert 0 <= r["rows_lost"] <= 1.1 * r["rows_per_checkpoint_interval"] + r["batch"], r
    assert r["restored"] > 0  # a checkpoint was taken and read back
    assert r["rows_total_end"] == r["restored"] + 1_000
    assert r["windows_closed_after_restart"] >= r["windows_closed_at_restart"] + 2  # 1,000 rows: two windows
    assert r["drift_detected_after_restart"] is True, r
