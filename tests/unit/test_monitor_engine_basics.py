"""Reference, streaming state and verdicts of the one monitor engine: the behaviours the removed
numeric-only API (``monitor/core.py``: ``Reference``, ``MonitorState``, ``summarize``) was tested
for, checked on :func:`build_reference`, :class:`StreamState` and :func:`evaluate` (pure, no Ray)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import raymlops.monitor as monitor
from raymlops.config import MonitorConfig
from raymlops.exceptions import ValidationError
from raymlops.monitor import Monitor, MonitorReference, StreamState, build_reference, evaluate


def _table(rng: np.random.Generator, n: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    """Three features; ``shift`` moves every feature by that many of its standard deviations."""
    return {
        "age": rng.normal(40.0, 10.0, size=n) + 10.0 * shift,
        "income": rng.lognormal(10.0, 0.5, size=n) * np.exp(0.5 * shift),
        "score": rng.uniform(0.0, 1.0, size=n) + shift / np.sqrt(12.0),
    }


@pytest.fixture(scope="module")
def reference() -> MonitorReference:
    return build_reference(_table(np.random.default_rng(0), 20_000))


def _state(reference: MonitorReference, batch: dict[str, np.ndarray]) -> StreamState:
    state = StreamState(reference)
    state.update(batch)
    return state


# ---------------------------------------------------------------------------------- reference


def test_reference_json_round_trip_and_digest(reference: MonitorReference) -> None:
    text = json.dumps(reference.to_dict())  # would raise on numpy arrays or numpy scalars
    back = MonitorReference.from_dict(json.loads(text))
    assert back.same_as(reference) and back.names == reference.names
    np.testing.assert_array_equal(back.counts, reference.counts)
    changed = json.loads(text)
    changed["columns"][0]["mean"] += 1.0
    assert not MonitorReference.from_dict(changed).same_as(reference)


def test_reference_from_dict_rejects_malformed(reference: MonitorReference) -> None:
    with pytest.raises(ValidationError, match="format"):
        MonitorReference.from_dict({"columns": []})
    data = reference.to_dict()
    del data["columns"][0]["edges"]
    with pytest.raises(ValidationError, match="malformed"):
        MonitorReference.from_dict(data)
    data = reference.to_dict()
    data["counts"] = [row[:-1] for row in data["counts"]]
    with pytest.raises(ValidationError, match="coarse must map|counts must have shape"):
        MonitorReference.from_dict(data)


def test_reference_is_immutable(reference: MonitorReference) -> None:
    with pytest.raises(ValueError, match="read-only"):
        reference.counts[0, 0] = 0
    with pytest.raises(ValueError, match="read-only"):
        reference.column("age").edges[0] = 0.0
    with pytest.raises(AttributeError):
        reference.column("age").mean = 0.0  # type: ignore[misc]


def test_reference_counts_moments_and_missing() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(5.0, 2.0, size=5_000)
    values[:100] = np.nan
    ref = build_reference({"x": values}, n_bins=8)
    col, finite = ref.column("x"), values[100:]
    counts = ref.column_counts("x")
    assert counts.sum() == 5_000 and counts[col.missing_bucket] == 100
    assert col.mean == pytest.approx(finite.mean()) and col.std == pytest.approx(finite.std())
    assert col.ref_min == finite.min() and col.ref_max == finite.max()


@pytest.mark.parametrize(
    ("columns", "match"),
    [
        ({}, "non-empty mapping"),
        ({"x": [1.0, 2.0], "y": [1.0]}, "same length"),
        ({"x": [np.nan, np.nan]}, "column 'x' has no finite values"),
        ({"x": np.ones((2, 2))}, "1-D"),
        ({"x": np.empty(0)}, "no rows"),
    ],
)
def test_build_reference_rejects_bad_columns(columns: dict, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        build_reference(columns)


def test_build_reference_rejects_bad_args() -> None:
    with pytest.raises(ValidationError, match="n_bins"):
        build_reference({"x": [1.0, 2.0]}, n_bins=1)
    with pytest.raises(ValidationError, match="column 'z' is not in the reference data"):
        build_reference({"x": [1.0, 2.0]}, categorical=["z"])


# ---------------------------------------------------------------------------------- state


def test_zero_row_batch_is_a_no_op(reference: MonitorReference) -> None:
    state = StreamState(reference)
    assert state.update({name: np.empty(0) for name in reference.names}) == 0
    assert state.rows == 0 and state.column_counts("age").sum() == 0 and state.moments("age").count == 0


def test_update_counts_moments_and_missing(reference: MonitorReference) -> None:
    batch = _table(np.random.default_rng(2), 700)
    batch["age"][:5] = np.nan
    state = _state(reference, batch)
    assert state.rows == 700 and state.column_counts("age")[reference.column("age").missing_bucket] == 5
    for name, values in batch.items():
        col = reference.column(name)
        np.testing.assert_array_equal(state.column_counts(name), np.bincount(col.bucketize_exact(values),
                                                                             minlength=col.n_buckets))
        finite = values[np.isfinite(values)]
        moments = state.moments(name)
        assert moments.count == finite.size
        assert moments.mean == pytest.approx(finite.mean(), rel=1e-12)
        assert moments.std == pytest.approx(finite.std(), rel=1e-9)


def test_bad_values_leave_the_state_unchanged_and_unknown_columns_are_named(reference: MonitorReference) -> None:
    state = _state(reference, _table(np.random.default_rng(4), 50))
    before = state.copy()
    bad = _table(np.random.default_rng(5), 50)
    bad["score"] = np.array(["x"] * 50)
    with pytest.raises(ValidationError, match="column 'score' is numeric in the reference"):
        state.update(bad)
    assert state == before and state.rows == 50
    with pytest.raises(ValidationError, match="no column 'height'"):
        state.column_counts("height")


def test_running_sums_are_exact_whatever_the_merge_order() -> None:
    """Plain float accumulation gives 1.0 sequentially and 0.0 merged here; the true sum is 2."""
    ref = build_reference({"x": np.linspace(-1.0, 1.0, 101)})
    batches = [np.array([v]) for v in (1e16, 1.0, -1e16, 1.0)]
    single = StreamState(ref)
    for batch in batches:
        single.update({"x": batch})
    left, right = StreamState(ref), StreamState(ref)
    for batch in batches[:2]:
        left.update({"x": batch})
    for batch in batches[2:]:
        right.update({"x": batch})
    assert single.moments("x").mean * 4 == 2.0
    assert left.merge(right) == right.merge(left) == single
    assert left.merge(right).moments("x").mean == single.moments("x").mean


def test_merge_does_not_change_its_inputs(reference: MonitorReference) -> None:
    rng = np.random.default_rng(7)
    a, b = _state(reference, _table(rng, 100)), _state(reference, _table(rng, 200))
    a_counts, a_copy = a.counts.copy(), a.copy()
    merged = a.merge(b)
    merged.update(_table(rng, 50))
    assert (a.rows, b.rows, merged.rows) == (100, 200, 350)
    np.testing.assert_array_equal(a.counts, a_counts)
    assert a == a_copy


def test_merge_rejects_incompatible_states(reference: MonitorReference) -> None:
    other = build_reference({"age": np.arange(100.0)})
    with pytest.raises(ValidationError, match="different references"):
        StreamState(reference).merge(StreamState(other))
    with pytest.raises(ValidationError, match="StreamState"):
        StreamState(reference).merge(reference)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="MonitorReference"):
        StreamState({"age": [1.0]})  # type: ignore[arg-type]
    # an equal reference read back from JSON is the same reference
    copy = MonitorReference.from_dict(json.loads(json.dumps(reference.to_dict())))
    assert StreamState(reference).merge(StreamState(copy)).rows == 0


# ---------------------------------------------------------------------------------- verdicts


@pytest.mark.parametrize("rows", [500, 2_000])
def test_no_drift_on_data_from_the_reference_distribution(reference: MonitorReference, rows: int) -> None:
    verdict = evaluate(_state(reference, _table(np.random.default_rng(100 + rows), rows)), MonitorConfig())
    assert verdict.overall.drifted == () and not verdict.dataset_drift
    assert all(c.adjusted_p_value > 0.05 and c.psi < 0.1 for c in verdict.overall.columns)


@pytest.mark.parametrize("rows", [500, 2_000])
def test_drift_flagged_for_one_std_mean_shift(reference: MonitorReference, rows: int) -> None:
    verdict = evaluate(_state(reference, _table(np.random.default_rng(200 + rows), rows, shift=1.0)), MonitorConfig())
    assert verdict.overall.drifted == ("age", "income", "score")
    assert verdict.overall.share_drifted == 1.0 and verdict.dataset_drift
    assert all(c.adjusted_p_value < 1e-6 and c.psi > 0.2 for c in verdict.overall.columns)


def test_partial_drift_and_dataset_share(reference: MonitorReference) -> None:
    batch = _table(np.random.default_rng(9), 3_000)
    batch["age"] = batch["age"] + 10.0  # one of three features shifts by one std
    state = _state(reference, batch)
    verdict = evaluate(state, MonitorConfig(correction="bh", dataset_rule="share"))
    assert verdict.overall.drifted == ("age",) and verdict.correction == "bh"
    assert verdict.overall.share_drifted == pytest.approx(1 / 3)
    assert not verdict.dataset_drift  # 1/3 < 0.5
    assert evaluate(state, MonitorConfig(dataset_rule="share", dataset_drift_share=0.3)).dataset_drift
    assert evaluate(state, MonitorConfig(dataset_rule="any")).dataset_drift


def test_bonferroni_adjustment_is_applied_across_features(reference: MonitorReference) -> None:
    verdict = evaluate(_state(reference, _table(np.random.default_rng(10), 400)), MonitorConfig())
    for c in verdict.overall.columns:
        assert c.adjusted_p_value == pytest.approx(min(1.0, 3 * c.p_value))


def test_too_few_rows_reports_p_values_but_flags_nothing(reference: MonitorReference) -> None:
    state = _state(reference, _table(np.random.default_rng(11), 20, shift=3.0))
    verdict = evaluate(state, MonitorConfig(min_rows=30))
    assert all(c.adjusted_p_value < 0.05 for c in verdict.overall.columns)  # would be drift...
    assert verdict.overall.drifted == () and not verdict.dataset_drift  # ...but too few rows
    assert evaluate(state, MonitorConfig(min_rows=20)).dataset_drift


def test_all_missing_feature_is_an_anomaly_alert(reference: MonitorReference) -> None:
    batch = _table(np.random.default_rng(12), 200)
    batch["income"] = np.full(200, np.nan)
    mon = Monitor(reference, MonitorConfig(window_rows=200))
    alerts = mon.ingest(batch)
    assert "anomaly:missing:income" in {a.key for a in alerts}
    income = mon.history[-1].verdict.overall.column("income")
    assert income.missing_rate == 1.0 and not mon.history[-1].verdict.overall.column("age").drift


def test_public_api_is_the_one_engine() -> None:
    assert {"Monitor", "MonitorReference", "StreamState", "build_reference", "evaluate"} <= set(monitor.__all__)
    gone = {"Reference", "MonitorState", "summarize", "FeatureReference", "DriftSummary", "FeatureDrift"}
    assert not gone & set(monitor.__all__) and not any(hasattr(monitor, name) for name in gone)
    assert all(hasattr(monitor, name) for name in monitor.__all__)


def test_a_constant_reference_column_has_no_spread_and_its_distance_stays_in_units() -> None:
    """numpy's std of 20,000 copies of 0.1 is 1.4e-17, not 0: as the reference's spread it divided the
    Wasserstein distance of a window 0.05 away into 3.6e15. A constant has spread 0 (the distance is
    then divided by 1), in the monitor's reference and in a snapshot's profile."""
    import pyarrow as pa

    from raymlops.stats.profile import profile_table

    rng = np.random.default_rng(5)
    ref = build_reference({"flat": np.full(20_000, 0.1), "age": rng.normal(40.0, 10.0, 20_000)})
    assert ref.columns[0].std == 0.0
    window = {"flat": np.full(1_000, 0.15), "age": rng.normal(40.0, 10.0, 1_000)}
    (flat, _) = evaluate(_state(ref, window), MonitorConfig()).overall.columns
    assert flat.wasserstein == pytest.approx(0.05, rel=0.05)
    assert profile_table(pa.table({"flat": np.full(5_000, 0.1)})).column("flat").std == 0.0


def test_integer_columns_on_a_few_values_are_tested_on_their_support_as_offline() -> None:
    """Streaming, as the offline check: integers on at most monitor.discrete_max_values values get a
    bucket per value and chi-square on that support on small windows (the same statistic and p-value
    as monitor check's), the numeric distance on large ones; more values, or fractions, stay KS."""
    from raymlops.monitor.stacked import evaluate_stacked
    from raymlops.monitor.verdicts import _evaluate_per_column
    from raymlops.stats.exact import compare

    rng = np.random.default_rng(3)
    ref = {"visits": rng.poisson(3, 20_000).astype(float), "age": rng.integers(18, 90, 20_000).astype(float),
           "x": rng.normal(size=20_000)}
    reference = build_reference(ref)
    visits, age, x = reference.columns
    assert visits.discrete and not age.discrete and not x.discrete  # age: 72 values (> 50)
    np.testing.assert_array_equal(visits.edges[:-1], np.unique(ref["visits"]))
    assert visits.bucket_labels()[1:4] == ["0", "1", "2"]
    back = MonitorReference.from_dict(json.loads(json.dumps(reference.to_dict())))
    assert back.columns[0].discrete and back.same_as(reference)
    assert not build_reference(ref, discrete_max_values=0).columns[0].discrete

    cur = {"visits": np.minimum(rng.poisson(3.3, 800), ref["visits"].max()).astype(float),
           "age": rng.integers(18, 90, 800).astype(float), "x": rng.normal(size=800)}
    state = _state(reference, cur)
    live = {c.column: c for c in evaluate(state, MonitorConfig()).overall.columns}
    offline = {t.column: t for t in compare(ref, cur, randomise=False)}  # the live monitor: asymptotic chi-square
    assert live["visits"].test == "chi2" and offline["visits"].kind == "discrete"
    assert live["visits"].statistic == pytest.approx(offline["visits"].statistic, rel=1e-12)
    assert live["visits"].p_value == pytest.approx(offline["visits"].p_value, rel=1e-9)
    assert live["visits"].drift and live["age"].test == "ks" and live["x"].test == "ks"
    # the per-column reference implementation agrees with the stacked pass
    per_column = {c.column: c for c in _evaluate_per_column(state, MonitorConfig(), reference).overall.columns}
    stacked = {c.column: c for c in evaluate_stacked(state, MonitorConfig(), reference).overall.columns}
    for name in ("visits", "age", "x"):
        assert per_column[name].test == stacked[name].test, name
        assert per_column[name].p_value == pytest.approx(stacked[name].p_value, rel=1e-9), name
    big = _state(reference, {k: np.resize(v, 5_000) for k, v in cur.items()})
    assert {c.column: c.test for c in evaluate(big, MonitorConfig()).overall.columns}["visits"] == "wasserstein"


@pytest.mark.parametrize(("rule", "threshold"), [("any", 1 / 4), ("share", 0.5)])
def test_a_dataset_drift_alerts_threshold_is_its_rules(rule: str, threshold: float) -> None:
    """value >= threshold for every alert raised: under ``any`` one feature of four is the rule's
    share (the alert said 0.5, ``dataset_drift_share``, which only ``share`` uses, beside 0.25)."""
    rng = np.random.default_rng(0)
    ref = build_reference({f"f{i}": rng.normal(size=3000) for i in range(4)})
    m = Monitor(ref, MonitorConfig(window_rows=500, dataset_rule=rule, dataset_drift_share=0.5))
    cur = {f"f{i}": rng.normal(size=500) for i in range(4)}
    cur["f0"] = cur["f0"] + 3.0
    if rule == "share":
        cur["f1"] = cur["f1"] + 3.0
    (alert,) = [a for a in m.ingest(cur) if a.kind == "dataset_drift"]
    assert alert.threshold == threshold and alert.value >= alert.threshold, alert
    assert alert.details["rule"] == rule
