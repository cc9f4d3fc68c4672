"""The monitor's reference of a snapshot's training rows (raymlops.pipeline.serve_steps.training_reference):
the one builder of the deploy step and of retraining's rebaseline; pure, no Ray."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from raymlops.config import parse_config
from raymlops.data.schema import ColumnSchema, Schema
from raymlops.exceptions import ServeError
from raymlops.features import category_code
from raymlops.monitor import Monitor
from raymlops.pipeline.serve_steps import training_reference
from raymlops.train.prepare import holdout_of


def _config(**monitor: object) -> object:
    return parse_config({"name": "t", "seed": 3, "data": {"source": "x.csv", "target": "y"},
                         "train": {"candidates": [{"estimator": "sklearn.linear_model.LogisticRegression"}]},
                         "monitor": {"alerts": {"log": False}, **monitor}}, "t.yaml")


def test_string_features_are_categories_of_codes_named_by_their_values() -> None:
    rng = np.random.default_rng(1)
    n = 400
    plans = np.array(["basic", "plus", "pro"])
    table = pa.table({"plan": plans[rng.integers(0, 3, n)], "fee": rng.normal(30, 5, n),
                      "shop": rng.choice(["a", "b"], n), "y": rng.integers(0, 2, n)})
    schema = Schema((ColumnSchema("plan", "string", False, domain=tuple(plans)),
                     ColumnSchema("fee", "double", False), ColumnSchema("shop", "string", False, domain=("a", "b")),
                     ColumnSchema("y", "int64", False)))
    cfg = _config(slice_columns=["shop"])
    ref = training_reference(table, ["plan", "fee"], cfg, schema)
    plan = ref.column("plan")
    assert plan.kind == "categorical" and set(plan.shown_categories) == set(plans)
    assert set(plan.categories) == {str(int(category_code(p))) for p in plans}
    assert ref.column("fee").kind == "numeric" and ref.features == ("plan", "fee")
    train = ~holdout_of(table, cfg)
    assert int(ref.column_counts("plan").sum()) == int(train.sum())  # the training rows only
    assert ref.slice_columns == ("shop",) and {"shop=a", "shop=b"} <= set(ref.slices)

    # what a replica sends (the codes) lands in the reference's categories: nothing unseen
    m = Monitor(ref, cfg.monitor)
    m.ingest({"plan": np.array([category_code(p) for p in plans[rng.integers(0, 3, 50)]]),
              "fee": rng.normal(30, 5, 50), "shop": rng.choice(["a", "b"], 50)})
    counts = m.current.column_counts("plan")
    assert counts[:3].sum() == 50 and counts[3:].sum() == 0  # no "(other)", no missing

    with pytest.raises(ServeError, match="monitor.slice_columns: the data has no column 'region'"):
        training_reference(table, ["plan", "fee"], _config(slice_columns=["region"]), schema)


def test_client_rows_are_what_a_client_sends_a_batch_at_a_time() -> None:
    from raymlops.pipeline.context import client_rows

    columns = {"plan": np.array(["basic", None, "pro"], dtype=object), "fee": np.array([1.5, np.nan, 3.0]),
               "calls": np.array([1, 2, 3]), "member": np.array([True, False, True])}
    rows = client_rows(columns)
    assert rows[0] == {"plan": "basic", "fee": 1.5, "calls": 1.0, "member": 1.0}
    assert rows[1] == {"plan": None, "fee": None, "calls": 2.0, "member": 0.0}  # NaN and None are JSON null
    assert client_rows(columns, 1, 3) == rows[1:] and client_rows(columns, 3, 5) == []
    assert all(type(v) in (str, float) or v is None for r in rows for v in r.values())


def test_a_string_feature_as_slice_column_names_its_slices_by_category() -> None:
    """Slices of a string feature (monitored as its codes) are named by the category, in the
    reference, its JSON form and alerts; rows a replica sends (codes) land in their slice."""
    from raymlops.monitor.reference import MonitorReference

    rng = np.random.default_rng(2)
    n = 600
    cities = np.array(["Seoul", "Busan", 'Daegu "south"'])
    table = pa.table({"city": cities[rng.choice(3, n, p=[0.5, 0.3, 0.2])], "fee": rng.normal(30, 5, n),
                      "y": rng.integers(0, 2, n)})
    schema = Schema((ColumnSchema("city", "string", False, domain=tuple(cities)),
                     ColumnSchema("fee", "double", False), ColumnSchema("y", "int64", False)))
    cfg = _config(slice_columns=["city"], min_rows=10)
    ref = training_reference(table, ["city", "fee"], cfg, schema)
    assert ref.slices == ("city=Seoul", "city=Busan", 'city=Daegu "south"', "other")
    assert ref.slice_keys == tuple(str(int(category_code(c))) for c in cities)
    again = MonitorReference.from_dict(ref.to_dict())
    assert again.slices == ref.slices and again.slice_keys == ref.slice_keys
    assert np.array_equal(again.counts, ref.counts)

    # a replica's batch: the codes; Busan's rows shift, and only its slice says so
    m = Monitor(ref, cfg.monitor)
    city = cities[rng.choice(3, 900, p=[0.5, 0.3, 0.2])]
    fee = rng.normal(30, 5, 900) + np.where(city == "Busan", 15.0, 0.0)
    m.ingest({"city": np.array([category_code(c) for c in city]), "fee": fee})
    assert list(m.current.slice_rows()) == [int((city == c).sum()) for c in cities] + [0]
    report = m.close_window()
    assert report is not None
    drifted = {s["name"] for s in report.to_dict()["slices"] if s["dataset_drift"]}
    assert drifted == {"city=Busan"}
    assert "slice_drift:fee:city=Busan" in {a.key for a in report.alerts}

    # a checkpoint keeps the names and the lookup: a restored monitor puts codes in the same slices
    import time

    from raymlops.monitor import checkpoint

    restored = checkpoint.load(checkpoint.dump(m), Monitor, time.time, cfg.monitor)
    assert restored.reference.slices == ref.slices and restored.reference.slice_keys == ref.slice_keys
    restored.ingest({"city": np.array([category_code("Busan")] * 5), "fee": np.full(5, 30.0)})
    assert restored.current.slice_rows()[1] == 5

    # two slice columns: each value shown as its column shows it
    two = training_reference(table.append_column("tier", pa.array(rng.integers(1, 3, n))), ["city", "fee"],
                             _config(slice_columns=["city", "tier"]), schema)
    assert {"city=Seoul,tier=1", "city=Busan,tier=2"} <= set(two.slices)


def test_monitor_settings_follow_the_champion() -> None:
    """What the deploy step (and retraining's new monitor) starts the monitor with: labels scored as
    the model was trained, its calibration, and for a regression half its holdout MAE as the
    tolerance of agreement; what the config sets is kept."""
    from types import SimpleNamespace

    from raymlops.monitor.actor import monitor_config
    from raymlops.pipeline.serve_steps import monitor_settings

    base = {"name": "t", "seed": 3, "data": {"source": "x.csv", "target": "y"}}
    regression = parse_config(base | {"train": {"metric": "mae", "candidates": [
        {"estimator": "sklearn.linear_model.Ridge"}]}}, "t.yaml")
    champion = SimpleNamespace(metrics={"mae": 40.0, "r2": 0.5}, lineage={})
    settings = monitor_settings(regression, champion)
    assert settings["performance"]["task"] == "regression" and settings["differential"]["tolerance"] == 20.0
    assert monitor_config(settings).differential.tolerance == 20.0  # what the actor builds
    pinned = regression.model_copy(update={"monitor": regression.monitor.model_copy(update={
        "differential": regression.monitor.differential.model_copy(update={"tolerance": 5.0})})})
    assert monitor_settings(pinned, champion)["differential"]["tolerance"] == 5.0

    logistic = {"estimator": "sklearn.linear_model.LogisticRegression"}
    classifier = parse_config(base | {"train": {"candidates": [logistic]}}, "t.yaml")
    calibrated = SimpleNamespace(metrics={"accuracy": 0.9}, lineage={"calibration": {"x": [0.0, 1.0], "y": [0.0, 1.0]}})
    settings = monitor_settings(classifier, calibrated)
    assert settings["differential"]["tolerance"] is None and settings["performance"]["task"] == "classification"
    assert settings["performance"]["calibration"] == {"x": [0.0, 1.0], "y": [0.0, 1.0]} and settings["seed"] == 3

    # a binary classifier's positive class is its second (labels no/yes: "yes"), unless the config names one
    yes_no = SimpleNamespace(metrics={}, lineage={}, signature={"classes": ["no", "yes"]})
    assert monitor_settings(classifier, yes_no)["performance"]["positive_label"] == "yes"
    assert monitor_config(monitor_settings(classifier, yes_no)).performance.positive_label == "yes"
    named = parse_config(base | {"train": {"candidates": [logistic]},
                                 "monitor": {"performance": {"positive_label": "no"}}}, "t.yaml")
    assert monitor_settings(named, yes_no)["performance"]["positive_label"] == "no"
    flags = SimpleNamespace(metrics={}, lineage={}, signature={"classes": [False, True]})
    assert monitor_config(monitor_settings(classifier, flags)).performance.positive_label == 1.0  # True
    three = SimpleNamespace(metrics={}, lineage={}, signature={"classes": [0, 1, 2]})
    assert monitor_settings(classifier, three)["performance"]["positive_label"] == 1.0  # not binary: as configured
