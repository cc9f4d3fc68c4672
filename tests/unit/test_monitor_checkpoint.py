"""Monitor checkpoints: arrays + JSON (``raymlops.monitor-checkpoint/2``), never a pickle (pure, no Ray).

A monitor fed every kind of state (numeric, categorical and integer columns, slices, a learned
prediction baseline, labels waiting and matched, change detectors, estimated performance, a
challenger's pending pairs, SLO counters, alerts) restores to the same status and then behaves
identically on further rows and labels; a corrupted, truncated, foreign or pickled blob is a
ValidationError that names what is wrong.
"""

from __future__ import annotations

import io
import json
import pickle
import time
from typing import Any

import numpy as np
import pytest

from raymlops.config import MonitorConfig
from raymlops.exceptions import ValidationError
from raymlops.monitor import Monitor, build_reference
from raymlops.monitor.checkpoint import FORMAT
from raymlops.monitor.monitor import CHECKPOINT_FORMAT
from raymlops.monitor.reference import PREDICTION, MonitorReference
from raymlops.monitor.shards import merge_monitors, snapshot

SEGMENTS = np.array(["a", "b", "c"], dtype=object)


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def table(rng: np.random.Generator, n: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    color = np.array(["red", "green", "blue"], dtype=object)[rng.choice(3, size=n, p=[0.5, 0.3, 0.2])]
    x = rng.normal(shift, 1.0, size=n)
    x[rng.random(n) < 0.02] = np.nan
    return {"x": x, "count": rng.poisson(3.0 + shift, size=n).astype(np.int64), "color": color,
            "seg": SEGMENTS[rng.integers(0, 3, size=n)]}


@pytest.fixture(scope="module")
def reference() -> MonitorReference:
    return build_reference(table(np.random.default_rng(0), 5_000), slice_columns=["seg"])


def config(**extra: Any) -> MonitorConfig:
    return MonitorConfig.model_validate({
        "window_rows": 200, "long_term_windows": 3, "history": 4, "max_positive_rate_gap": 0.2,
        "performance": {"baseline_labels": 100, "window_labels": 150, "min_labels": 20, "estimated_window_rows": 250,
                        "change_min_labels": 10},
        "differential": {"min_pairs": 10},
        "slo": {"latency_ms": 50.0, "min_requests": 5, "bucket_s": 10.0},
        **extra})


def feed(m: Monitor, clock: Clock, rng: np.random.Generator, batches: int, start: int, shift: float = 0.0) -> list:
    """Champion and challenger rows with ids, scores, latencies; labels for some, some before
    their rows (waiting), some after (matched)."""
    alerts: list = []
    for b in range(batches):
        n = 130
        cols = table(rng, n, shift)
        ids = [f"r{start + b * n + i}" for i in range(n)]
        scores = np.clip(rng.random(n) + 0.3 * shift, 0.0, 1.0)
        preds = (scores > 0.5).astype(float)
        early = ids[-10:]
        alerts += m.feedback(early, rng.integers(0, 2, size=10).tolist())[1]
        alerts += m.ingest(cols, preds, version="m:v1", latency_ms=rng.exponential(20.0 + 40 * shift, size=n),
                           status=np.where(rng.random(n) < 0.02 + 0.1 * shift, 500, 200), request_ids=ids,
                           scores=scores)
        alerts += m.ingest(cols, 1.0 - preds, version="m:v2", request_ids=ids)
        labels = np.where(rng.random(n - 30) < 0.8 - 0.4 * shift, preds[:-30], 1.0 - preds[:-30])
        alerts += m.feedback(ids[: n - 30], labels.tolist())[1]  # 20 rows of each batch stay unlabelled
        alerts += m.tick()
        clock.t += 7.0
    return alerts


def comparable(status: dict[str, Any]) -> str:
    return json.dumps(status, sort_keys=True, default=str)


@pytest.fixture
def fed(reference: MonitorReference) -> tuple[Monitor, Clock]:
    clock = Clock()
    m = Monitor(reference, config(), clock=clock)
    feed(m, clock, np.random.default_rng(1), 9, 0)
    m.feedback(["never-served-1", "never-served-2"], [1, 0])  # waiting for rows that do not come
    m.ingest(table(np.random.default_rng(2), 20), np.zeros(20), version="m:v1")  # an open, part-filled window
    return m, clock


def test_every_part_of_the_state_is_exercised(fed: tuple[Monitor, Clock]) -> None:
    m, _ = fed
    perf = m.performance
    assert m.window_index >= 5 and len(m.recent) == 3 and len(m.history) == 4 and m.current.rows == 190
    assert len(perf.store) > 0 and len(perf.early) >= 2 and perf.baseline is not None and perf.windows_closed >= 1
    assert perf.concept.detectors and perf.estimated.windows >= 1 and perf.estimated.window.rows > 0
    assert len(m.differential.pending) > 0 or m.differential.pairs.sum() > 0
    assert m.pred_reference is not None and m.pred_state is not None
    assert m.slo.total_requests > 0 and sum(m.alerts.totals.values()) > 0


def test_round_trip_restores_the_status_and_the_behaviour(fed: tuple[Monitor, Clock]) -> None:
    m, clock = fed
    blob = m.to_bytes()
    back = Monitor.from_bytes(blob, clock=clock)
    assert comparable(back.status()) == comparable(m.status())
    assert back.to_bytes() == blob  # nothing lost or changed: the same bytes again
    assert back.current == m.current and all(a == b for a, b in zip(back.recent, m.recent, strict=True))
    # the same rows and labels from here on: the same alerts, verdicts and status
    a1 = feed(m, clock, np.random.default_rng(3), 6, 10_000, shift=1.0)
    clock.t -= 6 * 7.0
    a2 = feed(back, clock, np.random.default_rng(3), 6, 10_000, shift=1.0)
    assert [a.to_dict() for a in a1] == [a.to_dict() for a in a2] and a1
    assert "feature_drift" in {a.kind for a in a1}
    assert comparable(back.status()) == comparable(m.status())
    assert back.to_bytes() == m.to_bytes()


def test_prediction_column_and_regression_round_trip(reference: MonitorReference) -> None:
    rng = np.random.default_rng(4)
    cols = table(rng, 3_000)
    ref = build_reference({**cols, PREDICTION: rng.normal(size=3_000)}, slice_columns=["seg"])
    clock = Clock()
    cfg = config(performance={"task": "regression", "baseline_labels": 50, "window_labels": 60})
    m = Monitor(ref, cfg, clock=clock)
    ids = [f"q{i}" for i in range(900)]
    m.ingest(table(rng, 900), rng.normal(size=900), request_ids=ids)
    m.feedback(ids[:300], rng.normal(size=300).tolist())
    back = Monitor.from_bytes(m.to_bytes(), clock=clock)
    assert comparable(back.status()) == comparable(m.status())
    more = table(rng, 500)
    preds = rng.normal(1.0, size=500)
    assert [a.to_dict() for a in m.ingest(more, preds)] == [a.to_dict() for a in back.ingest(more, preds)]
    assert comparable(back.status()) == comparable(m.status())


def test_given_config_replaces_the_monitor_config_only(fed: tuple[Monitor, Clock]) -> None:
    m, clock = fed
    other = config(window_rows=999)
    back = Monitor.from_bytes(m.to_bytes(), clock=clock, config=other)
    assert back.config is other and back.performance.cfg == m.performance.cfg


def test_the_blob_is_arrays_and_json_without_pickle(fed: tuple[Monitor, Clock]) -> None:
    blob = fed[0].to_bytes()
    assert CHECKPOINT_FORMAT == FORMAT == "raymlops.monitor-checkpoint/2"
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:  # an object array would raise here
        arrays = {k: npz[k] for k in npz.files}
    assert all(a.dtype.kind in "biufU" for a in arrays.values())
    doc = json.loads(arrays.pop("__doc__").tobytes())
    assert doc["format"] == FORMAT and set(doc["arrays"]) == set(arrays)
    assert {"current.counts", "current.sums", "reference.counts", "slo.ring", "performance.window.pos"} <= set(arrays)
    assert [c["name"] for c in doc["reference"]["columns"]] == ["x", "count", "color"]
    assert doc["reference"]["slices"][-1] == "other" and doc["config"]["window_rows"] == 200
    assert b"\x80\x04\x95" not in blob and b"\x80\x05\x95" not in blob  # no pickle protocol 4/5 stream


def _rewrite(blob: bytes, change: Any) -> bytes:
    with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    doc = json.loads(arrays["__doc__"].tobytes())
    change(arrays, doc)
    arrays["__doc__"] = np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _shrink(arrays: dict, doc: dict, key: str) -> None:
    arrays[key] = arrays[key][:-1]
    doc["arrays"][key]["shape"] = list(arrays[key].shape)


@pytest.mark.parametrize(("change", "match"), [
    (lambda a, d: d.update(format="raymlops.monitor-checkpoint/1"),
     r"format 'raymlops.monitor-checkpoint/2' \(found format 'raymlops.monitor-checkpoint/1'\)"),
    (lambda a, d: a.pop("current.finite"), "missing array 'current.finite'"),
    (lambda a, d: (a.pop("slo.ring"), d["arrays"].pop("slo.ring")), "missing array 'slo.ring'"),
    (lambda a, d: a.update(extra=np.zeros(3)), "unexpected array 'extra'"),
    (lambda a, d: _shrink(a, d, "current.counts"), r"array 'current.counts' has shape \(3, \d+\), expected \(4, \d+\)"),
    (lambda a, d: _shrink(a, d, "pos"), r"array 'pos' has shape \(3,\), expected \(4,\)"),
    (lambda a, d: a.update({"current.counts": a["current.counts"][:-1]}), "array 'current.counts' is <i8"),
    (lambda a, d: d.pop("scalars"), "malformed monitor checkpoint: KeyError: 'scalars'"),
    (lambda a, d: d["reference"].update(format="x"), "not a raymlops monitor reference"),
])
def test_a_damaged_blob_is_a_clear_validation_error(fed: tuple[Monitor, Clock], change: Any, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        Monitor.from_bytes(_rewrite(fed[0].to_bytes(), change))


def test_truncated_foreign_and_pickled_blobs_are_refused(fed: tuple[Monitor, Clock]) -> None:
    m, _ = fed
    blob = m.to_bytes()
    for bad in (blob[: len(blob) // 2], blob[:100], b"", b"garbage"):
        with pytest.raises(ValidationError, match="unreadable monitor checkpoint"):
            Monitor.from_bytes(bad)
    foreign = io.BytesIO()
    np.savez(foreign, weights=np.ones(3))
    with pytest.raises(ValidationError, match="not a monitor checkpoint"):
        Monitor.from_bytes(foreign.getvalue())
    # the old format (a pickle of the object graph) is never unpickled
    old = pickle.dumps({"format": "raymlops.monitor-checkpoint/1", "state": {}})
    with pytest.raises(ValidationError, match="unreadable monitor checkpoint"):
        Monitor.from_bytes(old)


def test_shard_views_use_the_same_format_and_leave_the_stores_out(fed: tuple[Monitor, Clock]) -> None:
    m, clock = fed
    view = snapshot(m)
    with np.load(io.BytesIO(view), allow_pickle=False) as npz:
        doc = json.loads(npz["__doc__"].tobytes())
        assert "performance.store.scores" not in npz.files and "differential.pending.slices" not in npz.files
    assert doc["format"] == FORMAT and doc["view"] is True
    merged = merge_monitors([view], config=m.config)
    merged.clock = clock  # a view loads on the wall clock; the SLO windows are read at the fake one
    status, full = merged.status(), m.status()
    assert status["performance"] == full["performance"] and status["differential"] == full["differential"]
    assert comparable(status) == comparable(full)


def test_the_format_covers_every_attribute(fed: tuple[Monitor, Clock]) -> None:
    """An attribute added to one of these classes must be added to the checkpoint format
    (:mod:`raymlops.monitor.checkpoint`) too, with a new format id if old blobs cannot hold it;
    this list is what the format stores or rebuilds from the reference and config."""
    m, _ = fed
    p, d = m.performance, m.differential
    expected = [
        (m, {"reference", "config", "clock", "window_index", "window_started", "current", "recent", "history",
            "alerts", "performance", "differential", "slo", "rows_total", "batches", "challenger_rows",
            "has_pred_column", "pred_baseline", "pred_reference", "pred_state", "pos", "pred_n"}),
        (p, {"cfg", "slices", "regression", "store", "early", "labelled", "counts", "last_outcomes", "baseline_window",
            "baseline", "window", "windows_closed", "last", "matched", "unmatched", "concept", "estimated",
            "challengers", "early_lists"}),
        (p.store, {"size", "items", "evicted", "replaced", "_multi"}),  # (_multi: rebuilt from the items)
        (p.early, {"size", "ttl_s", "clock", "items", "expired", "pushed_out"}),
        (p.labelled, {"size", "ids"}),
        (p.concept, {"kinds", "params", "slices", "per_slice", "detectors", "labels", "alarms"}),
        (p.estimated, {"cfg", "slices", "enabled", "calibration", "reference", "reference_source", "window_rows",
                      "window", "labelled", "last", "windows", "rows", "rows_without_scores"}),
        (d, {"cfg", "slices", "tolerance", "champion", "pending", "dist", "pairs", "agree", "last", "champion_epoch",
            "following", "roles", "role_rows", "switches", "stale_batches", "challengers_seen", "alone",
            "alone_rows"}),
        (m.slo, {"cfg", "n_buckets", "ring", "ring_id", "total_requests", "total_errors"}),
        (m.alerts, {"cooldown_s", "last_fired", "totals", "recent", "latest"}),
        (m.current, {"reference", "counts", "numeric", "finite", "sums", "sums_sq"}),
    ]
    for obj, names in expected:
        assert set(vars(obj)) == names, type(obj).__name__


def test_a_code_column_is_named_by_its_values_in_reports_and_keeps_the_names_through_a_checkpoint() -> None:
    from raymlops.features import category_code
    from raymlops.monitor.checkpoint import dump, load
    from raymlops.monitor.histograms import histograms

    plans = ["basic", "plus", "pro"]
    rng = np.random.default_rng(4)
    codes = np.array([category_code(p) for p in plans])
    ref_cols = {"plan": codes[rng.integers(0, 3, 600)], "x": rng.normal(size=600)}
    names = {"plan": {str(int(category_code(p))): p for p in plans}}
    ref = build_reference(ref_cols, categorical=["plan"], category_names=names)
    col = ref.column("plan")
    assert set(col.shown_categories) == set(plans) and set(col.bucket_labels()[:3]) == set(plans)
    assert MonitorReference.from_dict(ref.to_dict()).column("plan").display == col.display
    with pytest.raises(ValidationError, match="display must name each"):
        type(col).from_dict(col.to_dict() | {"display": ["basic"]})

    m = Monitor(ref, MonitorConfig(window_rows=1000, alerts={"log": False}))  # the 300 rows stay current
    m.ingest({"plan": np.append(codes[rng.integers(0, 3, 299)], category_code("gold")), "x": rng.normal(size=300)})
    bars = histograms(m.current)["plan"]
    assert set(bars["labels"][:3]) == set(plans)  # the values, not their codes
    restored = load(dump(m), Monitor, time.time)
    assert restored.reference.column("plan").display == col.display
    assert histograms(restored.current)["plan"]["labels"] == bars["labels"]
    assert bars["current"][bars["labels"].index("(other)")] == 1  # "gold": a plan the reference lacks
