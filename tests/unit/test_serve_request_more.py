"""More request classes (raymlops.serve.request): content type, encoding, domain policy, routing key,
nullable features, and the fast path agreeing with the slow one."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from raymlops.serve.request import (
    DomainPolicy,
    RequestError,
    Signature,
    check_content_type,
    parse_predict_request,
)

SIG = Signature.from_dict({"inputs": [{"name": "age", "min": 18, "max": 90}, {"name": "income", "min": 0, "max": 1e6},
                                      {"name": "score", "min": 0, "max": 1, "allow_nan": True}]})


def _parse(body: Any, **kw: Any) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_predict_request(raw, SIG, kw.pop("max_rows", 100), kw.pop("max_bytes", 100_000), **kw)


def _error(body: Any, **kw: Any) -> RequestError:
    with pytest.raises(RequestError) as info:
        _parse(body, **kw)
    return info.value


@pytest.mark.parametrize("ctype", [None, "", "application/json", "application/json; charset=utf-8",
                                   "Application/JSON;charset=UTF-8", "application/vnd.api+json", "text/json"])
def test_json_content_types_are_accepted(ctype: str | None) -> None:
    check_content_type(ctype)


@pytest.mark.parametrize("ctype", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; b=x",
                                   "application/json; charset=latin-1", "application/octet-stream"])
def test_other_content_types_are_415(ctype: str) -> None:
    with pytest.raises(RequestError) as info:
        check_content_type(ctype)
    assert info.value.status == 415 and info.value.error == "unsupported_media_type"
    assert "application/json" in info.value.message or "UTF-8" in info.value.message


def test_non_utf8_bytes_are_400_naming_the_encoding() -> None:
    err = _error(b'{"inputs": [[1, 2, 0.5]], "x": "\xff\xfe"}')
    assert err.status == 400 and err.error == "malformed_json" and "UTF-8" in err.message


@pytest.mark.parametrize("raw", [b"", b"   \n"])
def test_empty_body_is_400_saying_so(raw: bytes) -> None:
    err = _error(raw)
    assert err.status == 400 and "empty" in err.message


def test_huge_numbers_are_422_not_500() -> None:
    raw = b'{"inputs": [[' + b"9" * 5000 + b", 1e999, 0.5]]}"
    err = _error(raw)
    assert err.status == 422 and err.details[0]["field"] == "age" and err.details[1]["field"] == "income"
    assert "2 problems" not in err.message and "1 more problem" in err.message


def test_every_bad_cell_is_listed_up_to_a_limit() -> None:
    err = _error({"inputs": [["x", "y", "z"]] * 30})
    assert err.status == 422 and len(err.details) == 20 and "89 more problems" in err.message


def test_training_range_policy_names_row_field_and_range() -> None:
    policy = DomainPolicy("training_range")
    ok = _parse({"instances": [{"age": 18, "income": 0, "score": 1}]}, policy=policy)
    assert ok.X.shape == (1, 3)
    err = _error({"instances": [{"age": 30, "income": 5, "score": 0.5}, {"age": 150, "income": 5, "score": 0.5}]},
                 policy=policy)
    assert err.status == 422 and err.error == "out_of_domain"
    assert "row 1" in err.message and "'age'" in err.message and "[18, 90]" in err.message
    assert err.details == [{"row": 1, "field": "age", "expected": "within the training range", "found": 150.0,
                            "min": 18.0, "max": 90.0}]
    assert _parse({"inputs": [[95, 5, 0.5]]}, policy=DomainPolicy("training_range", margin=0.1)).X[0, 0] == 95
    assert _parse({"inputs": [[150, 5, 0.5]]}).X[0, 0] == 150  # the default policy accepts any finite number


def test_nullable_feature_takes_null_and_nan_others_do_not() -> None:
    out = _parse(b'{"inputs": [[20, 1, null], [20, 1, NaN]]}')
    assert np.isnan(out.X[:, 2]).all()
    err = _error(b'{"inputs": [[null, 1, 0.5]]}')
    assert err.status == 422 and err.details[0] == {"row": 0, "field": "age", "expected": "number",
                                                   "found": "NoneType"}
    err = _error(b'{"inputs": [[20, NaN, 0.5]]}')
    assert err.details[0]["field"] == "income" and err.details[0]["expected"] == "finite number"


def test_routing_key_comes_from_the_key_field_which_is_no_feature() -> None:
    body = {"instances": [{"age": 20, "income": 1, "score": 0.5, "customer": 12345},
                          {"age": 21, "income": 1, "score": 0.5, "customer": 99}]}
    parsed = _parse(body, key_column="customer")
    assert parsed.key == "12345" and parsed.X.shape == (2, 3) and parsed.rows == 2
    err = _error(body)  # without a key column the field is unknown
    assert err.error == "unknown_feature" and err.details[0]["field"] == "customer"
    assert _parse({"instances": [{"age": 20, "income": 1, "score": 0.5}]}, key_column="customer").key is None


@pytest.mark.parametrize("body", [
    {"instances": [{"age": 20, "income": 1, "score": 0.5}, {"age": 21.5, "income": -3, "score": 0}]},
    {"inputs": [[20, 1, 0.5], [21.5, -3, 0]]},
])
def test_fast_path_gives_exact_values_in_signature_order(body: Any) -> None:
    np.testing.assert_array_equal(_parse(body).X, [[20.0, 1.0, 0.5], [21.5, -3.0, 0.0]])


def test_large_valid_request_parses_quickly() -> None:
    import time

    rows = [{"age": 20 + i % 50, "income": float(i), "score": 0.5} for i in range(1000)]
    raw = json.dumps({"instances": rows}).encode()
    t = time.perf_counter()
    out = parse_predict_request(raw, SIG, 1000, 10_000_000)
    assert out.X.shape == (1000, 3) and time.perf_counter() - t < 0.5
