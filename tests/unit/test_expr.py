"""Safe expressions (raymlops.expr): what parses, what it computes, and what is refused."""

from __future__ import annotations

import pyarrow as pa
import pytest

from raymlops.exceptions import ValidationError
from raymlops.expr import FUNCTIONS, parse


@pytest.fixture()
def table() -> pa.Table:
    return pa.table({
        "age": pa.array([17, 18, None, 40], pa.int64()),
        "income": pa.array([0.0, 10.0, 5.0, None]),
        "status": pa.array(["student", "x", None, "y"]),
        "unit price": pa.array([1.5, 2.0, 2.5, 3.0]),
    })


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("age >= 18", [False, True, None, True]),
        ("income > 0 or status == 'student'", [True, True, True, None]),  # SQL logic: null or true is true
        ("income > 0 and status == 'x'", [False, True, None, False]),  # null and false is false
        ("not age > 20", [True, True, None, False]),
        ("0 < age <= 18", [True, True, None, False]),
        ("status in ('x', 'y')", [False, True, None, True]),
        ("status not in ['x']", [True, False, None, True]),
        ("age is None", [False, False, True, False]),
        ("age is not None", [True, True, False, True]),
        ("age / 2", [8.5, 9.0, None, 20.0]),  # true division, even of integers
        ("age * 2 + 1", [35, 37, None, 81]),
        ("-age", [-17, -18, None, -40]),
        ("2 ** 3", [8.0] * 4),
        ("col('unit price') * 2", [3.0, 4.0, 5.0, 6.0]),
        ("where(age > 20, 'old', 'young')", ["young", "young", None, "old"]),
        ("is_null(status)", [False, False, True, False]),
        ("coalesce(age, 0)", [17, 18, 0, 40]),
        ("max(age, 20)", [20, 20, 20, 40]),
        ("length(upper(status))", [7, 1, None, 1]),
        ("round(log(income + 1), 3)", [0.0, 2.398, 1.792, None]),
        ("abs(income - 5)", [5.0, 5.0, 0.0, None]),
        ("true", [True] * 4),
    ],
)
def test_expressions_compute_column_wise(table: pa.Table, text: str, expected: list) -> None:
    assert parse(text).evaluate(table).to_pylist() == expected


def test_mask_treats_unknown_as_false_and_lists_columns(table: pa.Table) -> None:
    expr = parse("income > 0 or status == 'student'")
    assert expr.mask(table).to_pylist() == [True, True, True, False]
    assert expr.columns == ("income", "status")
    with pytest.raises(ValidationError, match="expected a true/false condition"):
        parse("age + 1").mask(table)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os')", "function '__import__' is not allowed"),
        ("__import__('os').system('echo hi')", "attribute access ('.system')"),
        ("eval('1 + 1')", "function 'eval' is not allowed"),
        ("open('/etc/passwd')", "function 'open' is not allowed"),
        ("getattr(age, 'real')", "function 'getattr' is not allowed"),
        ("age.real", "attribute access ('.real')"),
        ("().__class__.__bases__", "attribute access"),
        ("age[0]", "indexing"),
        ("lambda: 1", "lambda"),
        ("[a for a in age]", "a comprehension"),
        ("f'{age}'", "an f-string"),
        ("abs(x=age)", "keyword arguments are not allowed"),
        ("abs(*age)", "*arguments are not allowed"),
        ("age // 2", "the operator FloorDiv is not allowed"),
        ("(y := 1)", "assignment"),
        ("age if age else 0", "use where(c, x, y)"),
        ("age is 1", "'is' only compares with None"),
        ("age in other", "'in' needs a literal list"),
        ("age in (other,)", "'in' lists may only hold constants"),
        ("abs(age, income)", "abs() takes 1 argument, found 2"),
        ("col(age)", "col() takes one string"),
        ("age >", "not a valid expression"),
        ("", "expected a non-empty expression"),
        ("b'bytes' == age", "the constant b'bytes' is not allowed"),
    ],
)
def test_anything_outside_the_whitelist_is_refused(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse(text)
    assert message in str(info.value)


def test_size_limits() -> None:
    with pytest.raises(ValidationError, match="longer than"):
        parse("a + " * 2000 + "a")
    with pytest.raises(ValidationError, match="too complex"):
        parse(" + ".join(["a"] * 400))


def test_runtime_problems_name_the_expression(table: pa.Table) -> None:
    with pytest.raises(ValidationError, match=r"expression 'nope > 1': column 'nope' not found \(columns: age"):
        parse("nope > 1").evaluate(table)
    with pytest.raises(ValidationError, match="cannot apply it to these column types"):
        parse("status > 1").evaluate(table)


def test_only_pyarrow_compute_runs(table: pa.Table) -> None:
    # every whitelisted function maps to a vectorised implementation, and nothing reaches builtins
    assert "eval" not in FUNCTIONS and "__import__" not in FUNCTIONS and "getattr" not in FUNCTIONS
    assert parse("age >= 18").evaluate(table.slice(0, 0)).to_pylist() == []
