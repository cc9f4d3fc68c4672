"""The watcher's loop (no Ray): alerts in, cycles out, cooldown, failures, stopping conditions.

The controller here is a small stand-in with a fake clock: the real one needs a live route
(tests/integration/test_closed_loop.py runs it against real Serve)."""

from __future__ import annotations

from typing import Any

from raymlops.config import parse_config
from raymlops.exceptions import ServeError
from raymlops.loop.controller import CycleResult, Watcher
from raymlops.loop.policy import Trigger


class Stand:
    def __init__(self, batches: list[list[dict[str, Any]]], fail_on: set[int] | None = None) -> None:
        self.config = parse_config({"name": "m", "data": {"source": "d.csv", "target": "y"},
                                    "train": {"candidates": [{"estimator": "a.B"}]},
                                    "retrain": {"enabled": True, "cooldown_s": 100, "interval_s": 30}})
        self.now = 1000.0
        self.batches = batches
        self.polls = 0
        self.cycles: list[Trigger] = []
        self.fail_on = fail_on or set()

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s

    def _monitor_status(self) -> dict[str, Any]:
        alerts = self.batches[min(self.polls, len(self.batches) - 1)]
        self.polls += 1
        return {"alerts": {"recent": alerts}}

    def run_cycle(self, trigger: Trigger) -> CycleResult:
        self.cycles.append(trigger)
        if len(self.cycles) in self.fail_on:
            raise ServeError("the route went away")
        return CycleResult(cycle=f"c{len(self.cycles)}", trigger=trigger, status="promoted")


def drift(ts: float) -> dict[str, Any]:
    return {"kind": "dataset_drift", "key": "dataset_drift", "severity": "critical", "message": "drift", "ts": ts}


def test_each_new_trigger_alert_runs_one_cycle_outside_the_cooldown() -> None:
    # polls at t = 1000, 1030, 1060, ... (interval 30 s); cooldown 100 s
    stand = Stand([[], [drift(1010.0)], [drift(1010.0)], [drift(1030.0)], [], [drift(1140.0)]])
    w = Watcher(stand)  # type: ignore[arg-type]
    seen: list[str] = []
    out = w.run(max_cycles=2, duration_s=5, on_result=lambda r: seen.append(r.cycle))
    assert [r.trigger.ts for r in out] == [1010.0, 1140.0]  # the alert at 1030 fell in the cooldown
    assert seen == ["c1", "c2"] and stand.polls == 6
    assert [t.ts for t in w.policy.suppressed] == [1030.0]


def test_a_failed_cycle_is_kept_and_the_watcher_goes_on() -> None:
    stand = Stand([[drift(1001.0)], [], [], [], [drift(1100.0)]], fail_on={1})
    w = Watcher(stand)  # type: ignore[arg-type]
    out = w.run(max_cycles=2, duration_s=5)
    assert w.failures == ["ServeError: the route went away"]
    assert [r.cycle for r in out] == ["c2"] and len(stand.cycles) == 2


def test_stop_and_old_alerts() -> None:
    stand = Stand([[drift(900.0)]])  # raised before the watcher started: history
    w = Watcher(stand)  # type: ignore[arg-type]
    assert w.run(stop=lambda: stand.polls >= 3, duration_s=5) == [] and stand.cycles == []
    assert w.poll() is None


def test_a_cycle_refused_by_another_holder_is_skipped_not_failed() -> None:
    from raymlops.store.leases import LeaseHeld

    class Busy(Stand):
        def progress(self, line: str) -> None:
            self.lines.append(line)

        def run_cycle(self, trigger: Trigger) -> CycleResult:
            self.cycles.append(trigger)
            raise LeaseHeld("retrain:m", "bob@h:7", 1000.0, 1120.0)

    stand = Busy([[drift(1001.0)]])
    stand.lines = []  # type: ignore[attr-defined]
    w = Watcher(stand)  # type: ignore[arg-type]
    assert w.poll() is None
    assert w.failures == [] and len(w.skipped) == 1 and "held by bob@h:7" in w.skipped[0]
    assert "not retraining" in stand.lines[0]  # type: ignore[attr-defined]


def test_a_dataset_drift_alert_among_dozens_of_others_still_starts_a_cycle() -> None:
    """Every feature drifts: one window raises dataset_drift first, then 30 feature_drift alerts and
    more. The monitor's status lists the newest 20, so the watcher never saw the trigger (no cycle,
    nothing printed); the status now also carries the newest alert of each kind."""
    import numpy as np

    from raymlops.config import MonitorConfig
    from raymlops.monitor import Monitor, build_reference

    rng = np.random.default_rng(0)
    monitor = Monitor(build_reference({f"f{j}": rng.normal(size=2000) for j in range(30)}),
                      MonitorConfig(window_rows=500, alerts={"log": False}))
    monitor.ingest({f"f{j}": rng.normal(size=500) + 3.0 for j in range(30)})
    status = monitor.status()
    assert status["alerts"]["totals"]["feature_drift"] == 30
    assert "dataset_drift" not in {a["kind"] for a in status["alerts"]["recent"]}  # the case: past the newest 20
    stand = Stand([[]])
    stand.now = 0.0  # the watcher started before the monitor's alerts
    stand._monitor_status = lambda: status  # type: ignore[method-assign]
    w = Watcher(stand)  # type: ignore[arg-type]
    result = w.poll()
    assert result is not None and result.trigger.kind == "dataset_drift"
