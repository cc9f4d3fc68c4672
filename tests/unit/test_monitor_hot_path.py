"""The streaming hot path gives the same answers however it is cut (no Ray).

- A batch that closes many windows is judged several windows per stacked pass; its windows,
  alerts and long-term verdict are the same (to the last bit, compared as JSON) as when each
  window arrives in its own call.
- Exact sums keep a window's one addition as doubles until a second one, a merge or a pickle
  needs the integers: moments, equality and checkpoints are those of the integer path.
- Bucket lookup in column blocks agrees with a plain binary search, NaN, infinities, edges and
  crowded cells included.
"""

from __future__ import annotations

import json
import math
import pickle
from typing import Any

import numpy as np
import pytest

from raymlops.config import MonitorConfig
from raymlops.monitor import Monitor, StreamState, build_reference
from raymlops.monitor.bucketing import GridSet
from raymlops.monitor.state import ExactSums, _exact
from raymlops.monitor.verdicts import evaluate


def _batches(rng: np.random.Generator, n: int, sliced: bool) -> dict[str, Any]:
    cols: dict[str, Any] = {f"f{j}": rng.normal(size=n) + 0.3 * j for j in range(3)}
    cols["f0"][:: 17] = np.nan
    cols["c"] = rng.choice(list("abce"), size=n)
    if sliced:
        cols["seg"] = rng.integers(0, 5, size=n).astype(float)
    return cols


def _dump(m: Monitor, alerts: list[Any]) -> str:
    return json.dumps({"history": [h.to_dict() for h in m.history], "alerts": [a.to_dict() for a in alerts],
                       "long_term": m.status()["long_term"]}, sort_keys=True, default=str)


@pytest.mark.parametrize("sliced", [False, True])
def test_windows_judged_together_match_windows_judged_alone(sliced: bool) -> None:
    rng = np.random.default_rng(4)
    ref_cols = {f"f{j}": rng.normal(size=4_000) for j in range(3)} | {"c": rng.choice(list("abcd"), size=4_000)}
    if sliced:
        ref_cols["seg"] = rng.integers(0, 4, size=4_000).astype(float)
    reference = build_reference(ref_cols, slice_columns=["seg"] if sliced else [])
    cfg = MonitorConfig(window_rows=100, slice_columns=["seg"] if sliced else [], history=100,
                        alerts={"log": False, "cooldown_s": 0.0})
    data = _batches(rng, 3_000, sliced)
    preds = rng.integers(0, 2, size=3_000)
    together, alone = Monitor(reference, cfg, clock=lambda: 1.0), Monitor(reference, cfg, clock=lambda: 1.0)
    got = together.ingest(data, preds)  # 30 windows in one call
    assert together.window_index == 30
    expected: list[Any] = []
    for start in range(0, 3_000, 100):  # one window per call
        part = slice(start, start + 100)
        expected += alone.ingest({k: v[part] for k, v in data.items()}, preds[part])
    assert _dump(together, got) == _dump(alone, expected)
    for window, state in zip(list(together.history)[-len(together.recent):], together.recent, strict=True):
        assert json.dumps(window.verdict.to_dict(), default=str) == json.dumps(evaluate(state, cfg).to_dict(),
                                                                               default=str)


def test_several_categorical_columns_among_numeric_ones_judged_together_match_alone() -> None:
    """Chi-square runs on the categorical columns only (numeric ones get KS here): a window's
    verdicts are the same whether it is judged alone or stacked with others, and the shifted
    categorical column is flagged by its chi-square test."""
    rng = np.random.default_rng(8)

    def columns(n: int) -> dict[str, Any]:
        cols: dict[str, Any] = {f"f{j}": rng.normal(size=n) for j in range(3)}
        for name, letters in (("c", "abcdefgh"), ("d", "pqrstuvw"), ("e", "xyz")):
            cols[name] = rng.choice(list(letters), size=n)
        cols["seg"] = rng.integers(0, 4, size=n).astype(float)
        return cols

    reference = build_reference(columns(4_000), slice_columns=["seg"])
    cfg = MonitorConfig(window_rows=50, slice_columns=["seg"], categorical_test="chi2", history=100,
                        alerts={"log": False, "cooldown_s": 0.0})
    data = columns(1_500)
    data["d"][750:] = "p"  # a categorical shift halfway
    together, alone = Monitor(reference, cfg, clock=lambda: 1.0), Monitor(reference, cfg, clock=lambda: 1.0)
    got = together.ingest(data, None)
    expected: list[Any] = []
    for start in range(0, 1_500, 50):
        expected += alone.ingest({k: v[start:start + 50] for k, v in data.items()}, None)
    assert _dump(together, got) == _dump(alone, expected)
    last = together.history[-1].verdict.overall
    assert last.column("d").test == "chi2" and last.column("d").drift and last.column("f0").test == "ks"


