"""Data no model can train on is refused with one clear error (exit 2) before any trial starts:
a single class, validation rows without every class under roc_auc, infinite values, a source
with no rows, files with different columns (pure: no Ray)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from raymlops.config import parse_config
from raymlops.exceptions import ConfigError, ValidationError
from raymlops.pipeline.data_steps import _one_table
from raymlops.train.objective import TrialSettings, check_trial_data
from raymlops.train.prepare import split_table


def settings(**kw: object) -> TrialSettings:
    base: dict[str, object] = {"task": "classification", "metric": "roc_auc", "seed": 1, "epochs": 1,
                               "validation_fraction": 0.2}
    return TrialSettings(**(base | kw))  # type: ignore[arg-type]


def test_one_class_is_refused_naming_the_target() -> None:
    with pytest.raises(ValidationError) as info:
        check_trial_data(np.ones(200, dtype=int), settings())
    assert info.value.exit_code == 2 and "data.target" in str(info.value) and "one class (1)" in str(info.value)
    check_trial_data(np.ones(200), settings(task="regression", metric="r2"))  # a constant target can be fit


def test_a_continuous_target_of_a_classifier_is_refused_saying_so() -> None:
    """sklearn's diabetes target without train.task: regression: every trial failed with a wall of
    np.float64(...) values and "Fix the estimator"; it never said the target looks continuous."""
    from sklearn.datasets import load_diabetes

    y = load_diabetes().target
    with pytest.raises(ValidationError) as info:
        check_trial_data(y, settings(metric="accuracy"))
    assert info.value.exit_code == 2 and "looks continuous" in str(info.value)
    assert "set train.task: regression" in str(info.value)
    check_trial_data(y, settings(task="regression", metric="r2"))
    check_trial_data(np.repeat(np.arange(60.0), 5), settings(metric="accuracy"))  # whole numbers: classes
    check_trial_data(np.repeat([0.5, 1.5, 2.5], 50), settings(metric="accuracy"))  # few values: classes


def test_validation_rows_without_every_class_are_refused_only_for_roc_auc() -> None:
    y = np.zeros(40, dtype=int)
    y[3] = 1  # one positive: the validation rows (seeded) will lack it
    with pytest.raises(ValidationError) as info:
        check_trial_data(y, settings())
    assert "lack class 1" in str(info.value) and "roc_auc" in str(info.value)
    check_trial_data(y, settings(metric="accuracy"))  # accuracy is defined on one class
    rng = np.random.default_rng(0)
    check_trial_data(rng.integers(0, 2, 400), settings())  # enough rows of both classes: fine
    with pytest.raises(ValidationError, match="train.cv_folds 5 needs at least as many rows, found 3"):
        check_trial_data(np.array([0, 1, 0]), settings(cv_folds=5, metric="accuracy"))


def test_an_infinite_feature_value_is_refused_naming_column_and_row() -> None:
    cfg = parse_config({"name": "t", "seed": 1, "data": {"source": "x.csv", "target": "y"},
                        "train": {"candidates": [{"estimator": "sklearn.linear_model.LogisticRegression"}]}}, "t.yaml")
    a = np.arange(50, dtype=float)
    b = np.ones(50)
    b[[7, 9]] = [np.inf, -np.inf]
    table = pa.table({"a": a, "b": b, "y": np.arange(50) % 2})
    with pytest.raises(ValidationError) as info:
        split_table(table, ["a", "b"], cfg)
    assert "column 'b': 2 infinite values (the first in row 7)" in str(info.value)
    b[[7, 9]] = np.nan  # missing values are fine: the estimator decides
    assert split_table(pa.table({"a": a, "b": b, "y": np.arange(50) % 2}), ["a", "b"], cfg)[0].shape[1] == 2


def test_a_sample_with_no_rows_or_files_of_other_columns_is_refused_naming_them() -> None:
    with pytest.raises(ValidationError, match="'data/' holds no rows"):
        _one_table([pa.table({"a": pa.array([], pa.int64())})], "data/")
    with pytest.raises(ValidationError) as info:
        _one_table([pa.table({"a": [1], "y": [0]}), pa.table({"b": [1.0], "y": [1]})], "data/")
    assert "do not have the same columns: 'a' in some files, 'b' in others" in str(info.value)
    with pytest.raises(ValidationError, match="same columns: 'b' in some files only"):
        _one_table([pa.table({"a": [1], "b": [2.0], "y": [0]}), pa.table({"a": [1], "y": [1]})], "data/")
    # the same columns in another order: matched by name, in the first file's order
    mixed = _one_table([pa.table({"a": [1], "y": [0]}), pa.table({"y": [1], "a": [2.5]})], "data/")
    assert mixed.column_names == ["a", "y"] and mixed.column("a").to_pylist() == [1.0, 2.5]
    with pytest.raises(ValidationError, match="same column types: column 'a' is int64 in some and string in others"):
        _one_table([pa.table({"a": [1]}), pa.table({"a": ["x"]})], "data/")
    empty_block = pa.table({"z": pa.array([], pa.int64())})  # an empty block's schema does not count
    assert _one_table([empty_block, pa.table({"a": [1]}), pa.table({"a": [2]})], "d").num_rows == 2


def test_files_whose_types_were_inferred_one_by_one_are_read_as_one_schema() -> None:
    """A folder of CSVs: whole numbers in one file and decimals in another are float64, as pandas
    or DuckDB read them (it was refused: "Field a has incompatible types: int64 vs double"); a
    column with no value in one file takes the others' type; int32 and int64 are int64."""
    from raymlops.data.blocks import widen_schemas

    one = pa.table({"a": pa.array([1, 2], pa.int64()), "b": pa.array([None, None], pa.null()),
                    "c": pa.array([1, 2], pa.int32()), "y": [0, 1]})
    two = pa.table({"a": [0.5, 2.25], "b": ["x", "y"], "c": pa.array([3, 4], pa.int64()), "y": [1, 0]})
    table = _one_table([one, two], "data/")
    assert table.schema == pa.schema([("a", pa.float64()), ("b", pa.string()), ("c", pa.int64()), ("y", pa.int64())])
    assert table.column("a").to_pylist() == [1.0, 2.0, 0.5, 2.25] and table.column("b").to_pylist() == [
        None, None, "x", "y"]
    # no integer type holds both int64 and uint64
    assert widen_schemas([pa.schema([("n", pa.int64())]), pa.schema([("n", pa.uint64())])], "d").field(
        "n").type == pa.float64()
    same = pa.schema([("a", pa.int64())])
    assert widen_schemas([same, same], "d") == same


