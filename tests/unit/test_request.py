"""Request parsing against a model signature (raymlops.serve.request): pure, no Ray, no Serve."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from raymlops.features import category_code
from raymlops.serve.request import DomainPolicy, RequestError, Signature, parse_predict_request

SIG = Signature(features=("age", "income", "score"))
MAX_ROWS = 5
MAX_BYTES = 10_000


def _parse(body: Any, *, max_rows: int = MAX_ROWS, max_bytes: int = MAX_BYTES) -> np.ndarray:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_predict_request(raw, SIG, max_rows, max_bytes).X


def _error(body: Any, **limits: int) -> RequestError:
    with pytest.raises(RequestError) as info:
        _parse(body, **limits)
    return info.value


# ---------------------------------------------------------------------------- valid bodies


def test_instances_are_returned_in_signature_order() -> None:
    out = _parse(
        {
            "instances": [
                {"score": 0.5, "age": 30, "income": 1000.25},
                {"income": -1, "score": 2, "age": 45.5},
            ]
        }
    )
    assert out.dtype == np.float64 and out.shape == (2, 3)
    np.testing.assert_array_equal(out, [[30.0, 1000.25, 0.5], [45.5, -1.0, 2.0]])


def test_inputs_are_taken_in_order() -> None:
    out = _parse({"inputs": [[1, 2, 3.5], [4, 5, 6]]})
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [[1.0, 2.0, 3.5], [4.0, 5.0, 6.0]])


def test_exactly_max_rows_is_accepted() -> None:
    assert _parse({"inputs": [[0, 0, 0]] * MAX_ROWS}).shape == (MAX_ROWS, 3)


def test_another_top_level_field_is_400_naming_it() -> None:
    """Not ignored: a client's ``parameters`` (a threshold, say) would silently have no effect."""
    err = _error({"inputs": [[1, 2, 3]], "parameters": {"x": 1}, "id": 7})
    assert err.status == 400 and err.error == "bad_request"
    assert "'id', 'parameters'" in err.message and "only 'inputs'" in err.message


def test_signature_from_dict_keeps_order() -> None:
    sig = Signature.from_dict({"inputs": [{"name": "b"}, {"name": "a"}], "classes": [0, 1]})
    assert sig.features == ("b", "a") and sig.classes == (0, 1) and sig.output == "classification"
    out = parse_predict_request(b'{"instances": [{"a": 1, "b": 2}]}', sig, 10, 1000).X
    np.testing.assert_array_equal(out, [[2.0, 1.0]])


# ---------------------------------------------------------------------------- 400


@pytest.mark.parametrize("raw", [b"{", b"not json", b"", b"{'instances': []}", b"\xff\xfe{}"])
def test_malformed_json_is_400(raw: bytes) -> None:
    err = _error(raw)
    assert err.status == 400 and err.error == "malformed_json"
    assert err.body()["error"] == "malformed_json" and "message" in err.body()


@pytest.mark.parametrize("body", [[[1, 2, 3]], "instances", 3, None])
def test_non_object_body_is_400(body: Any) -> None:
    err = _error(body)
    assert err.status == 400 and "instances" in err.message


@pytest.mark.parametrize(
    "body",
    [{"instances": [{"age": 1, "income": 2, "score": 3}], "inputs": [[1, 2, 3]]}, {"rows": [[1, 2, 3]]}, {}],
    ids=["both", "neither", "empty-object"],
)
def test_exactly_one_of_instances_or_inputs_is_400(body: Any) -> None:
    err = _error(body)
    assert err.status == 400 and "exactly one" in err.message


# ---------------------------------------------------------------------------- 422


@pytest.mark.parametrize("body", [{"instances": []}, {"inputs": []}, {"inputs": {"a": 1}}, {"instances": "x"}])
def test_empty_or_non_list_rows_are_422(body: Any) -> None:
    assert _error(body).status == 422


def test_missing_feature_names_row_and_field() -> None:
    err = _error({"instances": [{"age": 1, "income": 2, "score": 3}, {"age": 1, "score": 3}]})
    assert err.status == 422 and err.error == "missing_feature"
    assert "row 1" in err.message and "'income'" in err.message
    body = err.body()
    assert body["details"] == [{"row": 1, "field": "income", "error": "missing"}]
    json.dumps(body)  # the body is what Serve returns: it must be JSON


def test_all_missing_features_are_listed() -> None:
    err = _error({"instances": [{"income": 2}]})
    assert [d["field"] for d in err.body()["details"]] == ["age", "score"]


def test_unknown_feature_is_422() -> None:
    err = _error({"instances": [{"age": 1, "income": 2, "score": 3, "height": 180}]})
    assert err.status == 422 and err.error == "unknown_feature"
    assert err.body()["details"] == [{"row": 0, "field": "height", "error": "unknown"}]


