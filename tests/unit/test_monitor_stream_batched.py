"""Batch-at-once streaming gives exactly what part-by-part streaming gives (no Ray).

The hot path adds the windows of a batch in one set of passes (one ``bincount`` for every
window's counts, the sums as rows of one view), corrects every window's test families in one
pass, and buckets a batch's predictions once. Each is held here against the straightforward
computation it replaces: one ``StreamState.update`` per part, one ``feature_drift`` call per
family, numpy's dataset rule, one window per ``Monitor.ingest`` call; compared exactly (the
integers of the exact sums, the JSON of every window and alert).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from raymlops.config import MonitorConfig
from raymlops.monitor import Monitor, StreamState, build_reference
from raymlops.monitor.reference import PREDICTION
from raymlops.monitor.stacked import evaluate_stacked_many
from raymlops.monitor.state import add_parts
from raymlops.monitor.verdicts import _evaluate_per_column
from raymlops.stats.verdict import dataset_drift, feature_drift, feature_drift_families


def _columns(rng: np.random.Generator, n: int, *, sliced: bool, awkward: bool) -> dict[str, Any]:
    cols: dict[str, Any] = {f"f{j}": rng.normal(size=n) * (1 + j) + j for j in range(4)}
    cols["i"] = rng.integers(0, 7, size=n)  # integer column, bucketed on its values
    cols["c"] = rng.choice(list("abcz"), size=n)
    if awkward:
        cols["f0"][rng.random(n) < 0.1] = np.nan
        cols["f1"][rng.random(n) < 0.02] = np.inf
        cols["f2"] = cols["f2"].astype(np.float32)
    if sliced:
        cols["seg"] = rng.integers(0, 6, size=n).astype(float)
    return cols


def _reference(rng: np.random.Generator, sliced: bool) -> Any:
    return build_reference(_columns(rng, 3_000, sliced=sliced, awkward=False), categorical=["c"],
                           slice_columns=["seg"] if sliced else [])


def _exact(state: StreamState) -> tuple[Any, ...]:
    state.sums._settle()
    state.sums_sq._settle()
    return (state.counts.tolist(), state.finite.tolist(), state.sums.ints, state.sums_sq.ints, state.sums.special,
            state.sums_sq.special)


@pytest.mark.parametrize("sliced", [False, True])
@pytest.mark.parametrize("awkward", [False, True])
@pytest.mark.parametrize("lengths", [(100, 100, 100, 100), (37, 100, 100, 100, 63), (50, 120, 120, 7), (1, 80, 80)])
def test_parts_added_at_once_equal_parts_added_one_by_one(sliced: bool, awkward: bool, lengths: tuple[int, ...]
                                                          ) -> None:
    rng = np.random.default_rng(11)
    reference = _reference(rng, sliced)
    batch = _columns(rng, sum(lengths), sliced=sliced, awkward=awkward)
    slice_idx, idx, _, values = reference.bucketize_batch(batch)
    bounds = np.cumsum((0, *lengths)).tolist()
    parts = [(slice(a, b), StreamState(reference)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    for _, state in parts[:1]:  # the open window already holds rows: its first sums are integers
        state.update(_columns(rng, 20, sliced=sliced, awkward=awkward))
    expected = []
    for part, state in parts:
        alone = state.copy() if state.rows else StreamState(reference)
        alone.update({name: np.asarray(v)[part] for name, v in batch.items()})
        expected.append(_exact(alone))
    add_parts(parts, slice_idx, idx, values)
    assert [_exact(state) for _, state in parts] == expected


@pytest.mark.parametrize("correction", ["bonferroni", "holm", "bh", "none"])
@pytest.mark.parametrize("rule", ["any", "share"])
def test_families_corrected_at_once_equal_one_call_per_family(correction: str, rule: str) -> None:
    rng = np.random.default_rng(12)
    p = rng.random((9, 5)) ** 3
    p[rng.random(p.shape) < 0.1] = np.nan
    p[0, 0], p[1, 1] = 1.5, -0.2
    use_p = rng.random(p.shape) < 0.7
    dist = rng.random(p.shape) < 0.3
    families = [(0, 1), (1, 4), (4, 5), (5, 9)]
    adjusted, flags = feature_drift_families(p, use_p, dist, families, alpha=0.05, correction=correction, rule=rule)
    for a, b in families:
        want_adj, want_flags = feature_drift(p[a:b], use_p[a:b], dist[a:b], alpha=0.05, correction=correction,
                                             rule=rule)
        assert adjusted[a:b].tolist() == want_adj.tolist()
        assert flags[a:b].tolist() == want_flags.tolist()


@pytest.mark.parametrize("correction", ["bonferroni", "holm", "bh", "none"])
def test_one_test_family_equals_the_general_correction(correction: str) -> None:
    from raymlops.stats.drift import correct

    for x in (0.0, 1e-300, 0.003, 0.049999, 0.05, 0.5, 1.0, 1.7, -0.1, np.nan, np.inf):
        for use_p in (True, False):
            adjusted, flags = feature_drift(np.array([[x]]), [[use_p]], [[True]], alpha=0.05, correction=correction)
            clean = np.clip(np.nan_to_num(np.array([x]), nan=1.0), 0.0, 1.0)
            want = clean if correction == "none" else correct(clean, correction)
            assert adjusted.shape == (1, 1) and adjusted.tolist() == [want.tolist()]
            assert flags.tolist() == [[bool(want[0] < 0.05) if use_p else True]]


def test_dataset_rule_on_a_list_equals_numpy() -> None:
    rng = np.random.default_rng(13)
    for size in (0, 1, 2, 3, 7, 30):
        for _ in range(20):
            flags = (rng.random(size) < rng.random()).tolist()
            for share in (0.0, 1 / 3, 0.5, 1.0):
                for rule in ("any", "share"):
                    got = dataset_drift(flags, rule=rule, share=share)
                    want = dataset_drift(np.array(flags, dtype=bool), rule=rule, share=share)
                    assert got is want


def _dump(m: Monitor, alerts: list[Any]) -> str:
    status = m.status()
    status.pop("batches")  # calls, not rows: the only thing that differs
    return json.dumps({"history": [h.to_dict() for h in m.history], "alerts": [a.to_dict() for a in alerts],
                       "status": status}, sort_keys=True, default=str)


@pytest.mark.parametrize("sliced", [False, True])
@pytest.mark.parametrize("preds", ["none", "classes", "scores"])
def test_batches_of_many_windows_equal_one_window_per_call(sliced: bool, preds: str) -> None:
    rng = np.random.default_rng(14)
    reference = _reference(rng, sliced)
    cfg = MonitorConfig(window_rows=100, slice_columns=["seg"] if sliced else [], history=100,
                        max_positive_rate_gap=0.05, alerts={"log": False, "cooldown_s": 0.0})
    together, alone = Monitor(reference, cfg, clock=lambda: 1.0), Monitor(reference, cfg, clock=lambda: 1.0)
    got: list[Any] = []
    expected: list[Any] = []
    for size in (1_030, 470, 2_000):  # windows cut across batches
        batch = _columns(rng, size, sliced=sliced, awkward=True)
        batch["f3"] = batch["f3"] * 1.4 + 0.5  # drift
        p = None if preds == "none" else rng.integers(0, 3, size=size) if preds == "classes" else rng.random(size)
        got += together.ingest(batch, p)
        start = 0
        while start < size:  # the same rows, cut at the window boundaries
            stop = min(size, start + cfg.window_rows - alone.current.rows)
            part = slice(start, stop)
            expected += alone.ingest({k: np.asarray(v)[part] for k, v in batch.items()}, None if p is None else
                                     p[part])
            start = stop
    assert together.window_index == 35
    assert _dump(together, got) == _dump(alone, expected)


@pytest.mark.parametrize("kind", ["scores", "classes", "labels", "missing"])
def test_one_column_windows_judged_together_equal_the_per_column_verdicts(kind: str) -> None:
    """A batch's prediction verdicts (a one-column reference) are judged in one stacked pass: each
    is the per-column path's verdict, to the bit."""
    rng = np.random.default_rng(len(kind))

    def values(n: int, shift: float) -> np.ndarray:
        if kind == "classes":
            return rng.integers(0, 3 + int(shift > 0.2), n).astype(np.float64)
        if kind == "labels":
            return np.array(["no", "yes", "maybe"], dtype=object)[rng.integers(0, 2 + int(shift > 0.2), n)]
        v = rng.normal(shift, 1.0 + shift, n) * 40.0
        if kind == "missing":
            v[rng.random(n) < 0.1 + shift / 3] = np.nan
        return v

    ref = build_reference({PREDICTION: values(3_000, 0.0)}, categorical=[PREDICTION] if kind in ("classes", "labels")
                          else [])
    for overrides in ({}, {"correction": "holm", "small_window_rows": 300}, {"numeric_test": "psi", "min_rows": 0},
                      {"correction": "bh", "dataset_rule": "share"}):
        cfg = MonitorConfig(**overrides)
        states = []
        for n, shift in ((40, 0.0), (1_000, 0.1), (300, 0.5), (2_500, 0.3), (1, 0.0)):
            state = StreamState(ref)
            state.update({PREDICTION: values(n, shift)})
            states.append(state)
        for state, verdict in zip(states, evaluate_stacked_many(states, cfg, ref), strict=True):
            assert repr(_evaluate_per_column(state, cfg, ref)) == repr(verdict)


