"""Leases in the metadata database (real SQLite, real processes): one holder at a time, expiry,
renewal, release, and a retraining cycle refused while another holds its route."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

from raymlops.store import leases
from raymlops.store.metadata import MetadataStore


def test_second_holder_is_refused_by_name_until_release(tmp_path: Path) -> None:
    md = MetadataStore(tmp_path / "m.db")
    leases.acquire(md, "retrain:r", "alice", ttl_s=60)
    leases.acquire(md, "retrain:r", "alice", ttl_s=60)  # re-entrant for the same holder
    with pytest.raises(leases.LeaseHeld, match="retrain:r is held by alice"):
        leases.acquire(md, "retrain:r", "bob", ttl_s=60)
    leases.acquire(md, "retrain:other", "bob", ttl_s=60)  # other names are independent
    leases.release(md, "retrain:r", "bob")  # not bob's: nothing happens
    assert leases.current(md, "retrain:r")["holder"] == "alice"  # type: ignore[index]
    leases.release(md, "retrain:r", "alice")
    assert leases.current(md, "retrain:r") is None
    leases.acquire(md, "retrain:r", "bob", ttl_s=60)


def test_an_expired_lease_is_taken_over_and_the_old_holder_cannot_renew(tmp_path: Path) -> None:
    md = MetadataStore(tmp_path / "m.db")
    now = [1000.0]
    leases.acquire(md, "x", "dead", ttl_s=10, clock=lambda: now[0])
    now[0] = 1009.0
    with pytest.raises(leases.LeaseHeld):
        leases.acquire(md, "x", "new", ttl_s=10, clock=lambda: now[0])
    assert leases.renew(md, "x", "dead", ttl_s=10, clock=lambda: now[0])  # still its own: extended to 1019
    now[0] = 1018.0
    with pytest.raises(leases.LeaseHeld):
        leases.acquire(md, "x", "new", ttl_s=10, clock=lambda: now[0])
    now[0] = 1020.0
    leases.acquire(md, "x", "new", ttl_s=10, clock=lambda: now[0])
    assert not leases.renew(md, "x", "dead", ttl_s=10, clock=lambda: now[0])
    assert leases.current(md, "x")["holder"] == "new"  # type: ignore[index]


def _race(path: str, name: str, barrier: mp.synchronize.Barrier, out: mp.Queue) -> None:  # type: ignore[type-arg]
    md = MetadataStore(path)
    barrier.wait()
    try:
        leases.acquire(md, name, leases.holder_id(), ttl_s=60)
        out.put("won")
    except leases.LeaseHeld:
        out.put("refused")


def test_eight_processes_racing_for_one_lease_give_exactly_one_holder(tmp_path: Path) -> None:
    path = str(tmp_path / "m.db")
    MetadataStore(path)
    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(8), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(path, "retrain:r", barrier, out)) for _ in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    results = sorted(out.get(timeout=5) for _ in procs)
    assert results == ["refused"] * 7 + ["won"]


def test_held_renews_in_the_background_and_releases_on_exit(tmp_path: Path) -> None:
    md = MetadataStore(tmp_path / "m.db")
    with leases.Held(md, "n", ttl_s=2.0) as held:
        first = leases.current(md, "n")["expires_at"]  # type: ignore[index]
        import time

        time.sleep(0.8)  # renewed every 0.5 s, long before it could expire
        assert leases.current(md, "n")["expires_at"] > first  # type: ignore[index]
        with pytest.raises(leases.LeaseHeld, match=held.holder.split(":")[0]):
            leases.acquire(md, "n", "someone", ttl_s=1)
    assert leases.current(md, "n") is None


def test_a_cycle_is_refused_while_another_holds_the_route_and_writes_nothing(tmp_path: Path) -> None:
    from raymlops.audit import records
    from raymlops.config import parse_config
    from raymlops.loop.controller import RetrainController
    from raymlops.loop.policy import Trigger
    from raymlops.store.home import Store
    from tests.unit.test_loop_watcher import drift

    store = Store.open(tmp_path / "home")
    cfg = parse_config({"name": "m", "data": {"source": "d.csv", "target": "y"},
                        "train": {"candidates": [{"estimator": "a.B"}]}, "retrain": {"enabled": True}})
    from tests.unit.test_registry import _model, _register

    _register(store, _model(), name="m")  # a champion, so the cycle gets as far as the lease
    before = len(records(store.metadata))
    leases.acquire(store.metadata, f"retrain:{cfg.route}", "other-watcher@host:1", ttl_s=60)
    with pytest.raises(leases.LeaseHeld, match="other-watcher"):
        RetrainController(cfg, store, progress=lambda line: None).run_cycle(Trigger.from_alert(drift(1.0)))
    assert len(records(store.metadata)) == before