@pytest.mark.parametrize(
    ("value", "found"),
    [("1.5", "str"), (True, "bool"), (False, "bool"), (None, "NoneType"), ([1], "list"), ({"v": 1}, "dict")],
)
def test_non_numbers_are_422_naming_row_and_field(value: Any, found: str) -> None:
    err = _error({"instances": [{"age": 1, "income": 2, "score": 3}, {"age": 1, "income": value, "score": 3}]})
    assert err.status == 422 and err.error == "invalid_value"
    assert "row 1" in err.message and "'income'" in err.message
    assert err.body()["details"] == [{"row": 1, "field": "income", "expected": "number", "found": found}]


def test_bool_in_inputs_is_422_naming_the_feature() -> None:
    err = _error({"inputs": [[1, 2, 3], [1, 2, True]]})
    assert err.status == 422
    assert err.body()["details"][0]["row"] == 1 and err.body()["details"][0]["field"] == "score"


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
def test_non_finite_numbers_are_422(literal: bytes) -> None:
    raw = b'{"instances": [{"age": 1, "income": ' + literal + b', "score": 3}]}'
    err = _error(raw)
    assert err.status == 422 and err.error == "invalid_value"
    assert err.body()["details"][0] == {
        "row": 0,
        "field": "income",
        "expected": "finite number",
        "found": str(json.loads(b"[" + literal + b"]")[0]),
    }


def test_non_finite_in_inputs_is_422() -> None:
    err = _error(b'{"inputs": [[1, NaN, 3]]}')
    assert err.status == 422 and err.body()["details"][0]["field"] == "income"


@pytest.mark.parametrize("row", [[1, 2], [1, 2, 3, 4], [], {"age": 1}, 5])
def test_wrong_row_shape_for_inputs_is_422(row: Any) -> None:
    err = _error({"inputs": [[1, 2, 3], row]})
    assert err.status == 422 and err.error == "invalid_row"
    assert err.body()["details"] == [{"row": 1, "expected": "list of 3"}]


def test_non_object_row_for_instances_is_422() -> None:
    err = _error({"instances": [[1, 2, 3]]})
    assert err.status == 422 and err.body()["details"] == [{"row": 0, "expected": "object"}]


def test_huge_integer_is_422_not_a_crash() -> None:
    raw = b'{"inputs": [[1' + b"0" * 400 + b", 2, 3]]}"
    err = _error(raw)
    assert err.status == 422 and err.body()["details"][0]["field"] == "age"


# ---------------------------------------------------------------------------- 413


def test_too_many_rows_is_413() -> None:
    err = _error({"inputs": [[1, 2, 3]] * (MAX_ROWS + 1)})
    assert err.status == 413 and err.error == "too_many_rows"
    assert str(MAX_ROWS + 1) in err.message and str(MAX_ROWS) in err.message


def test_body_over_max_bytes_is_413_before_parsing() -> None:
    raw = b"{" * 101  # not even JSON: the size check comes first
    err = _error(raw, max_bytes=100)
    assert err.status == 413 and err.error == "payload_too_large"
    assert _parse(b'{"inputs": [[1, 2, 3]]}', max_bytes=len(b'{"inputs": [[1, 2, 3]]}')).shape == (1, 3)


# ---------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"instances": [{"age": ' + b"[" * 50_000 + b"]" * 50_000 + b', "income": 1, "score": 1}]}',
        b'{"inputs": [' + b"[" * 500 + b"]" * 500 + b"]}",
        b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
    ],
    ids=["lists", "inputs-lists", "instance-value", "shallow-500", "objects"],
)
def test_deep_nesting_is_a_client_error(raw: bytes) -> None:
    err = _error(raw, max_bytes=1_000_000)
    assert err.status in (400, 422)
    json.dumps(err.body())


def test_request_error_body_without_details() -> None:
    err = _error({"instances": []})
    assert "details" not in err.body()
    assert set(err.body()) == {"error", "message"}


# ---------------------------------------------------------------------------- string (categorical) features

MIXED = Signature.from_dict({"inputs": [
    {"name": "plan", "type": "string", "categories": ["basic", "pro"], "nullable": False},
    {"name": "region", "type": "string", "categories": ["north", "south"], "nullable": True},
    {"name": "fee", "type": "double", "min": 0.0, "max": 100.0, "nullable": True},
]})


def _mixed(body: Any, policy: DomainPolicy | None = None, key_column: str | None = None) -> Any:
    return parse_predict_request(json.dumps(body).encode(), MIXED, MAX_ROWS, MAX_BYTES, policy=policy,
                                 key_column=key_column)


