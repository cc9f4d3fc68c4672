"""Schema inference and training checks on Arrow tables (raymlops.data.schema)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from raymlops.data.schema import ColumnSchema, Schema, check_training_schema, infer_schema, table_columns
from raymlops.exceptions import ValidationError


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
    with pytest.raises(ValidationError, match=r"data.target: column 'income' has missing values"):
        check_training_schema(infer_schema(table), "income", ["age"])


def test_non_numeric_feature(table: pa.Table) -> None:
    with pytest.raises(ValidationError) as info:
        check_training_schema(infer_schema(table), "label", ["age", "city"])
    assert "'city'" in str(info.value) and "string" in str(info.value)


def test_non_numeric_feature_found_by_default_selection(table: pa.Table) -> None:
    with pytest.raises(ValidationError, match="'city'"):
        check_training_schema(infer_schema(table), "label", None)


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
