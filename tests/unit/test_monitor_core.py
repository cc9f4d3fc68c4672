"""The streaming monitor core: Reference, MonitorState and summarize (pure numpy/scipy, no Ray)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import raymlops.monitor as monitor
from raymlops.exceptions import NotFittedError, NotFound, ValidationError
from raymlops.monitor import (
    CHI2_MIN_ROWS,
    DriftSummary,
    FeatureReference,
    MonitorState,
    Reference,
    summarize,
)
from raymlops.stats import bin_counts


def _table(rng: np.random.Generator, n: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    """Three features; ``shift`` moves every feature by that many of its standard deviations."""
    return {
        "age": rng.normal(40.0, 10.0, size=n) + 10.0 * shift,
        "income": rng.lognormal(10.0, 0.5, size=n) * np.exp(0.5 * shift),  # std of log-income is 0.5
        "score": rng.uniform(0.0, 1.0, size=n) + shift / np.sqrt(12.0),
    }


@pytest.fixture(scope="module")
def reference() -> Reference:
    return Reference.from_columns(_table(np.random.default_rng(0), 20_000), n_bins=10, seed=0)


# ---------------------------------------------------------------------------------- Reference


def test_reference_from_columns_learns_bins_moments_and_sample() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(5.0, 2.0, size=5_000)
    values[:100] = np.nan
    ref = Reference.from_columns({"x": values}, n_bins=8, seed=3)
    feature = ref.features["x"]
    finite = values[100:]
    assert ref.feature_names == ("x",)
    assert feature.edges.size == 7
    np.testing.assert_array_equal(feature.ref_counts, bin_counts(values, feature.edges))
    assert feature.ref_counts[-1] == 100 and feature.rows == 5_000
    assert np.all(np.abs(feature.ref_counts[:-1] - 4_900 / 8) <= 1)  # quantile bins: equal mass
    assert feature.mean == pytest.approx(finite.mean()) and feature.std == pytest.approx(finite.std())
    assert feature.sample.size == 2_000
    assert np.isin(feature.sample, finite).all() and np.unique(feature.sample).size == 2_000


def test_reference_sample_is_seeded() -> None:
    cols = {"x": np.arange(10_000.0)}
    a = Reference.from_columns(cols, seed=7).features["x"].sample
    b = Reference.from_columns(cols, seed=7).features["x"].sample
    c = Reference.from_columns(cols, seed=8).features["x"].sample
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # a small column keeps all its finite values
    small = Reference.from_columns({"x": [3.0, 1.0, np.nan, 2.0]}).features["x"]
    assert sorted(small.sample.tolist()) == [1.0, 2.0, 3.0]


def test_reference_json_round_trip(reference: Reference) -> None:
    text = json.dumps(reference.to_dict())  # would raise on numpy arrays or numpy scalars
    back = Reference.from_dict(json.loads(text))
    assert back == reference
    assert back.feature_names == reference.feature_names
    changed = json.loads(text)
    changed["features"][0]["mean"] += 1.0
    assert Reference.from_dict(changed) != reference


def test_feature_reference_is_immutable(reference: Reference) -> None:
    feature = reference.features["age"]
    with pytest.raises(ValueError, match="read-only"):
        feature.ref_counts[0] = 0
    with pytest.raises(AttributeError):
        feature.mean = 0.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("columns", "match"),
    [
        ({}, "at least one feature"),
        ({"x": np.array(["a", "b"])}, "column 'x' must be numeric"),
        ({"x": [1.0, 2.0], "y": [1.0]}, "same length"),
        ({"x": [np.nan, None]}, "column 'x' has no finite values"),
        ({"x": np.ones((2, 2))}, "1-dimensional"),
    ],
)
def test_reference_from_columns_rejects_bad_columns(columns: dict, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        Reference.from_columns(columns)


def test_reference_from_columns_rejects_bad_args() -> None:
    with pytest.raises(ValidationError, match="n_bins"):
        Reference.from_columns({"x": [1.0, 2.0]}, n_bins=0)
    with pytest.raises(ValidationError, match="seed"):
        Reference.from_columns({"x": [1.0, 2.0]}, seed=-1)


def test_reference_from_dict_rejects_malformed(reference: Reference) -> None:
    with pytest.raises(ValidationError, match="format"):
        Reference.from_dict({"features": []})
    data = reference.to_dict()
    del data["features"][0]["edges"]
    with pytest.raises(ValidationError, match="malformed"):
        Reference.from_dict(data)
    data = reference.to_dict()
    data["features"][1]["ref_counts"] = data["features"][1]["ref_counts"][:-1]
    with pytest.raises(ValidationError, match="ref_counts"):
        Reference.from_dict(data)


# ---------------------------------------------------------------------------------- MonitorState


def test_update_counts_moments_and_missing(reference: Reference) -> None:
    rng = np.random.default_rng(2)
    batch = _table(rng, 700)
    batch["age"][:5] = np.nan
    state = MonitorState(reference)
    state.update(batch)
    assert state.rows == 700
    for name, values in batch.items():
        np.testing.assert_array_equal(state.counts(name), bin_counts(values, reference.features[name].edges))
        finite = values[np.isfinite(values)]
        moments = state.moments(name)
        assert moments.count == finite.size
        assert moments.mean == pytest.approx(finite.mean(), rel=1e-12)
        assert moments.std == pytest.approx(finite.std(), rel=1e-9)
    assert state.counts("age")[-1] == 5
    # below its capacity the reservoir holds every finite value
    assert sorted(state.reservoir("age").tolist()) == sorted(batch["age"][5:].tolist())


def test_zero_row_batch_is_a_no_op(reference: Reference) -> None:
    state = MonitorState(reference)
    state.update({name: np.empty(0) for name in reference.features})
    assert state.rows == 0 and state.counts("age").sum() == 0 and state.moments("age").count == 0


def test_mismatched_columns_name_missing_and_extra(reference: Reference) -> None:
    state = MonitorState(reference)
    batch = _table(np.random.default_rng(3), 10)
    del batch["income"]
    batch["incme"] = np.ones(10)
    with pytest.raises(ValidationError, match=r"missing \['income'\], extra \['incme'\]"):
        state.update(batch)
    assert state.rows == 0


def test_bad_batch_leaves_state_unchanged(reference: Reference) -> None:
    state = MonitorState(reference)
    good = _table(np.random.default_rng(4), 50)
    state.update(good)
    before = {name: state.counts(name) for name in reference.features}
    bad = _table(np.random.default_rng(5), 50)
    bad["score"] = np.array(["x"] * 50)
    with pytest.raises(ValidationError, match="column 'score' must be numeric"):
        state.update(bad)
    ragged = _table(np.random.default_rng(5), 50)
    ragged["age"] = ragged["age"][:-1]
    with pytest.raises(ValidationError, match="same length"):
        state.update(ragged)
    assert state.rows == 50
    for name in reference.features:
        np.testing.assert_array_equal(state.counts(name), before[name])


def test_merge_equals_single_state_with_all_batches(reference: Reference) -> None:
    rng = np.random.default_rng(6)
    batches = [_table(rng, n) for n in (300, 1_234, 57, 2_000, 911)]
    single = MonitorState(reference)
    for batch in batches:
        single.update(batch)
    left, right = MonitorState(reference, seed=1), MonitorState(reference, seed=2)
    for batch in batches[:2]:
        left.update(batch)
    for batch in batches[2:]:
        right.update(batch)
    merged = left.merge(right)
    assert merged.rows == single.rows == sum(b["age"].size for b in batches)
    for name in reference.features:
        np.testing.assert_array_equal(merged.counts(name), single.counts(name))
        assert merged.moments(name) == single.moments(name)  # exactly, not approximately
        assert right.merge(left).moments(name) == single.moments(name)
        everything = np.concatenate([b[name] for b in batches])
        assert single.moments(name).sum == pytest.approx(everything.sum(), rel=1e-12)
        sample = merged.reservoir(name)
        assert sample.size == 1_000 and np.isin(sample, everything).all()
        assert np.unique(sample).size == sample.size  # drawn without replacement


def test_running_sums_are_exact_whatever_the_merge_order() -> None:
    """Plain float accumulation gives 1.0 sequentially and 0.0 merged here; the true sum is 2."""
    ref = Reference.from_columns({"x": np.linspace(-1.0, 1.0, 101)})
    batches = [np.array([v]) for v in (1e16, 1.0, -1e16, 1.0)]
    single = MonitorState(ref)
    for batch in batches:
        single.update({"x": batch})
    left, right = MonitorState(ref), MonitorState(ref)
    for batch in batches[:2]:
        left.update({"x": batch})
    for batch in batches[2:]:
        right.update({"x": batch})
    assert single.moments("x").sum == 2.0
    assert left.merge(right).moments("x") == right.merge(left).moments("x") == single.moments("x")
    assert single.moments("x").sum_sq == 2e32 + 2.0  # rounds to 2e32, but consistently


def test_merge_does_not_change_its_inputs(reference: Reference) -> None:
    rng = np.random.default_rng(7)
    a, b = MonitorState(reference), MonitorState(reference)
    a.update(_table(rng, 100))
    b.update(_table(rng, 200))
    a_counts, a_sample = a.counts("age"), a.reservoir("age")
    merged = a.merge(b)
    merged.update(_table(rng, 50))
    assert (a.rows, b.rows, merged.rows) == (100, 200, 350)
    np.testing.assert_array_equal(a.counts("age"), a_counts)
    np.testing.assert_array_equal(a.reservoir("age"), a_sample)


def test_merge_reservoir_weights_each_side_by_its_rows(reference: Reference) -> None:
    """9,000 rows of 0 merged with 1,000 rows of 1: about 10% of the sample must be 1s
    (a naive half-and-half combination of the two reservoirs would give 50%)."""
    a, b = MonitorState(reference, seed=11), MonitorState(reference, seed=12)
    a.update({name: np.zeros(9_000) for name in reference.features})
    b.update({name: np.ones(1_000) for name in reference.features})
    sample = a.merge(b).reservoir("score")
    assert sample.size == 1_000
    assert 60 <= int(sample.sum()) <= 140  # hypergeometric: mean 100, sd about 9


def test_merge_rejects_incompatible_states(reference: Reference) -> None:
    other_ref = Reference.from_columns({"age": np.arange(100.0)})
    with pytest.raises(ValidationError, match="different references"):
        MonitorState(reference).merge(MonitorState(other_ref))
    with pytest.raises(ValidationError, match="reservoir sizes"):
        MonitorState(reference).merge(MonitorState(reference, reservoir_size=10))
    with pytest.raises(ValidationError, match="MonitorState"):
        MonitorState(reference).merge(reference)  # type: ignore[arg-type]
    # an equal reference read back from JSON is the same reference
    copy = Reference.from_dict(json.loads(json.dumps(reference.to_dict())))
    assert MonitorState(reference).merge(MonitorState(copy)).rows == 0


def test_reservoir_is_bounded_uniform_and_seeded(reference: Reference) -> None:
    state = MonitorState(reference, reservoir_size=1_000, seed=5)
    stream = np.arange(50_000.0)
    for chunk in np.split(stream, 50):
        state.update({name: chunk for name in reference.features})
    sample = state.reservoir("age")
    assert state.rows == 50_000 and sample.size == 1_000
    assert np.unique(sample).size == 1_000
    # uniform over the whole stream: mean near 25,000 (sd about 456), both halves represented
    assert abs(sample.mean() - 24_999.5) < 2_000
    assert 400 < int((sample >= 25_000).sum()) < 600
    again = MonitorState(reference, reservoir_size=1_000, seed=5)
    for chunk in np.split(stream, 50):
        again.update({name: chunk for name in reference.features})
    np.testing.assert_array_equal(again.reservoir("age"), sample)


def test_state_memory_does_not_grow_with_rows(reference: Reference) -> None:
    state = MonitorState(reference, reservoir_size=100)
    rng = np.random.default_rng(8)

    def footprint() -> int:
        accs = state._features.values()
        return sum(a.counts.nbytes + a.reservoir.nbytes + len(a.total._partials) * 8 for a in accs)

    state.update(_table(rng, 1_000))
    first = footprint()
    for _ in range(30):
        state.update(_table(rng, 1_000))
    assert state.rows == 31_000
    assert footprint() <= first + 3 * 64 * 8  # at most a few partials more, never per-row storage
    assert all(state.reservoir(name).size == 100 for name in reference.features)


def test_state_rejects_bad_args_and_unknown_features(reference: Reference) -> None:
    with pytest.raises(ValidationError, match="reservoir_size"):
        MonitorState(reference, reservoir_size=0)
    with pytest.raises(ValidationError, match="Reference"):
        MonitorState({"age": [1.0]})  # type: ignore[arg-type]
    with pytest.raises(NotFound, match="no feature 'height'"):
        MonitorState(reference).counts("height")
    with pytest.raises(ValidationError, match="mapping"):
        MonitorState(reference).update([1.0, 2.0])  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- summarize


@pytest.mark.parametrize("rows", [500, 2_000])
def test_no_drift_on_data_from_the_reference_distribution(reference: Reference, rows: int) -> None:
    state = MonitorState(reference)
    state.update(_table(np.random.default_rng(100 + rows), rows))
    summary = summarize(reference, state)
    expected_test = "ks" if rows < CHI2_MIN_ROWS else "chi2"
    assert [f.test for f in summary.features] == [expected_test] * 3
    assert summary.drifted_features == () and not summary.dataset_drift
    assert all(f.adjusted_p_value > 0.05 and f.psi < 0.1 for f in summary.features)


@pytest.mark.parametrize("rows", [500, 2_000])
def test_drift_flagged_for_one_std_mean_shift(reference: Reference, rows: int) -> None:
    state = MonitorState(reference)
    state.update(_table(np.random.default_rng(200 + rows), rows, shift=1.0))
    summary = summarize(reference, state)
    assert summary.drifted_features == ("age", "income", "score")
    assert summary.share_drifted == 1.0 and summary.dataset_drift
    assert all(f.adjusted_p_value < 1e-6 and f.psi > 0.2 for f in summary.features)


def test_partial_drift_and_dataset_share(reference: Reference) -> None:
    batch = _table(np.random.default_rng(9), 3_000)
    batch["age"] = batch["age"] + 10.0  # one of three features shifts by one std
    state = MonitorState(reference)
    state.update(batch)
    summary = summarize(reference, state, correction="bh")
    assert summary.drifted_features == ("age",) and summary.method == "bh"
    assert summary.share_drifted == pytest.approx(1 / 3)
    assert not summary.dataset_drift  # 1/3 < 0.5
    assert summarize(reference, state, dataset_drift_share=0.3).dataset_drift


def test_bonferroni_adjustment_is_applied_across_features(reference: Reference) -> None:
    state = MonitorState(reference)
    state.update(_table(np.random.default_rng(10), 400))
    summary = summarize(reference, state)
    for f in summary.features:
        assert f.adjusted_p_value == pytest.approx(min(1.0, 3 * f.p_value))


def test_too_few_rows_reports_p_values_but_flags_nothing(reference: Reference) -> None:
    state = MonitorState(reference)
    state.update(_table(np.random.default_rng(11), 20, shift=3.0))
    summary = summarize(reference, state, min_rows=30)
    assert all(f.adjusted_p_value < 0.05 for f in summary.features)  # would be drift...
    assert summary.drifted_features == () and not summary.dataset_drift  # ...but too few rows
    assert summarize(reference, state, min_rows=20).dataset_drift


def test_all_missing_feature_falls_back_to_chi2_on_the_missing_bucket(reference: Reference) -> None:
    batch = _table(np.random.default_rng(12), 200)
    batch["income"] = np.full(200, np.nan)
    state = MonitorState(reference)
    state.update(batch)
    by_name = {f.feature: f for f in summarize(reference, state).features}
    assert by_name["income"].test == "chi2" and by_name["income"].drifted
    assert by_name["age"].test == "ks" and not by_name["age"].drifted


def test_summary_to_dict_is_json(reference: Reference) -> None:
    state = MonitorState(reference)
    state.update(_table(np.random.default_rng(13), 100, shift=1.0))
    summary = summarize(reference, state)
    data = json.loads(json.dumps(summary.to_dict()))
    assert data["rows"] == 100 and data["method"] == "bonferroni"
    assert data["drifted_features"] == list(summary.drifted_features)
    assert [f["feature"] for f in data["features"]] == ["age", "income", "score"]
    assert set(data["features"][0]) == {"feature", "test", "statistic", "p_value", "adjusted_p_value", "psi", "drifted"}
    assert isinstance(summary, DriftSummary)


def test_summarize_before_any_data_is_a_clear_error(reference: Reference) -> None:
    with pytest.raises(NotFittedError, match=r"no rows yet; call update\(\)"):
        summarize(reference, MonitorState(reference))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"alpha": 0.0}, r"alpha must be a number in \(0, 1\)"),
        ({"alpha": 1.5}, "alpha"),
        ({"correction": "sidak"}, "correction must be one of bonferroni, "),
        ({"dataset_drift_share": 0.0}, "dataset_drift_share"),
        ({"min_rows": -1}, "min_rows"),
    ],
)
def test_summarize_rejects_bad_args(reference: Reference, kwargs: dict, match: str) -> None:
    state = MonitorState(reference)
    state.update(_table(np.random.default_rng(14), 50))
    with pytest.raises(ValidationError, match=match):
        summarize(reference, state, **kwargs)


def test_summarize_rejects_state_of_another_reference(reference: Reference) -> None:
    other = Reference.from_columns(_table(np.random.default_rng(15), 1_000))
    state = MonitorState(other)
    state.update(_table(np.random.default_rng(16), 50))
    with pytest.raises(ValidationError, match="different reference"):
        summarize(reference, state)


def test_public_api_is_explicit() -> None:
    assert set(monitor.__all__) >= {
        "FeatureReference",
        "Reference",
        "MonitorState",
        "FeatureDrift",
        "DriftSummary",
        "summarize",
    }
    assert all(hasattr(monitor, name) for name in monitor.__all__)
    assert FeatureReference.__dataclass_params__.frozen  # type: ignore[attr-defined]
