"""Property-based fuzzing of the serving request body (raymlops.serve.request), no Ray.

Whatever the bytes, parsing either returns a finite float matrix of the signature's width or
raises a RequestError with a 4xx status, a known error code and a message that names what is
wrong (the row and field for a bad cell); nothing else ever escapes (that would be a 500)."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raymlops.serve.request import DomainPolicy, RequestError, Signature, parse_predict_request

FEATURES = ("a", "b", "c", "d")
SIG = Signature(features=FEATURES, bounds=((-3.0, 3.0),) * 4)
NULLABLE = Signature(features=FEATURES, bounds=((-3.0, 3.0),) * 4, allow_nan=(True, False, False, False))
MAX_ROWS, MAX_BYTES = 50, 64_000
CODES = {400: {"malformed_json", "bad_request"}, 413: {"payload_too_large", "too_many_rows"},
         415: {"unsupported_media_type"},
         422: {"invalid_request", "invalid_row", "missing_feature", "unknown_feature", "invalid_value",
               "out_of_domain"}}
FUZZ = settings(max_examples=200, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

scalars = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(min_value=-(10**400), max_value=10**400),
    st.booleans(), st.none(), st.text(max_size=8),
    st.sampled_from(["1.5", "1e309", "NaN", "-inf", "0x10", "", "category-never-seen", "../../etc/passwd"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                        st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                      max_leaves=6)
keys = st.one_of(st.sampled_from(FEATURES), st.sampled_from(["a/b", "../a", "a\x00", "é", "", "id"]),
                 st.text(max_size=6))
named_rows = st.dictionaries(keys, values, max_size=6)
good_named = st.fixed_dictionaries({n: st.floats(-3, 3) for n in FEATURES})
ordered_rows = st.lists(values, min_size=0, max_size=6)
bodies = st.one_of(
    st.fixed_dictionaries({"instances": st.lists(st.one_of(named_rows, good_named, values), max_size=8)}),
    st.fixed_dictionaries({"inputs": st.lists(st.one_of(ordered_rows, st.lists(st.floats(-3, 3), min_size=4,
                                                                                max_size=4)), max_size=8)}),
    st.dictionaries(st.sampled_from(["instances", "inputs", "data", "x"]), values, max_size=3),
    values,
)


def _check(raw: bytes, signature: Signature = SIG, policy: DomainPolicy | None = None,
           content_type: str | None = "application/json") -> np.ndarray | RequestError:
    try:
        parsed = parse_predict_request(raw, signature, MAX_ROWS, MAX_BYTES, content_type=content_type,
                                       policy=policy, key_column="id")
    except RequestError as err:
        assert err.error in CODES[err.status], (err.status, err.error)
        assert err.message.strip() and "\n" not in err.message
        body = err.body()
        json.dumps(body)  # the response body is always JSON-serialisable
        details = body.get("details", [])
        assert all("row" in d for d in details)  # every detail names its row ...
        if err.error in ("missing_feature", "unknown_feature", "invalid_value", "out_of_domain"):
            assert repr(details[0]["field"]) in err.message, (details[0], err.message)  # ... the first its field
        if err.error in ("invalid_value", "out_of_domain", "missing_feature", "unknown_feature", "invalid_row"):
            assert err.message.startswith("row "), err.message  # ... and so does the message
        return err
    X = parsed.X
    assert X.ndim == 2 and X.shape[1] == len(signature.features) and 1 <= X.shape[0] <= MAX_ROWS
    allow = np.asarray(signature.allow_nan or (False,) * 4)
    assert (np.isfinite(X) | (np.isnan(X) & allow)).all()
    return X


@FUZZ
@given(st.binary(max_size=2_000))
def test_arbitrary_bytes_never_escape(raw: bytes) -> None:
    _check(raw)


@FUZZ
@given(bodies, st.booleans(), st.sampled_from([None, DomainPolicy("training_range", 0.1)]))
def test_json_bodies_are_parsed_or_rejected_by_name(body: Any, nullable: bool, policy: DomainPolicy | None) -> None:
    raw = json.dumps(body, allow_nan=True).encode()
    _check(raw, NULLABLE if nullable else SIG, policy)


@FUZZ
@given(st.text(max_size=40), st.binary(max_size=200))
def test_content_types_and_charsets(content_type: str, raw: bytes) -> None:
    _check(raw, content_type=content_type)


@FUZZ
@given(st.lists(good_named, min_size=1, max_size=MAX_ROWS))
def test_every_valid_body_is_accepted_in_signature_order(rows: list[dict[str, float]]) -> None:
    shuffled = [dict(reversed(list(r.items()))) for r in rows]  # key order must not matter
    X = _check(json.dumps({"instances": shuffled}).encode())
    assert isinstance(X, np.ndarray)
    np.testing.assert_array_equal(X, np.array([[r[n] for n in FEATURES] for r in rows]))


# -- the hostile inputs named in the issue, one by one -------------------------------------------
def _err(raw: bytes, **kw: Any) -> RequestError:
    out = _check(raw, **kw)
    assert isinstance(out, RequestError), f"accepted: {raw[:80]!r}"
    return out


def test_hostile_inputs_get_their_own_named_rejection() -> None:
    row = {n: 0.5 for n in FEATURES}
    huge = _err(b'{"instances": [' + b"1," * 40_000 + b"1]}")
    assert huge.status == 413 and huge.error == "payload_too_large" and str(MAX_BYTES) in huge.message
    nested = _err(b"[" * 20_000 + b"]" * 20_000)  # 40 KB: under the limit, deeper than the JSON parser goes
    assert nested.status == 400 and "nested too deeply" in nested.message
    nested_obj = _err(json.dumps({"instances": [{**row, "a": {"x": {"y": [1]}}}]}).encode())
    assert nested_obj.error == "invalid_value" and "'a'" in nested_obj.message
    latin = _err('{"instances": [{"a": "é"}]}'.encode("latin-1"))
    assert latin.status == 400 and "not UTF-8" in latin.message
    as_string = _err(json.dumps({"instances": [{**row, "b": "1.5"}]}).encode())
    assert as_string.error == "invalid_value" and "'b'" in as_string.message and "str" in as_string.message
    overflow = _err(b'{"inputs": [[1e309, 0, 0, 0]]}')
    assert overflow.error == "invalid_value" and "'a'" in overflow.message and "inf" in overflow.message
    big_int = _err(('{"inputs": [[' + "9" * 5_000 + ', 0, 0, 0]]}').encode())
    assert big_int.error == "invalid_value" and "'a'" in big_int.message
    category = _err(json.dumps({"instances": [{**row, "c": "category-never-seen"}]}).encode())
    assert category.error == "invalid_value" and "'c'" in category.message
    path_col = _err(json.dumps({"instances": [{**row, "../../etc/passwd": 1.0}]}).encode())
    assert path_col.error == "unknown_feature" and "'../../etc/passwd'" in path_col.message
    nan = _err(b'{"inputs": [[NaN, 0, 0, 0]]}')
    assert nan.error == "invalid_value" and "'a'" in nan.message
    far = _err(json.dumps({"inputs": [[1e6, 0, 0, 0]]}).encode(), policy=DomainPolicy("training_range", 0.0))
    assert far.error == "out_of_domain" and "'a'" in far.message
    many = _err(json.dumps({"inputs": [[0, 0, 0, 0]] * (MAX_ROWS + 1)}).encode())
    assert many.status == 413 and many.error == "too_many_rows"
    assert math.isfinite(float(_check(json.dumps({"inputs": [[0, 0, 0, 0]]}).encode())[0, 0]))  # type: ignore[index]
