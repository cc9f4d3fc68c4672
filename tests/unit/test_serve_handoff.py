"""The monitor hand-off (raymlops.serve.handoff): bounded, sampled, batched, never blocking."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import numpy as np
import pytest

from raymlops.serve.handoff import MonitorHandoff, Served, row_ids


def served(rows: int, version: str = "m:v1", rid: str = "r", role: str = "champion") -> Served:
    return Served(np.ones((rows, 2)), np.zeros(rows), version, 2.5, 200, rid, role)


def test_flush_groups_by_version_and_role_with_row_ids() -> None:
    sent: list[dict[str, Any]] = []

    async def send(payload: dict[str, Any]) -> None:
        sent.append(payload)

    h = MonitorHandoff(send)
    h.offer(served(1, rid="a"))
    h.offer(served(3, rid="b"))
    h.offer(served(2, version="m:v2", rid="c", role="shadow"))
    assert asyncio.run(h.flush()) == 6
    first, second = sent
    assert first["X"].shape == (4, 2) and first["version"] == "m:v1" and first["role"] == "champion"
    assert first["request_ids"] == ["a", "b/0", "b/1", "b/2"]
    assert first["latency_ms"].tolist() == [2.5] * 4 and first["status"].tolist() == [200] * 4
    assert second["version"] == "m:v2" and second["role"] == "shadow" and second["request_ids"] == ["c/0", "c/1"]
    assert h.counts.sent == 6 and h.queued_rows == 0


def test_a_full_queue_drops_and_counts_without_waiting() -> None:
    async def never(payload: dict[str, Any]) -> None:
        raise AssertionError("not sent")

    h = MonitorHandoff(never, max_rows=5)
    assert h.offer(served(3)) and not h.offer(served(3)) and h.offer(served(2))
    assert h.counts.dropped == 3 and h.queued_rows == 5
    assert h.counts.drain() == {"offered": 8, "queued": 5, "dropped": 3}


def test_sampling_keeps_about_the_rate() -> None:
    async def send(payload: dict[str, Any]) -> None:
        return None

    h = MonitorHandoff(send, max_rows=100_000, sample_rate=0.25, rng=random.Random(1))
    kept = sum(h.offer(served(1)) for _ in range(4000))
    assert 900 < kept < 1100 and h.counts.sampled_out == 4000 - kept


def test_a_failing_monitor_is_counted_and_serving_goes_on() -> None:
    async def broken(payload: dict[str, Any]) -> None:
        raise RuntimeError("monitor died")

    h = MonitorHandoff(broken)
    h.offer(served(4))
    assert asyncio.run(h.flush()) == 0
    assert h.counts.failed == 4 and h.queued_rows == 0


def test_budget_lets_bursts_through_and_bounds_sustained_monitor_time() -> None:
    async def send(payload: dict[str, Any]) -> None:
        return None

    now = [0.0]
    h = MonitorHandoff(send, budget=0.1, budget_window_s=10.0, clock=lambda: now[0])  # 1 s of monitor time
    assert h.spend(0.6) == 0.0 and h.spend(0.4) == 0.0  # a burst within the bucket
    assert h.spend(0.05) == pytest.approx(0.5)  # empty: wait until 0.05 s of time has refilled
    now[0] += 0.5
    assert h.spend(0.0) == 0.0
    busy = 0.0
    for _ in range(1000):  # sustained: 20 ms hand-offs as often as allowed
        now[0] += h.spend(0.02)
        busy += 0.02
    assert busy / now[0] == pytest.approx(0.1, rel=0.05)
    assert MonitorHandoff(send, budget=1.0).spend(0.5) == 0.0
    with pytest.raises(ValueError):
        MonitorHandoff(send, budget=0.0)
    with pytest.raises(ValueError):
        MonitorHandoff(send, sample_rate=1.5)


def test_the_background_loop_sends_then_pauses_and_close_flushes() -> None:
    calls: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def slow(payload: dict[str, Any]) -> None:
            calls.append(loop.time())
            await asyncio.sleep(0.02)

        # 10 ms of monitor time in the bucket; a 20 ms hand-off empties it: 100 ms until the next
        h = MonitorHandoff(slow, flush_interval_s=0.01, budget=0.1, budget_window_s=0.1)
        task = loop.create_task(h.run())
        h.offer(served(1))
        await asyncio.sleep(0.05)
        h.offer(served(1))
        await asyncio.sleep(0.03)
        assert len(calls) == 1  # still waiting for the bucket
        for _ in range(200):
            if len(calls) == 2:
                break
            await asyncio.sleep(0.01)
        assert len(calls) == 2 and calls[1] - calls[0] >= 0.09
        h.offer(served(2))
        await h.close()
        assert h.counts.sent == 4 and not h.offer(served(1))
        task.cancel()

    asyncio.run(main())


def test_row_ids() -> None:
    assert row_ids("x", 1) == ["x"] and row_ids("x", 2) == ["x/0", "x/1"]
