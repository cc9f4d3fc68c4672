"""The monitor hand-off (raymlops.serve.handoff): bounded, sampled, batched, never blocking."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import numpy as np
import pytest

from raymlops.serve.handoff import MonitorHandoff, Served, row_ids, row_request_ids


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
    assert first["request_ids"].tolist() == ["a", "b", "b", "b"]  # the monitor keys them b/0, b/1, b/2
    assert first["request_ids"].dtype.kind == "U" and first["latency_ms"].shape == (4,)  # columns, not objects
    assert first["latency_ms"].tolist() == [2.5] * 4 and first["status"].tolist() == [200] * 4
    assert second["version"] == "m:v2" and second["role"] == "shadow"
    assert second["request_ids"].tolist() == ["c", "c"]
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
    assert row_request_ids(["a", "bb", "c"], np.array([1, 3, 2])).tolist() == ["a", "bb", "bb", "bb", "c", "c"]
    assert row_request_ids(["a", "b"], np.array([1, 1])).tolist() == ["a", "b"]


def test_the_monitor_keys_the_rows_of_a_multi_row_request_as_row_ids() -> None:
    from raymlops.monitor.labels import row_keys

    sent: list[dict[str, Any]] = []

    async def send(payload: dict[str, Any]) -> None:
        sent.append(payload)

    h = MonitorHandoff(send)
    for rid, n in (("a", 1), ("b", 3), ("c", 2)):
        h.offer(served(n, rid=rid))
    asyncio.run(h.flush())
    keyed = row_keys(sent[0]["request_ids"].tolist(), sent[0]["request_sizes"])
    assert keyed.keys == ["a", *row_ids("b", 3), *row_ids("c", 2)] and keyed.keep is None
    assert row_keys(sent[0]["request_ids"].tolist()).keys == keyed.keys  # runs of one id, without the sizes


def test_two_requests_with_one_id_in_one_hand_off_stay_two_requests() -> None:
    """A client that reuses its X-Request-Id (a retry): the hand-off carries each request's rows,
    so two single-row requests are not one request of two rows, and the last one keeps the id."""
    from raymlops.monitor.labels import row_keys

    sent: list[dict[str, Any]] = []

    async def send(payload: dict[str, Any]) -> None:
        sent.append(payload)

    h = MonitorHandoff(send)
    for rid, n in (("r", 1), ("r", 1), ("m", 3), ("m", 2)):
        h.offer(served(n, rid=rid))
    asyncio.run(h.flush())
    keyed = row_keys(sent[0]["request_ids"].tolist(), sent[0]["request_sizes"])
    assert keyed.keys == ["r", "r", *row_ids("m", 3), *row_ids("m", 2)]
    assert keyed.requests == {"r": 1, "m": 2}
    assert keyed.keep is not None and keyed.keep.tolist() == [False, True, False, False, False, True, True]
    assert keyed.starts is not None and keyed.starts.tolist() == [0, 1, 2, 5]


def test_scores_travel_with_their_rows_and_mixed_batches_send_none() -> None:
    from raymlops.serve.handoff import batch_payload

    X = np.zeros((2, 3))
    a = Served(X, np.array([0, 1]), "m:v1", 1.0, 200, "a", scores=np.array([0.2, 0.9]), score_class=1)
    b = Served(X[:1], np.array([1]), "m:v1", 1.0, 200, "b", scores=np.array([0.7]), score_class=1)
    payload = batch_payload([a, b])
    np.testing.assert_array_equal(payload["scores"], [0.2, 0.9, 0.7])
    assert payload["score_class"] == 1 and len(payload["scores"]) == len(payload["predictions"])
    no_scores = Served(X[:1], np.array([1]), "m:v1", 1.0, 200, "c")
    assert batch_payload([a, no_scores])["scores"] is None  # never scores for only some rows
    other_class = Served(X[:1], np.array([1]), "m:v1", 1.0, 200, "d", scores=np.array([0.5]), score_class=0)
    assert batch_payload([a, other_class])["scores"] is None
