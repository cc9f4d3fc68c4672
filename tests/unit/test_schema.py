"""Schema inference and training checks on Arrow tables (raymlops.data.schema)."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from raymlops.data.schema import (
    ColumnSchema,
    Schema,
    check_category_counts,
    check_training_schema,
    column_array,
    feature_categories,
    infer_schema,
    table_columns,
)
from raymlops.exceptions import ValidationError
from raymlops.features import category_code


@pytest.fixture
def table() -> pa.Table:
    return pa.table(
        {
            "age": pa.array([31, 45, 27, 60], type=pa.int64()),
            "income": pa.array([1200.5, None, -30.25, 88.0], type=pa.float64()),
            "small": pa.array([1, 2, 3, 250], type=pa.uint8()),
            "city": pa.array(["a", "b", None, "d"], type=pa.string()),
            "member": pa.array([True, False, True, True], type=pa.bool_()),
            "label": pa.array([0, 1, 0, 1], type=pa.int32()),
            "empty": pa.array([None, None, None, None], type=pa.float32()),
        }
    )


def test_infer_schema_types_nullability_and_ranges(table: pa.Table) -> None:
    schema = infer_schema(table)
    assert schema.names == ["age", "income", "small", "city", "member", "label", "empty"]
    by_name = {c.name: c for c in schema.columns}
    assert by_name["age"] == ColumnSchema("age", "int64", nullable=False, min=27.0, max=60.0)
    assert by_name["income"] == ColumnSchema("income", "double", nullable=True, min=-30.25, max=1200.5)
    assert by_name["small"] == ColumnSchema("small", "uint8", nullable=False, min=1.0, max=250.0)
    assert by_name["city"] == ColumnSchema("city", "string", nullable=True, min=None, max=None)
    assert by_name["member"].type == "bool" and by_name["member"].min is None and not by_name["member"].nullable
    assert by_name["label"].type == "int32" and (by_name["label"].min, by_name["label"].max) == (0.0, 1.0)
    assert by_name["empty"] == ColumnSchema("empty", "float", nullable=True, min=None, max=None)


def test_numeric_types(table: pa.Table) -> None:
    schema = infer_schema(table)
    assert [c.name for c in schema.columns if c.numeric] == ["age", "income", "small", "member", "label", "empty"]
    assert not ColumnSchema("when", "timestamp[s]", nullable=False).numeric


def test_schema_over_chunked_columns() -> None:
    chunked = pa.chunked_array([pa.array([5.0, 1.0]), pa.array([9.0, None])])
    col = infer_schema(pa.table({"x": chunked})).column("x")
    assert (col.min, col.max, col.nullable) == (1.0, 9.0, True)


def test_schema_round_trips_through_json(table: pa.Table) -> None:
    schema = infer_schema(table)
    back = Schema.from_dict(json.loads(json.dumps(schema.to_dict())))
    assert back == schema


def test_unknown_column_lookup_names_it(table: pa.Table) -> None:
    with pytest.raises(ValidationError, match="'nope'"):
        infer_schema(table).column("nope")


# ---------------------------------------------------------------------------- training checks


def _schema(**columns: tuple[str, bool]) -> Schema:
    return Schema(tuple(ColumnSchema(name, type_, nullable) for name, (type_, nullable) in columns.items()))


def test_features_default_to_every_column_but_the_target(table: pa.Table) -> None:
    schema = infer_schema(table.drop_columns(["city"]))
    assert check_training_schema(schema, "label", None) == ["age", "income", "small", "member", "empty"]


def test_explicit_features_keep_their_order(table: pa.Table) -> None:
    schema = infer_schema(table)
    assert check_training_schema(schema, "label", ["small", "age"]) == ["small", "age"]


def test_missing_target(table: pa.Table) -> None:
    with pytest.raises(ValidationError) as info:
        check_training_schema(infer_schema(table), "churned", None)
    message = str(info.value)
    assert message.startswith("data.target:") and "'churned'" in message and "age" in message
    assert isinstance(info.value, ValueError) and info.value.exit_code == 2


def test_nullable_target(table: pa.Table) -> None:
    with pytest.raises(ValidationError, match=r"data.target: column 'income' has missing values") as info:
        check_training_schema(infer_schema(table), "income", ["age"])
    # the message says how to set those rows aside, and that way the schema step lets them through to
    # the row checks (data.on_invalid decides: fail naming the rows, or quarantine)
    assert "data.schema: {income: {nullable: false}} with data.on_invalid: quarantine" in str(info.value)
    assert check_training_schema(infer_schema(table), "income", ["age"], target_checked=True) == ["age"]


def test_rows_without_a_label_are_refused_by_count_and_first_row() -> None:
    """A whole snapshot's target, not the schema step's sample: a null, or NaN in a float target."""
    from raymlops.config import PipelineConfig
    from raymlops.train.prepare import split_table

    rows = 400
    for target in (pa.array(["yes", "no"] * 199 + [None, "yes"]), pa.array([1.0, 0.0] * 199 + [0.0, float("nan")])):
        table = pa.table({"x": np.arange(rows, dtype=np.float64), "y": target})
        cfg = PipelineConfig.model_validate({"name": "t", "data": {"source": "t.csv", "target": "y"}, "train": {
            "candidates": [{"estimator": "sklearn.linear_model.LogisticRegression"}]}})
        with pytest.raises(ValidationError) as info:
            split_table(table, ["x"], cfg)
        first = 398 if target.type == pa.string() else 399
        assert f"data.target 'y': 1 of {rows} rows have no value (the first is row {first})" in str(info.value)


def test_a_string_column_is_a_categorical_feature(table: pa.Table) -> None:
    assert check_training_schema(infer_schema(table), "label", ["age", "city"]) == ["age", "city"]
    for kind in (pa.large_string(), pa.dictionary(pa.int32(), pa.string())):
        t = pa.table({"c": pa.array(["x", "y"]).cast(kind), "y": [0, 1]})
        assert infer_schema(t).column("c").categorical
        assert check_training_schema(infer_schema(t), "y", None) == ["c"]


@pytest.mark.parametrize("column", [pa.array([datetime.date(2026, 1, 1)] * 4), pa.array([[1], [2], [3], [4]])])
def test_a_feature_neither_number_nor_string_is_refused_naming_it(table: pa.Table, column: pa.Array) -> None:
    t = table.append_column("odd", column)
    for features in (["age", "odd"], None):
        with pytest.raises(ValidationError) as info:
            check_training_schema(infer_schema(t), "label", features)
        assert "'odd'" in str(info.value) and str(column.type) in str(info.value)
        assert "number or a string" in str(info.value)


def test_string_features_become_codes_of_their_value_alone() -> None:
    chunked = pa.chunked_array([["basic", None], ["pro", "basic"]])
    codes = table_columns(pa.table({"plan": chunked}), ["plan"])[:, 0]
    assert codes[0] == codes[3] == category_code("basic") and codes[2] == category_code("pro")
    assert np.isnan(codes[1]) and codes[0] != codes[2]
    # the code depends on the value alone: another table, another encoding, another order, the same code
    for kind in (pa.large_string(), pa.dictionary(pa.int8(), pa.string())):
        other = table_columns(pa.table({"plan": pa.array(["zzz", "pro", None]).cast(kind)}), ["plan"])[:, 0]
        assert other[1] == category_code("pro") and np.isnan(other[2])
    # exact in a double, and distinct for distinct values
    values = [f"v{i}" for i in range(2000)] + ["", "é", "basic "]
    got = [category_code(v) for v in values]
    assert len(set(got)) == len(values) and all(0 <= c < 2**52 and c == int(c) for c in got)
    assert table_columns(pa.table({"e": pa.array([None, None], pa.string())}), ["e"]).shape == (2, 1)


def test_feature_categories_come_from_the_schema_domain() -> None:
    schema = Schema((ColumnSchema("plan", "string", False, domain=("basic", "pro")),
                     ColumnSchema("age", "int64", False, 1.0, 9.0),
                     ColumnSchema("note", "string", True)))
    assert feature_categories(schema, ["age", "plan"]) == {"plan": ["basic", "pro"]}
    with pytest.raises(ValidationError) as info:  # no domain: too many distinct values to be a category
        feature_categories(schema, ["plan", "note"])
    assert "'note'" in str(info.value) and "data.features" in str(info.value)


def test_unknown_feature(table: pa.Table) -> None:
    with pytest.raises(ValidationError) as info:
        check_training_schema(infer_schema(table), "label", ["age", "height"])
    assert str(info.value).startswith("data.features:") and "'height'" in str(info.value)


def test_no_features_left() -> None:
    with pytest.raises(ValidationError, match="no feature columns"):
        check_training_schema(_schema(y=("int64", False)), "y", None)


def test_target_cannot_be_a_feature(table: pa.Table) -> None:
    with pytest.raises(ValidationError, match="'label'"):
        check_training_schema(infer_schema(table), "label", ["age", "label"])


def test_table_columns_is_a_float_matrix_with_nan_for_nulls(table: pa.Table) -> None:
    X = table_columns(table, ["income", "age", "member"])
    assert X.dtype == np.float64 and X.shape == (4, 3)
    np.testing.assert_array_equal(X[:, 1], [31.0, 45.0, 27.0, 60.0])
    assert np.isnan(X[1, 0]) and X[2, 0] == -30.25
    np.testing.assert_array_equal(X[:, 2], [1.0, 0.0, 1.0, 1.0])


def test_a_column_without_a_name_is_refused_unless_features_leave_it_out(tmp_path: Path) -> None:
    """``DataFrame.to_csv(path)`` writes the index as a first column with an empty header: as a
    feature it would be the row numbers, under a name no request or config can give."""
    import pandas as pd
    import pyarrow.csv as pacsv

    pd.DataFrame({"age": [30, 40, 50], "churned": [0, 1, 0]}).to_csv(tmp_path / "d.csv")
    schema = infer_schema(pacsv.read_csv(tmp_path / "d.csv"))
    assert schema.names == ["", "age", "churned"]
    with pytest.raises(ValidationError, match=r"column 1 of the data has no name \(pandas writes its index so"):
        check_training_schema(schema, "churned", None)
    assert check_training_schema(schema, "churned", ["age"]) == ["age"]


def test_an_id_like_string_feature_is_refused_on_the_sample() -> None:
    ids = pa.table({"customer": [f"c{i}" for i in range(101)], "plan": ["a", "b"] * 50 + ["a"],
                    "x": list(range(101))})
    check_category_counts(ids, ["plan", "x"])  # two categories, and a number: fine
    with pytest.raises(ValidationError) as info:
        check_category_counts(ids, ["plan", "customer"])
    assert "'customer'" in str(info.value) and "more than 100" in str(info.value)
    check_category_counts(ids.slice(0, 100), ["customer"])  # 100 distinct values: still a category
    # pandas' category dtype (dictionary-encoded, a dictionary per chunk) counts and encodes alike
    chunks = pa.chunked_array([pa.array(["a", "b"]).dictionary_encode(), pa.array(["c", "a"]).dictionary_encode()])
    check_category_counts(pa.table({"plan": chunks}), ["plan"])
    with pytest.raises(ValidationError, match="'customer'"):
        check_category_counts(ids.set_column(0, "customer", ids.column(0).dictionary_encode()), ["customer"])
    codes = table_columns(pa.table({"plan": chunks}), ["plan"])[:, 0]
    assert codes.tolist() == [category_code(v) for v in ("a", "b", "c", "a")]


def test_column_array_reads_a_null_of_a_dictionary_column_as_none() -> None:
    # pyarrow's ChunkedArray.to_numpy gives this null the value 'b' (26.0.1): the smoke rows, gate slices
    # and targets read through column_array
    chunked = pa.chunked_array([pa.array(["a", "b", None]).dictionary_encode()])
    assert column_array(chunked).tolist() == ["a", "b", None]
    assert column_array(pa.chunked_array([[1.5, None]])).tolist()[0] == 1.5


def test_schema_changes_name_new_and_gone_values_of_a_listed_domain() -> None:
    from raymlops.data.schema import schema_changes

    old = Schema((ColumnSchema("city", "string", False, domain=("Busan", "Daegu", "Seoul")),
                  ColumnSchema("rating", "int64", False, domain=(1, 2, 3, 4, 5)),
                  ColumnSchema("amt", "double", False)))
    cities = ("Busan", "Incheon", "Seoul", *(f"c{i}" for i in range(6)))
    new = Schema((ColumnSchema("city", "string", False, domain=cities),
                  ColumnSchema("rating", "int64", False, domain=(1, 2, 3, 4, 5)),
                  ColumnSchema("amt", "double", True)))
    assert schema_changes(old, new) == [
        "column 'city': new values 'Incheon', 'c0', 'c1', 'c2', 'c3' and 2 more",
        "column 'city': values gone 'Daegu'",
        "column 'amt': now has nulls",
    ]
    assert schema_changes(old, old) == []
    # a domain only one side lists (too many values to list) is no change
    wide = Schema((ColumnSchema("city", "string", False, domain=None), *old.columns[1:]))
    assert schema_changes(old, wide) == []


def test_a_target_missing_from_a_one_column_table_says_how_the_file_was_split() -> None:
    schema = Schema((ColumnSchema("a;b;y", "string", False),))
    with pytest.raises(ValidationError, match=r"data.target: column 'y' not found .*separated by ';', not commas"):
        check_training_schema(schema, "y", None)
    tabbed = Schema((ColumnSchema("a\tb", "string", False), ColumnSchema("y", "int64", False)))
    with pytest.raises(ValidationError) as info:
        check_training_schema(tabbed, "z", None)
    assert "separated" not in str(info.value)  # two columns: read as the file says


def test_ray_trains_read_tasks_count_rows_without_a_label_across_files(tmp_path: Path) -> None:
    """strategy: distributed reads the snapshot's files in Ray tasks (no whole table anywhere): each
    counts its unlabelled rows and the first one's global row number."""
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    from raymlops.train.boost_data import _label_counts, _Plan

    parts = []
    for i, labels in enumerate((["yes", "no"] * 50, ["no"] * 30 + [None] + ["yes"] * 68 + [None])):
        path = tmp_path / f"part-{i}.parquet"
        pq.write_table(pa.table({"x": np.arange(100.0), "y": labels}), path)
        parts.append({"path": str(path), "offset": 100 * i, "rows": 100})
    plan = _Plan(pafs.LocalFileSystem(), ("x",), "y", 0.2, 0.1, 0, None, 2, None)
    out = _label_counts(pa.Table.from_pylist(parts), plan=plan, total=200).to_pylist()[0]
    assert (out["missing"], out["first_missing"]) == (2, 130)
