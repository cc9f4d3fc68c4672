"""Slice verdicts of the stacked path keep their columns as a row of arrays and build the
ColumnVerdicts when first read: they equal the eager verdicts (fields, summaries, to_dict,
pickling), the alerts read from them are those of the eager verdicts, and a window close builds
no column verdict for a slice that raises no alert."""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import numpy as np
import pytest

from raymlops.config import MonitorAlertsConfig, MonitorConfig
from raymlops.monitor import Monitor, StreamState, build_reference
from raymlops.monitor.reference import PREDICTION, MonitorReference
from raymlops.monitor.stacked import evaluate_stacked_many
from raymlops.monitor.verdicts import SliceVerdict, WindowVerdict, _evaluate_per_column, _slice
from raymlops.monitor.window_alerts import _anomalies, drift_alerts

FLOATS = ("statistic", "p_value", "adjusted_p_value", "ks", "wasserstein", "js", "psi", "rows", "missing_rate",
          "ref_missing_rate", "out_of_range_rate", "unseen_rate")


def data(rng: np.random.Generator, n: int, shift: float) -> dict[str, np.ndarray]:
    x = rng.normal(shift, 1.0, n)
    x[rng.random(n) < 0.02 + shift / 4] = np.nan
    color = np.array(["red", "green", "blue", "violet"], dtype=object)[rng.integers(0, 3 + (shift > 0), n)]
    return {"x": x, "y": rng.exponential(1.0 + shift, n), "color": color,
            "seg": np.array(["a", "b", "c"], dtype=object)[rng.integers(0, 3, n)],
            PREDICTION: (rng.random(n) < 0.3 + shift / 2).astype(np.float64)}


@pytest.fixture(scope="module")
def reference() -> MonitorReference:
    return build_reference(data(np.random.default_rng(0), 5_000, 0.0), categorical=["color"], slice_columns=["seg"])


def states(reference: MonitorReference) -> list[StreamState]:
    rng = np.random.default_rng(1)
    out = []
    for rows, shift in ((400, 0.0), (1_500, 0.8), (60, 0.3), (900, 0.4)):
        state = StreamState(reference)
        state.update(data(rng, rows, shift))
        out.append(state)
    return out


def eager(v: SliceVerdict) -> SliceVerdict:
    return SliceVerdict(**{f.name: getattr(v, f.name) for f in dataclasses.fields(SliceVerdict)})


def eager_window(w: WindowVerdict) -> WindowVerdict:
    return WindowVerdict(rows=w.rows, correction=w.correction, overall=eager(w.overall),
                         slices=tuple(eager(s) for s in w.slices))


@pytest.mark.parametrize("overrides", [{}, {"dataset_rule": "share", "dataset_drift_share": 0.3},
                                       {"correction": "holm", "small_window_rows": 100, "min_rows": 100}])
def test_lazy_slice_verdicts_equal_eager_ones(reference: MonitorReference, overrides: dict[str, Any]) -> None:
    cfg = MonitorConfig(**overrides)
    windows = evaluate_stacked_many(states(reference), cfg, reference)
    drifted = 0
    for w in windows:
        for v in (w.overall, *w.slices):
            assert "_columns" not in v.__dict__  # nothing built yet
            values = {name: v.values(name) for name in FLOATS}  # read from the arrays
            assert "_columns" not in v.__dict__
            for name, got in values.items():
                assert got.tolist() == pytest.approx([getattr(c, name) for c in v.columns], nan_ok=True, rel=0, abs=0)
            assert v.columns is v.columns  # built once, kept
            # the summaries computed on the arrays are those the per-column code derives
            assert v == _slice(v.name, v.rows, v.judged, list(v.columns), cfg) == eager(v)
            drifted += bool(v.drifted)
        plain = eager_window(w)
        assert w.to_dict() == plain.to_dict()
        assert pickle.loads(pickle.dumps(w)).to_dict() == plain.to_dict()  # dicts: NaN != NaN
        assert repr(w) == repr(plain)
    assert drifted  # the shifted windows drift


def test_lazy_verdicts_of_a_fresh_window_equal_the_per_column_ones(reference: MonitorReference) -> None:
    cfg = MonitorConfig()
    state = states(reference)[1]
    (stacked,) = evaluate_stacked_many([state], cfg, reference)
    per_column = _evaluate_per_column(state, cfg, reference)
    assert [s.name for s in stacked.slices] == [s.name for s in per_column.slices]
    for a, b in zip((stacked.overall, *stacked.slices), (per_column.overall, *per_column.slices), strict=True):
        assert (a.drifted, a.dataset_drift, a.prediction_drift, a.share_drifted) == \
               (b.drifted, b.dataset_drift, b.prediction_drift, b.share_drifted)


@pytest.mark.parametrize("overrides", [{}, {"max_out_of_range_rate": 0.01, "max_missing_rate_increase": 0.01},
                                       {"dataset_rule": "share", "max_positive_rate_gap": 0.01}])
def test_alerts_of_lazy_verdicts_equal_those_of_eager_ones(reference: MonitorReference,
                                                            overrides: dict[str, Any]) -> None:
    cfg = MonitorConfig(**overrides)
    kinds = set()
    windows = states(reference)
    rates = {"seg=a": 0.2, "seg=b": 0.4}
    for lazy, built in zip(evaluate_stacked_many(windows, cfg, reference),
                           evaluate_stacked_many(windows, cfg, reference), strict=True):
        got = drift_alerts(lazy, None, rates, cfg, 5.0, 3)
        assert [a.to_dict() for a in got] == [a.to_dict() for a in drift_alerts(eager_window(built), None, rates,
                                                                                 cfg, 5.0, 3)]
        kinds |= {a.kind for a in got}
        # the anomalies found on the rates' arrays are those of every column's own check
        every = [a for c in built.overall.columns for a in _anomalies(c, cfg, 5.0, 3)] if built.overall.judged else []
        assert [a.to_dict() for a in got if a.kind == "anomaly"] == [a.to_dict() for a in every]
    assert {"dataset_drift", "feature_drift", "slice_drift", "prediction_drift", "anomaly"} <= kinds


def test_a_window_close_builds_only_the_verdicts_it_alerts_on(reference: MonitorReference) -> None:
    monitor = Monitor(reference, MonitorConfig(window_rows=500, alerts=MonitorAlertsConfig(log=False)))
    rng = np.random.default_rng(2)
    batch = data(rng, 2_000, 0.0)
    monitor.ingest(batch, batch.pop(PREDICTION))
    for report in monitor.history:
        quiet = [s for s in (report.verdict.overall, *report.verdict.slices) if not s.drifted]
        assert report.alerts == () and all("_columns" not in s.__dict__ for s in quiet) and quiet
