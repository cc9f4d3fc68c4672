"""The stacked window verdicts (all columns and slices in whole-array passes) give the same
verdicts as the per-column code they replaced (kept in ``raymlops.monitor.verdicts`` as the
reference implementation, and used for a single column): every float field equal to 1e-9
relative, every test, drift flag, band and alert exactly."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest

from raymlops.config import MonitorConfig
from raymlops.monitor import Monitor, StreamState, build_reference, evaluate
from raymlops.monitor import monitor as monitor_module
from raymlops.monitor.reference import PREDICTION, MonitorReference
from raymlops.monitor.stacked import evaluate_stacked
from raymlops.monitor.verdicts import WindowVerdict, _evaluate_per_column
from raymlops.stats.drift import compare_rows, ks_p_values


def evaluate_per_column(state: StreamState, cfg: MonitorConfig, reference: MonitorReference | None = None
                        ) -> WindowVerdict:
    return _evaluate_per_column(state, cfg, reference or state.reference)


def check(state: StreamState, cfg: MonitorConfig, path: str = "") -> WindowVerdict:
    """The stacked path and ``evaluate`` agree with the per-column one; returns the verdict."""
    expected = evaluate_per_column(state, cfg)
    assert_same(expected, evaluate_stacked(state, cfg, state.reference), f"{path} stacked")
    verdict = evaluate(state, cfg)
    assert_same(expected, verdict, f"{path} evaluate")
    return verdict


# ------------------------------------------------------------------------------ comparison


def assert_same(old: Any, new: Any, path: str = "") -> None:
    """Equal field by field: floats to 1e-9 relative (NaN equals NaN), everything else exactly."""
    if dataclasses.is_dataclass(old) and not isinstance(old, type):
        assert type(old) is type(new), path
        for f in dataclasses.fields(old):
            assert_same(getattr(old, f.name), getattr(new, f.name), f"{path}.{f.name}")
    elif isinstance(old, dict):
        assert old.keys() == new.keys(), path
        for k in old:
            assert_same(old[k], new[k], f"{path}[{k!r}]")
    elif isinstance(old, (list, tuple)):
        assert len(old) == len(new), path
        for i, (a, b) in enumerate(zip(old, new, strict=True)):
            assert_same(a, b, f"{path}[{i}]")
    elif isinstance(old, float):
        assert isinstance(new, float), f"{path}: {new!r} is not a float"
        assert (math.isnan(old) and math.isnan(new)) or old == new or math.isclose(old, new, rel_tol=1e-9), \
            f"{path}: {old!r} != {new!r}"
    else:
        assert type(old) is type(new) and old == new, f"{path}: {old!r} != {new!r}"


# ------------------------------------------------------------------------------ data


def table(rng: np.random.Generator, n: int, shift: float = 0.0, segments: tuple[str, ...] = ("s0", "s1", "s2", "s3"),
          colors: tuple[str, ...] = ("red", "green", "blue")) -> dict[str, np.ndarray]:
    """Normal, heavy-tailed (Cauchy), constant, integer and categorical columns with NaN and +-inf."""
    x = rng.normal(shift, 1.0 + shift, n)
    heavy = rng.standard_cauchy(n) * (1.0 + shift)
    ints = rng.integers(0, 4 + int(3 * shift), n).astype(np.float64)
    const = np.full(n, 2.5)
    if shift:
        const[: n // 4] = 3.5
    for col, rate in ((x, 0.03), (heavy, 0.05), (ints, 0.02 + 0.2 * shift)):
        col[rng.random(n) < rate] = np.nan
    x[rng.random(n) < 0.01] = np.inf
    heavy[rng.random(n) < 0.01] = -np.inf
    color = np.array(colors, dtype=object)[rng.integers(0, len(colors), n)]
    many = np.array([f"k{i}" for i in range(12)], dtype=object)[rng.integers(0, 12, n)]
    seg = np.array(segments, dtype=object)[rng.integers(0, len(segments), n)]
    return {"x": x, "heavy": heavy, "ints": ints, "const": const, "color": color, "many": many, "seg": seg}


@pytest.fixture(scope="module")
def sliced_reference() -> MonitorReference:
    data = table(np.random.default_rng(0), 4_000)
    data[PREDICTION] = (data["ints"] > 1).astype(np.float64)
    # "many" keeps 8 of its 12 categories: incomplete, so "other" is not "unseen"
    return build_reference(data, categorical=["color", "many"], slice_columns=["seg"], max_categories=8)


@pytest.fixture(scope="module")
def plain_reference() -> MonitorReference:
    data = table(np.random.default_rng(1), 3_000)
    data.pop("seg")
    return build_reference(data, categorical=["color"], max_categories=8)


def state_of(reference: MonitorReference, data: dict[str, np.ndarray]) -> StreamState:
    state = StreamState(reference)
    if PREDICTION in reference.names and PREDICTION not in data:
        data = {**data, PREDICTION: (data["ints"] > 1).astype(np.float64)}
    state.update(data)
    return state


WINDOWS = [  # (rows, shift, slice values present, colours)
    (400, 0.0, ("s0", "s1", "s2", "s3"), ("red", "green", "blue")),
    (900, 0.5, ("s0", "s2", "zz"), ("red", "green", "violet")),  # slices without rows; unseen slice and colour
    (25, 0.0, ("s1",), ("red",)),  # below min_rows: scores, no verdict
    (3_000, 0.3, ("s0", "s1", "s2", "s3"), ("red", "blue")),  # large: distance tests under auto
]

CONFIGS = [
    {},
    {"correction": "bh", "small_window_rows": 400},  # a window of exactly small_window_rows rows: still small
    {"numeric_test": "ks", "categorical_test": "chi2", "correction": "bh"},
    {"numeric_test": "wasserstein", "categorical_test": "js"},
    {"numeric_test": "psi", "categorical_test": "psi", "correction": "bh"},
    {"numeric_test": "js", "categorical_test": "chi2", "min_rows": 0},
    {"numeric_test": "chi2", "categorical_test": "js", "small_window_rows": 50, "min_rows": 200},
]


@pytest.mark.parametrize("overrides", CONFIGS)
def test_stacked_verdicts_equal_per_column_ones(sliced_reference: MonitorReference, plain_reference: MonitorReference,
                                                overrides: dict[str, Any]) -> None:
    cfg = MonitorConfig(**overrides)
    rng = np.random.default_rng(len(str(overrides)))
    for rows, shift, segments, colors in WINDOWS:
        data = table(rng, rows, shift, segments, colors)
        check(state_of(sliced_reference, data), cfg, "sliced")
        data.pop("seg")
        check(state_of(plain_reference, data), cfg, "plain")
        one = build_reference({"x": data["x"]}) if rows > 100 else None  # one column: the per-column path
        if one is not None:
            check(state_of(one, {"x": data["x"][::-1]}), cfg, "one column")


def test_statistics_exactly_at_their_thresholds(plain_reference: MonitorReference) -> None:
    """A distance equal to its threshold drifts (``>=``); thresholds set to observed values."""
    data = table(np.random.default_rng(9), 600, 0.4)
    data.pop("seg")
    state = state_of(plain_reference, data)
    seen = evaluate(state, MonitorConfig(numeric_test="wasserstein", categorical_test="js")).overall
    for test, key in (("wasserstein", "wasserstein_threshold"), ("js", "js_threshold"), ("psi", "psi_threshold")):
        value = getattr(seen.column("heavy" if test == "wasserstein" else "color"), test)
        # (a distance over categories also needs chi-square p < alpha: alpha 0.999 leaves the threshold deciding)
        cfg = MonitorConfig(numeric_test=test if test != "js" else "ks", categorical_test=test if test != "wasserstein"
                            else "chi2", alpha=0.999, **{key: value})
        verdict = check(state, cfg)
        assert verdict.overall.column("heavy" if test == "wasserstein" else "color").drift


def test_empty_window_and_merged_states(sliced_reference: MonitorReference) -> None:
    cfg = MonitorConfig()
    empty = StreamState(sliced_reference)
    verdict = check(empty, cfg)
    assert verdict.rows == 0 and verdict.slices == () and not verdict.overall.judged
    assert all(math.isnan(c.psi) and c.p_value == 1.0 and c.psi_band == "unknown" for c in verdict.overall.columns)
    rng = np.random.default_rng(3)
    merged = state_of(sliced_reference, table(rng, 300)).merge(state_of(sliced_reference, table(rng, 200, 1.0)))
    check(merged, cfg)


def test_all_missing_and_out_of_range_columns(plain_reference: MonitorReference) -> None:
    """A column with no finite values in the window (KS/Wasserstein NaN, p-value 1) and one
    entirely outside the reference range."""
    n = 200
    data = table(np.random.default_rng(4), n)
    data.pop("seg")
    data["x"] = np.full(n, np.nan)
    data["heavy"] = np.full(n, 1e300)
    data["color"] = np.full(n, None, dtype=object)
    state = state_of(plain_reference, data)
    for cfg in (MonitorConfig(), MonitorConfig(numeric_test="wasserstein", correction="bh")):
        verdict = check(state, cfg)
    x = verdict.overall.column("x")
    assert math.isnan(x.ks) and math.isnan(x.wasserstein) and x.p_value == 1.0 and x.missing_rate == 1.0
    assert verdict.overall.column("heavy").out_of_range_rate == 1.0


def test_zero_variance_reference_and_categorical_only() -> None:
    rng = np.random.default_rng(5)
    ref = build_reference({"c": np.full(500, 7.0), "k": rng.choice(np.array(["a", "b"], dtype=object), 500)})
    state = StreamState(ref)
    state.update({"c": np.r_[np.full(50, 7.0), np.full(50, 8.0)], "k": np.array(["a", "c"] * 50, dtype=object)})
    cfg = MonitorConfig()
    check(state, cfg)
    only_cat = build_reference({"k": rng.choice(np.array(["a", "b"], dtype=object), 500)})
    cat_state = StreamState(only_cat)
    cat_state.update({"k": np.array(["a", "b", "b"] * 30, dtype=object)})
    check(cat_state, cfg)


def test_moment_table_matches_moments(sliced_reference: MonitorReference) -> None:
    state = state_of(sliced_reference, table(np.random.default_rng(6), 700, 0.2, ("s0", "s1", "zz")))
    count, mean, std = state.moment_table()
    for j, i in enumerate(state.numeric.tolist()):
        name = sliced_reference.columns[i].name
        for row, slice_index in enumerate([None, *range(sliced_reference.n_slices)]):
            m = state.moments(name, slice_index)
            assert count[row, j] == m.count
            assert_same(m.mean, float(mean[row, j]))
            assert_same(m.std, float(std[row, j]))  # exactly, bar NaN: same arithmetic


def test_row_statistics_match_the_one_vector_ones() -> None:
    rng = np.random.default_rng(7)
    ref = rng.integers(0, 50, size=(40, 9)).astype(np.float64)
    cur = rng.integers(0, 50, size=(40, 9)).astype(np.float64)
    ref[:5, 2:] = 0  # few bins (chi-square of < 2 kept bins is (0, 1))
    cur[5:10, :] = 0  # an empty side: NaN
    ref[10:12, 3] = cur[10:12, 3] = 0  # a bin empty on both sides
    chi, chi_p, js, psi = compare_rows(ref, cur)
    for i in range(ref.shape[0]):
        if cur[i].sum() == 0:
            assert math.isnan(chi[i]) and chi_p[i] == 1.0 and math.isnan(js[i]) and math.isnan(psi[i])
            continue
        assert_same(tuple(float(x) for x in compare_rows(ref[i], cur[i])),
                    (float(chi[i]), float(chi_p[i]), float(js[i]), float(psi[i])))
    d, n, m = rng.random(30), rng.integers(1, 5_000, 30).astype(float), rng.integers(1, 5_000, 30).astype(float)
    one = [float(ks_p_values(a, b, c, method="stephens")) for a, b, c in zip(d, n, m, strict=True)]
    assert one == ks_p_values(d, n, m, method="stephens").tolist()


@pytest.mark.parametrize(("sliced", "overrides"), [
    (True, {"slice_columns": ["seg"], "max_positive_rate_gap": 0.2}),
    (True, {"correction": "bh", "numeric_test": "psi", "window_rows": 700}),
    (False, {"categorical_test": "js"}),  # no prediction column: predictions judged against the first window's
])
def test_monitor_windows_and_alerts_unchanged(sliced_reference: MonitorReference, plain_reference: MonitorReference,
                                              monkeypatch: pytest.MonkeyPatch, sliced: bool,
                                              overrides: dict[str, Any]) -> None:
    """The same stream through two monitors, one judging with the per-column code: every window
    report (verdicts, prediction verdict, alerts) and the long-term verdict agree."""
    cfg = MonitorConfig(**{"window_rows": 300, "alerts": {"log": False, "cooldown_s": 0.0}, **overrides})
    reference = sliced_reference if sliced else plain_reference

    def run() -> tuple[list[Any], list[Any], Any]:
        rng = np.random.default_rng(8)
        monitor = Monitor(reference, cfg, clock=lambda: 1_000.0)
        alerts = []
        for b in range(8):
            data = table(rng, 250, 0.0 if b < 4 else 0.6, ("s0", "s1", "s2") if b % 3 else ("s0", "zz"))
            preds = (data["ints"] > 1).astype(np.float64) if b < 5 else (data["x"] > 0).astype(np.float64)
            if not sliced:
                data.pop("seg")
            alerts.append(monitor.ingest(data, preds))
        return alerts, list(monitor.history), monitor.long_term()

    stacked = run()
    monkeypatch.setattr(monitor_module, "evaluate", evaluate_per_column)
    per_column = run()
    assert_same(per_column, stacked)
    kinds = {a.kind for batch in stacked[0] for a in batch}
    assert {"feature_drift", "anomaly"} <= kinds and ("slice_drift" in kinds) == sliced
    assert sliced or any(r.prediction is not None for r in stacked[1])
