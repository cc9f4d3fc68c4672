"""Mergeable profiles (raymlops.stats.profile): partial states merge exactly, finished profiles
do not depend on how the rows were split, and they survive JSON."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from raymlops.exceptions import ValidationError
from raymlops.stats.bins import coarse_edges, edges_digest, fine_edges, regroup
from raymlops.stats.profile import (
    LOW_CARDINALITY,
    PartialProfile,
    Profile,
    count_on_edges,
    finish,
    plan_edges,
    profile_table,
    row_keys,
)


@pytest.fixture()
def table() -> pa.Table:
    rng = np.random.default_rng(7)
    n = 30_000
    x = rng.normal(10.0, 2.0, n)
    x[::97] = np.nan
    return pa.table({
        "x": pa.array(x, pa.float64()),
        "k": pa.array(rng.integers(0, 5, n), pa.int64()),  # few values: also categorical
        "big": pa.array(rng.integers(0, 10_000, n), pa.int32()),
        "city": pa.array(rng.choice(["a", "b", "c", None], n, p=[0.5, 0.3, 0.15, 0.05])),
        "flag": pa.array(rng.random(n) < 0.3),
        "inf": pa.array(np.where(np.arange(n) % 1000 == 0, np.inf, 1.0)),
    })


def _partial_of(table: pa.Table, cuts: list[int]) -> PartialProfile:
    merged = PartialProfile.empty()
    bounds = [0, *cuts, table.num_rows]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        merged = merged.merge(PartialProfile.from_table(table.slice(a, b - a), sample_size=5000))
    return merged


def test_partial_merge_is_exact_whatever_the_split(table: pa.Table) -> None:
    whole = PartialProfile.from_table(table, sample_size=5000)
    for cuts in ([10_000], [1, 2, 29_000], [7_000, 14_000, 21_000]):
        merged = _partial_of(table, cuts)
        assert merged.rows == whole.rows
        assert np.array_equal(merged.sample_keys, whole.sample_keys)  # the same bottom-k rows
        assert np.array_equal(merged.sample["x"], whole.sample["x"], equal_nan=True)
        for name, st in whole.columns.items():
            m = merged.columns[name]
            assert (m.count, m.nulls, m.infinite, m.n) == (st.count, st.nulls, st.infinite, st.n), name
            assert m.min == st.min and m.max == st.max
            assert m.mean == pytest.approx(st.mean, rel=1e-12, abs=1e-12)
            assert m.m2 == pytest.approx(st.m2, rel=1e-9)
            assert m.categories == st.categories


def test_moments_and_counts_match_numpy(table: pa.Table) -> None:
    prof = profile_table(table)
    x = table.column("x").to_numpy(zero_copy_only=False)
    finite = x[np.isfinite(x)]
    c = prof.column("x")
    assert c.kind == "numeric" and c.count == len(x) and c.nulls == int(np.isnan(x).sum())
    assert c.mean == pytest.approx(finite.mean()) and c.std == pytest.approx(finite.std())
    assert (c.min, c.max) == (finite.min(), finite.max())
    assert int(c.counts.sum()) == finite.size
    for q, key in ((0.05, "p05"), (0.5, "p50"), (0.95, "p95")):
        # within one fine bin (~0.1 % of the rows) of the exact quantile
        lo, hi = np.quantile(finite, [max(q - 0.002, 0), min(q + 0.002, 1)])
        assert lo <= c.quantiles[key] <= hi, key
    assert prof.column("inf").infinite == 30 and prof.column("inf").counts.sum() == 30_000 - 30


def test_kinds_and_categories(table: pa.Table) -> None:
    prof = profile_table(table)
    assert prof.column("k").kind == "categorical" and sorted(prof.column("k").categories) == [0, 1, 2, 3, 4]
    assert prof.column("k").mean is not None  # still profiled as a number
    assert prof.column("big").kind == "numeric" and prof.column("big").categories is None
    city = prof.column("city")
    assert city.kind == "categorical" and set(city.categories) == {"a", "b", "c"}
    assert sum(city.categories.values()) + city.nulls == 30_000
    assert prof.column("flag").categories.keys() == {True, False}
    many = pa.table({"s": [str(i) for i in range(2000)]})
    assert profile_table(many).column("s").kind == "text"  # too many values to test as categories
    few = pa.table({"n": list(range(LOW_CARDINALITY + 1)) * 3})
    assert profile_table(few).column("n").kind == "numeric"


def test_finished_profile_does_not_depend_on_partitioning(table: pa.Table) -> None:
    one = profile_table(table, sample_size=5000)
    merged = _partial_of(table, [3_333, 17_000])
    edges = plan_edges(merged)
    counts = {n: np.zeros(len(e) + 1, dtype=np.int64) for n, e in edges.items()}
    for a in range(0, table.num_rows, 4096):
        for n, c in count_on_edges(table.slice(a, 4096), edges).items():
            counts[n] += c
    two = finish(merged, edges, counts)
    for name in one.columns:
        a, b = one.column(name).to_dict(), two.column(name).to_dict()
        for key in ("mean", "std"):  # merged moments: equal up to float rounding
            va, vb = a.pop(key), b.pop(key)
            if va is None or vb is None:  # not finite (e.g. an inf column): both sides must say so
                assert va is None and vb is None, (key, va, vb)
            else:
                assert va == pytest.approx(vb, rel=1e-12), key
        assert a == b, name


def test_profile_json_round_trip_and_reference_counts(table: pa.Table) -> None:
    ref = profile_table(table)
    cur = profile_table(table.slice(0, 5000), reference=ref)
    back = Profile.from_dict(json.loads(json.dumps(cur.to_dict())))
    for name in cur.columns:
        assert back.column(name).to_dict() == cur.column(name).to_dict()
    x = back.column("x")
    assert x.ref_edges == edges_digest(ref.column("x").edges) and x.ref_counts.sum() == x.counts.sum()
    with pytest.raises(ValidationError, match="not a raymlops profile"):
        Profile.from_dict({"format": "other"})
    with pytest.raises(ValidationError, match="not in the profile"):
        cur.column("nope")


def test_bins_helpers() -> None:
    assert fine_edges([1, 1, 2, 3]).tolist() == [1.5, 2.5]  # few values: every CDF step kept
    x = np.random.default_rng(1).normal(size=50_000)
    e = fine_edges(x, 100)
    assert 90 <= e.size <= 99 and np.all(np.diff(e) > 0)
    counts = count_on_edges(pa.table({"x": x}), {"x": e})["x"]
    coarse, picks = coarse_edges(e, counts, 10)
    deciles = regroup(counts, picks)
    assert deciles.sum() == x.size and coarse.size == 9
    assert np.all(np.abs(deciles / x.size - 0.1) < 0.02)  # exact deciles, to a fine bin


def test_row_keys_are_content_hashes() -> None:
    t = pa.table({"a": [1, 2, 1], "b": ["x", "y", "x"]})
    keys = row_keys(t)
    assert keys[0] == keys[2] and keys[0] != keys[1]
    assert np.array_equal(row_keys(t.slice(1)), keys[1:])