def test_exact_sums_keep_one_addition_as_doubles_and_agree_with_the_integers() -> None:
    rng = np.random.default_rng(5)
    values = rng.normal(size=40) * 10.0 ** rng.integers(-200, 200, size=40)
    values[:3] = [0.0, -0.0, 5e-324]
    lazy = ExactSums(40)
    lazy.add(values)
    assert lazy.floats() is not None
    eager = ExactSums(40)
    eager.ints = [_exact(x) if x != 0.0 else 0 for x in values.tolist()]
    np.testing.assert_array_equal(lazy.values(), eager.values())
    assert str(lazy.values()[1]) == "0.0"  # -0.0 is not added: the sum is +0.0, as before
    assert lazy == eager and lazy.floats() is None  # comparing settles the integers
    again = ExactSums(40)
    again.add(values)
    restored = pickle.loads(pickle.dumps(again))
    assert restored.ints == eager.ints and restored.floats() is None
    more = rng.normal(size=40)
    again.add(more)
    eager2 = eager.merged(ExactSums(40))
    eager2.add(more)
    assert again == eager2
    inf = ExactSums(2)
    inf.add(np.array([math.inf, 1.0]))
    assert inf.floats() is None and inf.special == [math.inf, 0.0]


def test_state_moments_are_the_same_from_doubles_and_from_integers() -> None:
    rng = np.random.default_rng(6)
    reference = build_reference({"a": rng.normal(size=2_000), "b": rng.exponential(size=2_000),
                                 "s": rng.integers(0, 3, size=2_000).astype(float)}, slice_columns=["s"])
    batch = {"a": rng.normal(size=500) * 1e6, "b": rng.exponential(size=500), "s": rng.integers(0, 4, size=500)
             .astype(float)}
    lazy = StreamState(reference)
    lazy.update(batch)
    assert lazy.sums.floats() is not None
    from_doubles = lazy.moment_table()
    settled = pickle.loads(pickle.dumps(lazy))  # a pickle holds the integers
    assert settled.sums.floats() is None
    for x, y in zip(from_doubles, settled.moment_table(), strict=True):
        np.testing.assert_array_equal(x, y)
    for s in range(reference.n_slices):  # moments() reads the integers one column at a time
        for j, name in enumerate(("a", "b")):
            m = settled.moments(name, s)
            np.testing.assert_array_equal([m.mean, m.std], [from_doubles[1][1 + s, j], from_doubles[2][1 + s, j]])


def test_block_lookup_matches_binary_search() -> None:
    rng = np.random.default_rng(7)
    for trial in range(25):
        k, n = int(rng.integers(1, 12)), int(rng.integers(1, 6_000))
        edges = []
        for _ in range(k):
            kind = int(rng.integers(0, 3))
            e = (np.unique(np.quantile(rng.standard_cauchy(2_000), np.linspace(0, 1, 101))) if kind == 0 else
                 np.unique(np.round(rng.normal(size=300), 1)) if kind == 1 else np.array([1e15, 1e15 + 1.0]))
            edges.append(e)
        offsets = np.cumsum([0] + [e.size + 2 for e in edges[:-1]])
        x = rng.standard_cauchy((k, n))
        x[rng.random((k, n)) < 0.05] = np.nan
        x[rng.random((k, n)) < 0.01] = np.inf
        x[rng.random((k, n)) < 0.01] = -np.inf
        for i, e in enumerate(edges):
            at = rng.integers(0, n, size=min(n, 30))
            x[i, at] = rng.choice(e, size=at.size)
        out = np.empty((k, n), dtype=np.int64)
        GridSet(edges, offsets).lookup(x, out)
        expected = np.stack([np.searchsorted(np.append(e, np.nan), x[i], side="right") + offsets[i]
                             for i, e in enumerate(edges)])
        np.testing.assert_array_equal(out, expected, err_msg=f"trial {trial}")
