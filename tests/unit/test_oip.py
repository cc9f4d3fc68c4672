"""Open Inference Protocol v2 REST, the pure half (raymlops.serve.oip): the protocol's own JSON
examples, both input layouts, the binary tensor extension, errors, metadata and responses."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from raymlops.features import category_code
from raymlops.serve import oip
from raymlops.serve.request import DomainPolicy, Signature

SIG = Signature(features=("a", "b"), classes=(0, 1), bounds=((0.0, 10.0), (0.0, 10.0)))
OUTS = oip.outputs_of(True)


def parse(body: Any, signature: Signature = SIG, **kw: Any) -> oip.InferRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    args: dict[str, Any] = {"outputs": OUTS, "max_rows": 100, "max_bytes": 1 << 20} | kw
    return oip.parse_infer_request(raw, signature, **args)


def error_of(body: Any, **kw: Any) -> oip.OipError:
    with pytest.raises(oip.OipError) as info:
        parse(body, **kw)
    return info.value


# the inference request example of the specification (inference_rest.md, "Inference Request Examples")
SPEC_REQUEST = {
    "id": "42",
    "inputs": [
        {"name": "input0", "shape": [2, 2], "datatype": "UINT32", "data": [1, 2, 3, 4]},
        {"name": "input1", "shape": [3], "datatype": "BOOL", "data": [True]},
    ],
    "outputs": [{"name": "output0"}],
}


def test_the_spec_example_is_refused_with_the_protocols_error_object() -> None:
    exc = error_of(SPEC_REQUEST)
    assert exc.status == 400 and set(exc.body()) == {"error"}
    assert "output0" in exc.message  # this model's outputs are predict / predict_proba
    body = dict(SPEC_REQUEST, outputs=[{"name": "predict"}])
    # BOOL is a datatype this server takes for boolean features; this model's are numbers
    assert "input 'input1': datatype BOOL is for boolean features, and features 'a', 'b' are numbers" \
        in error_of(body).message


def test_the_spec_example_2d_tensor_is_rows_in_signature_order() -> None:
    body = dict(SPEC_REQUEST, inputs=SPEC_REQUEST["inputs"][:1], outputs=[{"name": "predict"}])
    req = parse(body)
    assert req.id == "42" and req.outputs == ("predict",) and req.binary == frozenset()
    np.testing.assert_array_equal(req.X, [[1.0, 2.0], [3.0, 4.0]])
    assert req.X.dtype == np.float64


def test_tensor_data_nested_or_flat_is_the_same_tensor() -> None:
    # "data" : [ [ 1, 2 ], [ 4, 5 ] ] or "data" : [ 1, 2, 4, 5 ] (the specification's Tensor Data section)
    flat = parse({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 4, 5]}]})
    nested = parse({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [[1, 2], [4, 5]]}]})
    np.testing.assert_array_equal(flat.X, nested.X)
    assert nested.outputs == OUTS


def test_one_tensor_per_feature_in_any_order() -> None:
    req = parse({"inputs": [{"name": "b", "shape": [3], "datatype": "INT64", "data": [4, 5, 6]},
                            {"name": "a", "shape": [3, 1], "datatype": "FP32", "data": [[1.5], [2.5], [3.5]]}]})
    np.testing.assert_array_equal(req.X, [[1.5, 4], [2.5, 5], [3.5, 6]])


@pytest.mark.parametrize(("inputs", "words"), [
    ([{"name": "a", "shape": [1], "datatype": "FP64", "data": [1]}], "missing input 'b'"),
    ([{"name": "a", "shape": [1], "datatype": "FP64", "data": [1]},
      {"name": "z", "shape": [1], "datatype": "FP64", "data": [1]}], "unknown input 'z'"),
    ([{"name": "a", "shape": [1], "datatype": "FP64", "data": [1]},
      {"name": "a", "shape": [1], "datatype": "FP64", "data": [1]}], "given twice"),
    ([{"name": "a", "shape": [2], "datatype": "FP64", "data": [1, 2]},
      {"name": "b", "shape": [1], "datatype": "FP64", "data": [1]}], "different row counts: a 2, b 1"),
    ([{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}], "takes [-1, 2]"),
    ([{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3]}], "needs 4 elements, found 3"),
    ([{"name": "x", "shape": [1, 2], "datatype": "BYTES", "data": ["a", "b"]}], "BYTES"),
    ([{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, "2"]}], "element 1 must be a number"),
    ([{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, True]}], "a boolean"),
    ([{"name": "x", "shape": [1, 2], "datatype": "INT8", "data": [1, 300]}],
     "element 1 (300) is not a value of datatype INT8"),
    ([{"name": "x", "shape": [1, 2], "datatype": "INT32", "data": [1, 2.5]}],
     "element 1 (2.5) is not a value of datatype INT32"),
    ([{"name": "x", "shape": [1, 2], "datatype": "INT64", "data": [1, 18446744073709551616]}],
     "element 1 (18446744073709551616) is not a value of datatype INT64"),
    # 2^63 as a float64 equals the largest INT64 as a float64: it was taken
    ([{"name": "x", "shape": [1, 2], "datatype": "INT64", "data": [1, 9223372036854775808]}],
     "element 1 (9223372036854775808) is not a value of datatype INT64"),
    ([{"name": "x", "shape": [1, 2], "datatype": "UINT64", "data": [1, 18446744073709551616]}],
     "element 1 (18446744073709551616) is not a value of datatype UINT64"),
    ([{"name": "x", "shape": [1, 2], "datatype": "INT32", "data": [1, 2147483648]}],
     "element 1 (2147483648) is not a value of datatype INT32"),
    # true / false for numbers (Triton refuses a datatype the model does not take)
    ([{"name": "x", "shape": [1, 2], "datatype": "BOOL", "data": [True, False]}],
     "datatype BOOL is for boolean features, and features 'a', 'b' are numbers"),
    ([{"name": "a", "shape": [1], "datatype": "BOOL", "data": [True]},
      {"name": "b", "shape": [1], "datatype": "FP64", "data": [1]}],
     "input 'a': datatype BOOL is for boolean features, and feature 'a' is a number"),
    ([{"name": "x", "shape": [1, -2], "datatype": "FP64", "data": [1, 2]}], "'shape'"),
    ([{"name": "x", "shape": [0, 2], "datatype": "FP64", "data": []}], "no rows"),
    ([{"name": "x", "shape": [1, 2], "datatype": "FP64"}], "'data' is missing"),
    ([{"shape": [1, 2], "datatype": "FP64", "data": [1, 2]}], "'name'"),
    ([["not", "an", "object"]], "must be an object"),
])
def test_bad_tensors_are_400_naming_the_problem(inputs: list[Any], words: str) -> None:
    exc = error_of({"inputs": inputs})
    assert exc.status == 400 and words in exc.message, exc.message


@pytest.mark.parametrize(("body", "words"), [
    (b"", "empty"), (b"{nope", "not valid JSON"), (b"[1]", "JSON object"), (b'{"inputs": []}', "non-empty"),
    (b'{"inputs": {}}', "non-empty"), (b'{"id": 7, "inputs": []}', "'id' must be a string, found a number: 7"),
    # the id names the request for /feedback: the X-Request-Id header's rule
    (b'{"id": "a b", "inputs": []}', "'id' 'a b': expected 1 to 128 characters of A-Z a-z 0-9 . _ : -"),
    (b'{"id": "", "inputs": []}', "'id' '': expected 1 to 128"),
    (b'{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}], "outputs": 3}', "'outputs'"),
])
def test_bad_bodies_are_400(body: bytes, words: str) -> None:
    exc = error_of(body)
    assert exc.status == 400 and words in exc.message, exc.message


def test_values_get_the_validation_of_predict() -> None:
    inf = error_of({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [1, 1e39]}]})
    assert inf.status == 400 and "finite" in inf.message and inf.kind == "invalid_value"
    null = error_of({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, None]}]})
    assert null.status == 400 and "element 1" in null.message
    nullable = Signature(features=("a", "b"), allow_nan=(False, True))
    req = parse({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, None]}]}, nullable)
    assert np.isnan(req.X[0, 1])
    out = error_of({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3, 40]}]},
                   policy=DomainPolicy("training_range", 0.5))
    assert out.status == 400 and out.kind == "out_of_domain" and "row 1, feature 'b'" in out.message
    rows = error_of({"inputs": [{"name": "x", "shape": [3, 2], "datatype": "FP64", "data": [1] * 6}]}, max_rows=2)
    assert rows.status == 413 and rows.kind == "too_many_rows"
    big = error_of({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]}, max_bytes=20)
    assert big.status == 413


def test_requested_outputs_and_binary_flags() -> None:
    x = [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]
    assert parse({"inputs": x, "outputs": [{"name": "predict_proba"}]}).outputs == ("predict_proba",)
    both = parse({"inputs": x, "parameters": {"binary_data_output": True}})
    assert both.outputs == OUTS and both.binary == frozenset(OUTS)
    one = parse({"inputs": x, "outputs": [{"name": "predict", "parameters": {"binary_data": True}},
                                          {"name": "predict_proba", "parameters": {"binary_data": False}}]})
    assert one.binary == frozenset({"predict"})
    regression = error_of({"inputs": x, "outputs": [{"name": "predict_proba"}]}, outputs=oip.outputs_of(False))
    assert regression.status == 400 and "predict_proba" in regression.message


def test_binary_tensor_extension() -> None:
    X = np.array([[1.25, 2.5], [3.0, 4.0]], dtype=np.float32)
    header = json.dumps({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32",
                                     "parameters": {"binary_data_size": X.nbytes}}]}).encode()
    req = parse(header + X.tobytes(), header_length=str(len(header)))
    np.testing.assert_array_equal(req.X, X.astype(np.float64))
    assert "bytes that no input claims" in error_of(header + X.tobytes() + b"\0", header_length=str(len(header))
                                                    ).message
    assert "exceeds" in error_of(header + X.tobytes()[:-4], header_length=str(len(header))).message
    assert "no binary part" in error_of(header).message
    assert "Inference-Header-Content-Length" in error_of(header, header_length="nope").message


def test_versions_and_names() -> None:
    assert oip.version_label("toy:v3", "toy") == "v3"
    assert oip.version_label("other:v3", "toy") == "other:v3"
    served = ["toy:v3", "toy:v10"]
    assert [oip.match_version(v, served, "toy") for v in ("v3", "3", "toy:v3", "10", "v4", "x", "03", "v010")] == [
        "toy:v3", "toy:v3", "toy:v3", "toy:v10", None, None, "toy:v3", "toy:v10"]
    with pytest.raises(oip.OipError) as info:
        oip.check_name("other", "toy")
    assert info.value.status == 404 and "'toy'" in info.value.message
    with pytest.raises(oip.OipError) as info:  # tritonclient's get_inference_statistics(): not a model
        oip.check_name("stats", "toy")
    assert info.value.status == 404 and "statistics extension" in info.value.message


def test_model_metadata_has_the_specs_fields() -> None:
    meta = oip.model_metadata("toy", ["toy:v1", "toy:v2"], SIG, predict_dtype=np.dtype(np.int64), n_classes=2,
                              platform="sklearn_joblib")
    assert set(meta) == {"name", "versions", "platform", "inputs", "outputs"}
    assert meta["name"] == "toy" and meta["versions"] == ["v1", "v2"]
    assert meta["inputs"] == [{"name": "a", "datatype": "FP64", "shape": [-1]},
                              {"name": "b", "datatype": "FP64", "shape": [-1]}]
    assert meta["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [-1]},
                               {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]}]
    labels = oip.model_metadata("m", ["m:v1"], SIG, predict_dtype=np.dtype("<U3"), n_classes=None, platform="p")
    assert labels["outputs"] == [{"name": "predict", "datatype": "BYTES", "shape": [-1]}]
    assert oip.server_metadata("1.0") == {"name": "raymlops", "version": "1.0", "extensions": ["binary_tensor_data"]}


def test_infer_response_json_and_binary() -> None:
    preds, proba = np.array([0, 1]), np.array([[0.75, 0.25], [0.5, 0.5]])
    req = parse({"id": "42", "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3, 4]}]})
    body, headers = oip.infer_response("toy", "toy:v1", req.id, {"predict": preds, "predict_proba": proba}, req)
    assert headers == {"Content-Type": "application/json"}
    doc = json.loads(body)
    assert set(doc) == {"model_name", "model_version", "id", "outputs"}  # $inference_response
    assert doc["model_name"] == "toy" and doc["model_version"] == "v1" and doc["id"] == "42"
    assert doc["outputs"] == [{"name": "predict", "datatype": "INT64", "shape": [2], "data": [0, 1]},
                              {"name": "predict_proba", "datatype": "FP64", "shape": [2, 2],
                               "data": [0.75, 0.25, 0.5, 0.5]}]
    binreq = oip.InferRequest(req.X, None, ("predict_proba", "predict"), frozenset({"predict_proba"}))
    body, headers = oip.infer_response("toy", "toy:v1", None, {"predict": np.array(["no", "yes"]),
                                                               "predict_proba": proba}, binreq)
    n = int(headers["Inference-Header-Content-Length"])
    doc = json.loads(body[:n])
    assert "id" not in doc and doc["outputs"][0]["parameters"] == {"binary_data_size": 32}
    np.testing.assert_array_equal(np.frombuffer(body[n:], "<f8").reshape(2, 2), proba)
    assert doc["outputs"][1] == {"name": "predict", "datatype": "BYTES", "shape": [2], "data": ["no", "yes"]}


def test_tritonclients_own_encoding_round_trips() -> None:
    """tritonclient builds the request (binary by default) and reads our response."""
    http = pytest.importorskip("tritonclient.http")
    X = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], dtype=np.float32)
    for binary in (True, False):
        x = http.InferInput("x", list(X.shape), "FP32")
        x.set_data_from_numpy(X, binary_data=binary)
        outs = [http.InferRequestedOutput("predict", binary_data=binary), http.InferRequestedOutput("predict_proba")]
        raw, json_size = http.InferenceServerClient.generate_request_body([x], outputs=outs, request_id="r1")
        req = parse(raw, header_length=None if json_size is None else str(json_size))
        np.testing.assert_array_equal(req.X, X)
        preds, proba = np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]])
        body, headers = oip.infer_response("toy", "toy:v1", req.id, {"predict": preds, "predict_proba": proba}, req)
        result = http.InferResult.from_response_body(body, header_length=headers.get("Inference-Header-Content-Length"))
        np.testing.assert_array_equal(result.as_numpy("predict"), preds)
        np.testing.assert_allclose(result.as_numpy("predict_proba"), proba)
        assert result.get_response()["id"] == "r1"


def test_oip_module_imports_no_ray() -> None:
    code = ("import sys, raymlops.serve.oip\n"
            "bad = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# -- string (categorical) features: BYTES tensors -----------------------------------------------
CAT_SIG = Signature.from_dict({"inputs": [
    {"name": "plan", "type": "string", "categories": ["basic", "pro"], "nullable": True},
    {"name": "fee", "type": "double", "min": 0.0, "max": 100.0},
]})


def _bytes(values: list[str]) -> bytes:
    return b"".join(len(v.encode()).to_bytes(4, "little") + v.encode() for v in values)


def test_a_string_feature_is_a_bytes_tensor_in_json_or_binary() -> None:
    fee = {"name": "fee", "shape": [3], "datatype": "FP64", "data": [1.0, 2.0, 3.0]}
    js = parse({"inputs": [{"name": "plan", "shape": [3], "datatype": "BYTES", "data": ["pro", None, "basic"]}, fee]},
               CAT_SIG)
    assert js.X[0, 0] == category_code("pro") and np.isnan(js.X[1, 0]) and js.X[2, 0] == category_code("basic")
    assert js.X[:, 1].tolist() == [1.0, 2.0, 3.0]
    data = _bytes(["pro", "gold", "basic"])  # "gold": never seen, answered under domain: any
    header = json.dumps({"inputs": [
        fee, {"name": "plan", "shape": [3, 1], "datatype": "BYTES", "parameters": {"binary_data_size": len(data)}}]})
    raw = header.encode() + data
    binary = parse(raw, CAT_SIG, header_length=str(len(header)))
    assert binary.X[1, 0] == category_code("gold") and binary.X[0, 0] == js.X[0, 0]
    err = error_of(raw, signature=CAT_SIG, header_length=str(len(header)), policy=DomainPolicy("training_range"))
    assert err.status == 400 and err.kind == "out_of_domain" and "'gold'" in err.message and "'plan'" in err.message
    meta = oip.model_metadata("m", ["m:v1"], CAT_SIG, predict_dtype=np.dtype("int64"), n_classes=2, platform="x")
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [("plan", "BYTES"), ("fee", "FP64")]


@pytest.mark.parametrize("plan, words", [
    ({"name": "plan", "shape": [1], "datatype": "FP64", "data": [1.0]}, "datatype BYTES"),
    ({"name": "plan", "shape": [1], "datatype": "BYTES", "data": [3.0]}, "must be a string"),
    ({"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 2.0]}, "unknown input 'x': this model has "
                                                                            "string features (plan)"),
    ({"shape": [1], "datatype": "BYTES", "data": ["pro"]}, "inputs[0] has no 'name'"),
])
def test_string_feature_mistakes_are_400(plan: dict[str, Any], words: str) -> None:
    fee = {"name": "fee", "shape": [1], "datatype": "FP64", "data": [1.0]}
    err = error_of({"inputs": [plan, fee]}, signature=CAT_SIG)
    assert err.status == 400 and words in err.message


def test_a_bytes_tensor_whose_lengths_do_not_add_up_is_400() -> None:
    fee = {"name": "fee", "shape": [2], "datatype": "FP64", "data": [1.0, 2.0]}
    for data, words in ((_bytes(["pro"]), "ends before element 1"), (_bytes(["pro", "basic"]) + b"x", "1 bytes follow"),
                        (_bytes(["pro"]) + (9).to_bytes(4, "little") + b"ab", "claims 9 bytes")):
        header = json.dumps({"inputs": [fee, {"name": "plan", "shape": [2], "datatype": "BYTES",
                                              "parameters": {"binary_data_size": len(data)}}]})
        err = error_of(header.encode() + data, signature=CAT_SIG, header_length=str(len(header)))
        assert err.status == 400 and words in err.message, err.message


BOOL_SIG = Signature.from_dict({"inputs": [{"name": "member", "type": "boolean", "nullable": False},
                                           {"name": "fee", "type": "double"}]})


def test_a_boolean_feature_is_bool_in_the_metadata_and_takes_bool_or_1_0_tensors_only() -> None:
    meta = oip.model_metadata("m", ["m:v1"], BOOL_SIG, predict_dtype=np.dtype("int64"), n_classes=2, platform="x")
    assert [(i["name"], i["datatype"]) for i in meta["inputs"]] == [("member", "BOOL"), ("fee", "FP64")]
    fee = {"name": "fee", "shape": [2], "datatype": "FP64", "data": [1.5, 2.5]}
    got = parse({"inputs": [{"name": "member", "shape": [2], "datatype": "BOOL", "data": [True, False]}, fee]},
                BOOL_SIG)
    assert got.X.tolist() == [[1.0, 1.5], [0.0, 2.5]]
    numbers = parse({"inputs": [{"name": "member", "shape": [2], "datatype": "INT8", "data": [0, 1]}, fee]}, BOOL_SIG)
    assert numbers.X[:, 0].tolist() == [0.0, 1.0]
    # the largest values of the integer datatypes are taken (as float64s); BOOL for the number is not
    big = parse({"inputs": [{"name": "member", "shape": [1], "datatype": "INT8", "data": [1]},
                            {"name": "fee", "shape": [1], "datatype": "INT64", "data": [-9223372036854775808]}]},
                BOOL_SIG)
    assert big.X[0, 1] == -2.0**63
    with pytest.raises(oip.OipError, match="feature 'fee' is a number"):
        parse({"inputs": [{"name": "member", "shape": [1], "datatype": "BOOL", "data": [True]},
                          {"name": "fee", "shape": [1], "datatype": "BOOL", "data": [True]}]}, BOOL_SIG)
    # binary: one byte per element, as tritonclient sends a numpy bool array
    head = json.dumps({"inputs": [{"name": "member", "shape": [2], "datatype": "BOOL",
                                   "parameters": {"binary_data_size": 2}}, fee]}).encode()
    binary = parse(head + np.array([False, True]).tobytes(), BOOL_SIG, header_length=str(len(head)))
    assert binary.X[:, 0].tolist() == [0.0, 1.0]
    for member, words in (({"datatype": "FP64", "data": [7.0, 0.5]}, "row 0, feature 'member': expected true / false "
                                                                       "(or 1 / 0), found 7"),
                          ({"datatype": "BOOL", "data": [1, 0]}, "element 0 must be true or false (datatype BOOL)")):
        with pytest.raises(oip.OipError) as info:
            parse({"inputs": [{"name": "member", "shape": [2], **member}, fee]}, BOOL_SIG)
        assert info.value.status == 400 and words in info.value.message, info.value.message
