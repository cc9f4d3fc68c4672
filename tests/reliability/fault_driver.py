"""A driver process that the reliability tests kill, or run eight at a time.

``python -m tests.reliability.fault_driver <mode> ...`` (run from the repository root):

* ``register HOME SEED``: registers versions of ``crash`` and moves its aliases, forever;
  prints ``ready`` once imported and then a phase marker (``P <phase>``) before each step, so
  whoever kills it knows where the SIGKILL landed.
* ``snapshot HOME ADDRESS SEED``: the same with ``create_snapshot`` of small tables (five
  contents in turn, so a later undisturbed run meets folders that killed runs left behind),
  connected to the Ray cluster at ADDRESS.
* ``writer HOME WORKER N``: one of the concurrent writers: N registrations of the shared model
  ``shared``, each followed by alias moves; prints one JSON line of what it did and every error.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any

import numpy as np

SIGNATURE = {"inputs": [{"name": "a", "type": "double"}], "output": "classification", "classes": [0, 1]}


def _say(text: str) -> None:
    os.write(1, (text + "\n").encode())  # unbuffered: the marker is out before the next step starts


def _register(store: Any, name: str, model: Any, snapshot: str, alias: str | None = "champion") -> Any:
    from raymlops.registry.registry import register_model

    return register_model(
        store, name, model, snapshot_id=snapshot, signature=SIGNATURE, metrics={"roc_auc": 0.9},
        gate={"status": "passed", "reasons": []}, lineage={"config_hash": "c", "snapshot_id": snapshot, "seed": 0},
        reason="reliability", alias=alias,
    )


def register_loop(home: str, seed: int) -> None:
    from raymlops.registry.registry import promote, rollback
    from raymlops.store.home import Store

    store = Store.open(home)
    rng = np.random.default_rng(seed)
    _say("ready")
    i = 0
    while True:
        model = rng.normal(size=int(rng.integers(1_000, 200_000)))  # 8 KB to 1.6 MB artifacts
        _say("P register")
        v = _register(store, "crash", model, "s" * 64)
        _say("P promote")
        promote(store, v.id, alias="staging", reason="reliability")
        if i % 3 == 2:
            _say("P rollback")
            rollback(store, "crash", alias="champion", reason="reliability")
        _say("P idle")
        i += 1


def table_for(seed: int, rows: int = 4_000) -> Any:
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    return pa.table({"x": rng.normal(size=rows), "k": rng.integers(0, 10, rows), "y": rng.integers(0, 2, rows)})


def snapshot_loop(home: str, address: str, seed: int) -> None:
    import logging

    import ray
    import ray.data

    from raymlops.data.snapshot import create_snapshot
    from raymlops.store.home import Store

    ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
    from raymlops.ray_session import ensure_ray

    ensure_ray()
    store = Store.open(home)
    _say("ready")
    i = 0
    while True:
        content = (seed + i) % 5  # five contents: a kill may hit a new one or one an earlier run left
        _say(f"P snapshot {content}")
        ds = ray.data.from_arrow(table_for(content)).repartition(4)
        create_snapshot(store, ds, "reliability://crash", reason="reliability")
        _say("P idle")
        i += 1


def writer(home: str, worker: int, n: int) -> None:
    from raymlops.registry.registry import promote
    from raymlops.store.home import Store

    done: list[str] = []
    moves: list[str] = []
    errors: list[str] = []
    rng = np.random.default_rng(worker)
    store = Store.open(home)
    for i in range(n):
        try:
            v = _register(store, "shared", rng.normal(size=500 + i), "s" * 64)
            done.append(v.id)
            moves.append(f"champion->{v.id}")
            alias = f"w{worker}"
            promote(store, v.id, alias=alias, reason=f"writer {worker}")
            moves.append(f"{alias}->{v.id}")
            promote(store, v.id, alias="latest", reason=f"writer {worker}")
            moves.append(f"latest->{v.id}")
        except Exception as exc:  # noqa: BLE001 - every error is reported to the test
            errors.append(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()[-800:]}")
    print(json.dumps({"worker": worker, "registered": done, "moves": moves, "errors": errors}), flush=True)


def store_write(home: str, size: int) -> None:
    """Register one ``size``-float model (as whatever user this process runs as, with whatever
    limits it was given); prints one JSON line: the error's type and message, or the version."""
    from raymlops.store.home import Store

    try:
        store = Store.open(home)
        v = _register(store, "disk", np.arange(size, dtype=float), "s" * 64)
        print(json.dumps({"ok": v.id}), flush=True)
    except Exception as exc:  # noqa: BLE001 - the test judges the error
        print(json.dumps({"error": type(exc).__name__, "message": str(exc),
                          "raymlops": type(exc).__module__.startswith("raymlops")}), flush=True)


def main(argv: list[str]) -> None:
    mode = argv[0]
    if mode == "register":
        register_loop(argv[1], int(argv[2]))
    elif mode == "snapshot":
        snapshot_loop(argv[1], argv[2], int(argv[3]))
    elif mode == "writer":
        writer(argv[1], int(argv[2]), int(argv[3]))
    elif mode == "store-write":
        store_write(argv[1], int(argv[2]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])