def test_the_source_format_is_read_past_a_compression_extension(tmp_path: Path) -> None:
    """data.csv.gz is a CSV (Arrow reads it by its .gz); it was refused: 'cannot tell the format'."""
    import pyarrow.fs as pafs

    from raymlops.data.sources import detect_format

    assert detect_format("data.csv.gz", "auto") == "csv"
    assert detect_format("s3://b/x/part-0.JSONL.zst?region=eu", "auto") == "json"
    assert detect_format("x.parquet", "auto") == "parquet" and detect_format("x.gz", "csv") == "csv"
    (tmp_path / "d").mkdir()
    for i in range(3):
        (tmp_path / "d" / f"part-{i}.csv.bz2").write_bytes(b"")
    assert detect_format(str(tmp_path / "d"), "auto", pafs.LocalFileSystem(), str(tmp_path / "d")) == "csv"
    with pytest.raises(ConfigError, match="cannot tell the format of 'x.gz'"):
        detect_format("x.gz", "auto")


def test_a_regression_on_text_labels_is_refused_before_tune_naming_the_target() -> None:
    y = np.array(["barolo", "grignolino", "barbera"] * 40, dtype=object)
    with pytest.raises(ValidationError) as info:
        check_trial_data(y, settings(task="regression", metric="r2"))
    assert info.value.exit_code == 2 and "data.target: the target holds text ('barolo', 'grignolino'" in str(info.value)
    assert "set train.task: classification" in str(info.value)