def test_string_features_become_their_codes_and_null_is_nan_where_nullable() -> None:
    got = _mixed({"instances": [{"fee": 10, "region": None, "plan": "pro"},
                                {"plan": "basic", "region": "south", "fee": None}]}).X
    assert got[0, 0] == category_code("pro") and np.isnan(got[0, 1]) and got[0, 2] == 10.0
    assert got[1, 0] == category_code("basic") and got[1, 1] == category_code("south") and np.isnan(got[1, 2])
    same = _mixed({"inputs": [["pro", None, 10], ["basic", "south", None]]}).X
    assert np.array_equal(same, got, equal_nan=True)
    assert MIXED.categorical and not SIG.categorical


def test_an_unseen_category_is_answered_under_any_and_422_under_training_range() -> None:
    body = {"instances": [{"plan": "basic", "region": "north", "fee": 1.0},
                          {"plan": "gold", "region": "north", "fee": 1.0}]}
    assert _mixed(body).X[1, 0] == category_code("gold")  # the model's one-hot encoder ignores it
    with pytest.raises(RequestError) as info:
        _mixed(body, DomainPolicy("training_range"))
    err = info.value
    assert err.status == 422 and err.error == "out_of_domain"
    assert err.details[0]["row"] == 1 and err.details[0]["field"] == "plan" and err.details[0]["found"] == "gold"
    assert "'basic'" in err.message and err.details[0]["categories"] == ["basic", "pro"]


@pytest.mark.parametrize("row, field, expected, found", [
    ({"plan": 3.0, "region": "north", "fee": 1.0}, "plan", "string", "float"),
    ({"plan": None, "region": "north", "fee": 1.0}, "plan", "string", "NoneType"),  # not nullable
    ({"plan": True, "region": "north", "fee": 1.0}, "plan", "string", "bool"),
    ({"plan": "pro", "region": "north", "fee": "1"}, "fee", "number", "str"),
    ({"plan": "pro", "region": ["north"], "fee": 1.0}, "region", "string", "list"),
])
def test_a_wrong_kind_of_value_is_422_naming_row_field_and_expectation(
        row: dict[str, Any], field: str, expected: str, found: str) -> None:
    with pytest.raises(RequestError) as info:
        _mixed({"instances": [{"plan": "pro", "region": "north", "fee": 1.0}, row]})
    d = info.value.details[0]
    assert info.value.status == 422 and (d["row"], d["field"], d["expected"], d["found"]) == (1, field, expected, found)


def test_mixed_rows_keep_the_other_checks() -> None:
    for body, error in (({"instances": [{"plan": "pro", "region": "north"}]}, "missing_feature"),
                        ({"instances": [{"plan": "pro", "region": "north", "fee": 1.0, "x": 1}]}, "unknown_feature"),
                        ({"inputs": [["pro", "north"]]}, "invalid_row")):
        with pytest.raises(RequestError) as info:
            _mixed(body)
        assert info.value.error == error
    with pytest.raises(RequestError) as info:  # numbers keep their training range under the policy
        _mixed({"instances": [{"plan": "pro", "region": "north", "fee": 1e6}]}, DomainPolicy("training_range"))
    assert info.value.error == "out_of_domain" and info.value.details[0]["field"] == "fee"
    parsed = _mixed({"instances": [{"plan": "pro", "region": "north", "fee": 1.0, "user": 7}]}, key_column="user")
    assert parsed.key == "7" and parsed.X.shape == (1, 3)


def test_a_boolean_feature_takes_true_false_or_numbers() -> None:
    sig = Signature.from_dict({"inputs": [{"name": "member", "type": "boolean", "nullable": True},
                                          {"name": "fee", "type": "double"}]})
    got = parse_predict_request(json.dumps({"instances": [{"member": True, "fee": 1}, {"member": False, "fee": 2},
                                                          {"member": 1, "fee": 3}, {"member": None, "fee": 4}]}
                                           ).encode(), sig, MAX_ROWS, MAX_BYTES).X
    assert got[:3].tolist() == [[1.0, 1.0], [0.0, 2.0], [1.0, 3.0]] and np.isnan(got[3, 0])
    # a number other than 1 / 0 is no boolean (the model would answer it, confidently)
    for row, field in (({"member": "yes", "fee": 1}, "member"), ({"member": True, "fee": True}, "fee"),
                       ({"member": 7, "fee": 1}, "member"), ({"member": 0.5, "fee": 1}, "member")):
        with pytest.raises(RequestError) as info:
            parse_predict_request(json.dumps({"instances": [row]}).encode(), sig, MAX_ROWS, MAX_BYTES)
        assert info.value.status == 422 and info.value.details[0]["field"] == field
    assert SIG.kind(0) == "number" and sig.kind(0) == "boolean" and MIXED.kind(0) == "string"
