"""Mergeable profiles (raymlops.stats.profile): partial states merge exactly, finished profiles
do not depend on how the rows were split, and they survive JSON."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from raymlops.exceptions import ValidationError
from raymlops.stats.bins import coarse_edges, edges_digest, fine_edges, regroup
from raymlops.stats.partial import LOW_CARDINALITY, PartialProfile, Sample, count_on_edges, row_keys
from raymlops.stats.profile import Profile, finish, profile_table


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


def _parts_of(table: pa.Table, cuts: list[int], edges: dict | None = None) -> tuple[Sample, PartialProfile]:
    sample, merged = Sample.empty(5000), PartialProfile.empty()
    bounds = [0, *cuts, table.num_rows]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        block = table.slice(a, b - a)
        sample = sample.merge(Sample.from_table(block, size=5000))
        merged = merged.merge(PartialProfile.from_table(block, edges))
    return sample, merged


def test_partial_merge_is_exact_whatever_the_split(table: pa.Table) -> None:
    whole_sample = Sample.from_table(table, size=5000)
    edges = whole_sample.edges()
    whole = PartialProfile.from_table(table, edges)
    for cuts in ([10_000], [1, 2, 29_000], [7_000, 14_000, 21_000]):
        sample, merged = _parts_of(table, cuts, edges)
        assert merged.rows == whole.rows
        assert np.array_equal(sample.keys, whole_sample.keys)  # the same bottom-k rows
        assert np.array_equal(sample.values["x"], whole_sample.values["x"], equal_nan=True)
        bounds = [0, *cuts, table.num_rows]
        at_once = Sample.merge_all(Sample.from_table(table.slice(a, b - a), size=5000)
                                   for a, b in zip(bounds[:-1], bounds[1:], strict=True))
        assert np.array_equal(at_once.keys, whole_sample.keys)  # one selection: the same rows
        assert all(np.array_equal(at_once.values[n], v, equal_nan=True) for n, v in whole_sample.values.items())
        for name, st in whole.columns.items():
            m = merged.columns[name]
            assert (m.count, m.nulls, m.infinite, m.n) == (st.count, st.nulls, st.infinite, st.n), name
            assert m.min == st.min and m.max == st.max
            assert m.mean == pytest.approx(st.mean, rel=1e-12, abs=1e-12)
            assert m.m2 == pytest.approx(st.m2, rel=1e-9)
            assert m.categories == st.categories
        assert merged.counts.keys() == whole.counts.keys() == {"x", "k", "big", "inf"}
        for name, c in whole.counts.items():
            assert np.array_equal(merged.counts[name], c), name


def test_payloads_are_plain_data_and_round_trip(table: pa.Table) -> None:
    sample = Sample.from_table(table, size=500)
    partial = PartialProfile.from_table(table, sample.edges(), {"x": np.array([9.0, 10.0, 11.0])})
    for payload in (sample.to_payload(), partial.to_payload()):
        def plain(v: object) -> bool:
            if isinstance(v, dict):
                return all(isinstance(k, str) and plain(x) for k, x in v.items())
            if isinstance(v, list):
                return all(plain(x) for x in v)
            return v is None or isinstance(v, (str, int, float, bool, np.ndarray))
        assert plain(payload)
    back = PartialProfile.from_payload(partial.to_payload())
    assert back.to_payload().keys() == partial.to_payload().keys()
    assert [c.to_payload() for c in back.columns.values()] == [c.to_payload() for c in partial.columns.values()]
    assert all(np.array_equal(back.ref_counts[n], c) for n, c in partial.ref_counts.items())
    assert back.ref_counts["x"].sum() == partial.columns["x"].n
    assert np.array_equal(Sample.from_payload(sample.to_payload()).keys, sample.keys)
    with pytest.raises(ValidationError, match="raymlops.partial-profile/1"):
        PartialProfile.from_payload({**partial.to_payload(), "format": "raymlops.partial-profile/0"})
    with pytest.raises(ValidationError, match="raymlops.profile-sample/1"):
        Sample.from_payload({"format": "x"})


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
    sample, _ = _parts_of(table, [3_333, 17_000])
    edges = sample.edges()
    _, merged = _parts_of(table, [4096, 8192, 20_000], edges)
    two = finish(merged, edges)
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
    with pytest.raises(ValidationError, match="unknown profile format version 'raymlops.profile/9'"):
        Profile.from_dict({**cur.to_dict(), "format": "raymlops.profile/9"})
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


def test_row_keys_of_every_temporal_type() -> None:
    """date32 and time32 (a CSV's dates, Parquet's millisecond times) hash too: Arrow casts them to
    int32 only, and a date column stopped every snapshot with 'Unsupported cast from date32[day] to int64'."""
    import datetime as dt

    day, t = dt.date(2026, 1, 1), dt.time(12, 30)
    columns = {"date32": pa.array([day, None, day], pa.date32()), "date64": pa.array([day, None, day], pa.date64()),
               "time32": pa.array([t, None, t], pa.time32("ms")), "time64": pa.array([t, None, t], pa.time64("us")),
               "ts": pa.array([dt.datetime(2026, 1, 1), None, dt.datetime(2026, 1, 1)], pa.timestamp("s")),
               "dur": pa.array([5, None, 5], pa.duration("s"))}
    for name, values in columns.items():
        keys = row_keys(pa.table({name: values}))
        assert keys[0] == keys[2] and keys[0] != keys[1], name
        other = row_keys(pa.table({name: values.take([1, 1, 1])}))  # nulls hash alike in every type
        assert other[0] == keys[1], name


# -- the one-pass profile a snapshot computes block by block, against numpy on the whole data ----


def _blocks(table: pa.Table, cuts: list[int]) -> list[pa.Table]:
    bounds = [0, *cuts, table.num_rows]
    return [table.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def test_one_pass_profile_equals_numpy_on_the_whole_data() -> None:
    from raymlops.data.profile import merge_partials, merge_samples, profile_block, scan_block
    from raymlops.stats.bins import fine_edges as direct_edges

    rng = np.random.default_rng(13)
    n = 12_000
    f = rng.normal(3.0, 2.0, n)
    f[rng.random(n) < 0.05] = np.nan
    f[::1500] = np.inf
    f[7::1500] = -np.inf
    f_nulls = rng.random(n) < 0.02
    i = rng.integers(-50, 50, n)
    i_nulls = rng.random(n) < 0.03
    few = rng.integers(0, 4, n)
    words = rng.choice(["red", "green", "blue"], n)
    w_nulls = rng.random(n) < 0.1
    flags = rng.random(n) < 0.4
    b_nulls = rng.random(n) < 0.05
    table = pa.table({
        "f": pa.array(f, mask=f_nulls), "i": pa.array(i, mask=i_nulls), "few": pa.array(few, pa.int8()),
        "s": pa.array(words.tolist(), mask=w_nulls), "b": pa.array(flags, mask=b_nulls),
    })
    # blocks as Ray hands them over, empty ones included
    blocks = _blocks(table, [0, 0, 1_000, 1_000, 5_555, 11_999, n])
    assert [b.num_rows for b in blocks].count(0) == 4
    scans = [scan_block(b, j, 2_000) for j, b in enumerate(blocks)]
    assert np.array_equal(np.concatenate([s["keys"] for s in scans]), row_keys(table))
    sample = merge_samples(s["sample"] for s in scans)
    edges = sample.edges()
    prof = finish(merge_partials(profile_block(b, edges, {}) for b in blocks), edges)

    # the bins: placed on the bottom-2000 rows by content hash of the whole table
    keys = row_keys(table)
    bottom = np.argsort(keys, kind="stable")[:2_000]
    for name in ("f", "i", "few"):
        values = table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)[bottom]
        assert np.array_equal(prof.column(name).edges, direct_edges(values)), name

    assert prof.rows == n
    for name, values, nulls in (("f", f, f_nulls), ("i", i.astype(np.float64), i_nulls),
                                ("few", few.astype(np.float64), np.zeros(n, bool))):
        c = prof.column(name)
        x = np.where(nulls, np.nan, values)
        finite = x[np.isfinite(x)]
        assert c.count == n and c.nulls == int(np.isnan(x).sum()), name
        assert c.infinite == int(np.isinf(x).sum()), name
        assert (c.min, c.max) == (finite.min(), finite.max()), name
        assert c.mean == pytest.approx(finite.mean(), rel=1e-12) and c.std == pytest.approx(finite.std(), rel=1e-9)
        expected = np.bincount(np.searchsorted(c.edges, finite, side="right"), minlength=c.edges.size + 1)
        assert np.array_equal(c.counts, expected), name
    assert prof.column("f").infinite == 16 and prof.column("few").kind == "categorical"
    assert prof.column("few").categories == {v: int((few == v).sum()) for v in range(4)}
    assert prof.column("i").kind == "numeric" and prof.column("i").categories is None  # 100 values
    s = prof.column("s")
    assert s.kind == "categorical" and s.nulls == int(w_nulls.sum())
    assert s.categories == {w: int(((words == w) & ~w_nulls).sum()) for w in ("red", "green", "blue")}
    b = prof.column("b")
    assert b.nulls == int(b_nulls.sum())
    assert b.categories == {True: int((flags & ~b_nulls).sum()), False: int((~flags & ~b_nulls).sum())}
    # and the same as the profile of the whole table in one piece
    whole = profile_table(table, sample_size=2_000)
    for name in table.column_names:
        a, c = whole.column(name).to_dict(), prof.column(name).to_dict()
        for key in ("mean", "std"):
            va, vc = a.pop(key), c.pop(key)
            assert (va is None and vc is None) or va == pytest.approx(vc, rel=1e-12)
        assert a == c, name


def test_profile_of_empty_blocks_only() -> None:
    from raymlops.data.profile import merge_partials, merge_samples, profile_block, scan_block

    table = pa.table({"x": pa.array([], pa.float64()), "s": pa.array([], pa.string())})
    blocks = [table, table.slice(0, 0)]
    edges = merge_samples(scan_block(b, j, 100)["sample"] for j, b in enumerate(blocks)).edges()
    assert edges["x"].size == 0
    prof = finish(merge_partials(profile_block(b, edges, {}) for b in blocks), edges)
    x = prof.column("x")
    assert prof.rows == 0 and x.count == 0 and x.min is None and x.counts.tolist() == [0]
    assert prof.column("s").categories == {}


def test_bounded_block_samples_merge_to_the_same_bottom_k(table: pa.Table) -> None:
    from raymlops.stats.partial import sample_bound

    size = 1_000
    bound = sample_bound(table.num_rows, size)
    assert bound is not None and sample_bound(3 * size, size) is None
    whole = Sample.from_table(table, size=size)
    merged = Sample.empty(size)
    sent = 0
    for block in _blocks(table, [5_000, 5_001, 17_000, 29_999]):
        part = Sample.from_table(block, size=size, below=bound)
        sent += part.keys.size
        merged = merged.merge(part)
    assert merged.complete(table.num_rows) and sent < 3 * size  # about 2 x size rows sent, not 5 x size
    assert np.array_equal(merged.keys, whole.keys)
    assert np.array_equal(merged.values["x"], whole.values["x"], equal_nan=True)
    # identical rows share one key: a bound can leave the sample short, which complete() reports
    same = pa.table({"x": np.full(20_000, 1.5)})
    key = int(row_keys(same.slice(0, 1))[0])
    short = Sample.from_table(same, size=size, below=key)  # every key equals the bound: none below it
    assert short.keys.size == 0 and not short.complete(same.num_rows)
    assert Sample.from_table(same, size=size, below=key + 1).complete(same.num_rows)