@pytest.mark.parametrize("segments", [0, 1, 4])
def test_windows_judged_together_equal_windows_judged_alone(segments: int) -> None:
    """A stacked pass of several windows gives each window's own verdict, to the bit: without
    slices, with one slice, with several where one window lacks a slice."""
    rng = np.random.default_rng(segments)
    seg = np.array([f"s{i}" for i in range(max(segments, 1))], dtype=object)

    def batch(n: int, shift: float, missing: str | None = None) -> dict[str, Any]:
        cols: dict[str, Any] = {"a": rng.normal(shift, 1.0, n), "b": rng.integers(0, 5, n).astype(np.float64)}
        values = seg if missing is None else seg[seg != missing]
        cols["seg"] = values[rng.integers(0, values.size, n)]
        return cols

    ref = build_reference(batch(4_000, 0.0), slice_columns=["seg"] if segments else [])
    cfg = MonitorConfig(slice_columns=["seg"] if segments else [])
    for missing in (None, "s1" if segments > 1 else None):
        states = []
        for n, shift in ((600, 0.0), (900, 0.3), (1_200, 0.1)):
            state = StreamState(ref)
            state.update(batch(n, shift, missing if n == 900 else None))
            states.append(state)
        together = evaluate_stacked_many(states, cfg, ref)
        for state, verdict in zip(states, together, strict=True):
            assert repr(evaluate_stacked_many([state], cfg, ref)[0]) == repr(verdict)