def test_the_positive_label_must_be_a_class_of_a_binary_target() -> None:
    y = np.array(["fraud", "ok"] * 60, dtype=object)
    check_trial_data(y, settings(metric="f1", positive="fraud"))
    with pytest.raises(ValidationError, match=r"train.positive_label: 'frod' is not a class .* 'fraud', 'ok'"):
        check_trial_data(y, settings(metric="f1", positive="frod"))
    with pytest.raises(ValidationError, match="binary target; this one has 3 classes"):
        check_trial_data(np.array(["a", "b", "c"] * 40, dtype=object), settings(metric="f1", positive="a"))
    base = {"name": "t", "seed": 1, "data": {"source": "x.csv", "target": "y"}}
    with pytest.raises(ConfigError, match="train.positive_label: expected no positive_label for a regression"):
        parse_config(base | {"train": {"metric": "r2", "positive_label": 1,
                                       "candidates": [{"estimator": "sklearn.linear_model.Ridge"}]}})


def test_precision_recall_f1_and_slices_are_the_positive_classs() -> None:
    """Labels 'fraud' (5 %) and 'ok': by default the later one, 'ok', is positive, so a model that
    finds no fraud scores f1 0.97; with train.positive_label: fraud, 0."""
    from raymlops.train.evaluate import classification_metrics, evaluate_model

    class Always:  # says 'ok' to everything, surely
        classes_ = np.array(["fraud", "ok"], dtype=object)

        def predict(self, X: np.ndarray) -> np.ndarray:
            return np.full(len(X), "ok", dtype=object)

        def predict_proba(self, X: np.ndarray) -> np.ndarray:
            p = X[:, 0]
            return np.column_stack([p, 1 - p])

    X = np.linspace(0, 1, 100)[:, None]
    y = np.where(np.arange(100) >= 95, "fraud", "ok").astype(object)
    default = classification_metrics(Always(), X, y)
    assert default["f1"] > 0.97 and default["recall"] == 1.0
    fraud = classification_metrics(Always(), X, y, positive="fraud")
    assert fraud["f1"] == 0.0 and fraud["recall"] == 0.0 and fraud["precision"] == 0.0
    assert fraud["roc_auc"] == pytest.approx(default["roc_auc"]) == 1.0  # one ranking either way
    ev = evaluate_model(Always(), X, y, "classification", {"s": np.array(["a", "b"] * 50)}, positive="fraud")
    assert ev.metrics["f1"] == 0.0 and all(s.fairness_value == 0.0 for s in ev.slices)  # no row is said fraud


def test_too_few_training_rows_point_at_the_holdout_fraction() -> None:
    from raymlops.train.objective import validation_folds

    with pytest.raises(ValidationError) as info:
        validation_folds(np.array([0, 1, 0]), "classification", 1, 0.25, None)
    assert "of the 3 training rows (those data.holdout_fraction leaves): lower data.holdout_fraction" in str(
        info.value)


def test_a_fold_whose_training_rows_hold_one_class_is_refused_before_any_trial() -> None:
    """12 rows, one positive, cv_folds 3: the fold that validates on the positive trains on one
    class; every trial failed there ("Fix the estimator", exit 1), though the data is the cause."""
    y = np.zeros(12, dtype=int)
    y[5] = 1
    with pytest.raises(ValidationError, match=r"the rows fold \d of train.cv_folds 3 trains on \(8 of the 12 training "
                                              r"rows\) hold one class \(0\); a classifier needs at least two"):
        check_trial_data(y, settings(metric="accuracy", cv_folds=3))
    y[:6] = 1  # two classes in every fold's training rows
    check_trial_data(y, settings(metric="accuracy", cv_folds=3))
