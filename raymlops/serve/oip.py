"""Open Inference Protocol (KServe v2 / Triton HTTP/REST): parsing and answers (pure: no Ray).

The same replicas that answer ``/<route>/predict`` answer the protocol's routes under the same
prefix, so a v2 client points at ``http://HOST:PORT/<route>`` (tritonclient:
``InferenceServerClient(url="HOST:PORT/<route>")``):

==========================================================  ====  ===================================
``GET  v2/health/live``, ``v2/health/ready``                 200   ``{"live": true}``, ``{"ready": true}``
``GET  v2``                                                  200   server metadata
``GET  v2/models/{name}[/versions/{v}]``                     200   model metadata (404: unknown)
``GET  v2/models/{name}[/versions/{v}]/ready``               200   ``{"name": ..., "ready": true}``
``POST v2/models/{name}[/versions/{v}]/infer``               200   outputs ``predict`` [rows] and, for
                                                                   classifiers, ``predict_proba``
                                                                   [rows, classes]
==========================================================  ====  ===================================

``{name}`` is the route name; ``versions`` are the registry versions served there (``v3``; the
champion first, then a challenger). Without ``/versions/{v}`` a request is routed like
``/predict`` (canary split, shadow copy); with one it is answered by that version.

Inputs, any numeric datatype (``FP16/32/64``, ``INT8..64``, ``UINT8..64``), data nested or flat
(row-major), in JSON or with Triton's binary tensor extension (``Inference-Header-Content-Length``,
``binary_data_size``), either

- one 2-D tensor ``[rows, features]`` in signature order (any name), or
- one tensor per feature, named by the feature, of shape ``[rows]`` (or ``[rows, 1]``).

A string (categorical) feature is a ``BYTES`` tensor of its own (UTF-8; in binary, Triton's layout:
each element a 4-byte little-endian length and its bytes), so a model with string features takes
one tensor per feature.

Values get the validation of ``/predict`` (finite unless the feature allows NaN; ``null`` means NaN
there; the domain policy; the row and body limits). Errors are ``{"error": "<message>"}`` with 400
(bad request), 404 (unknown model or version), 413 (over a limit) or 500 (the model failed).
Outputs come back as JSON, or binary where the request asks for it (``binary_data_output`` /
an output's ``binary_data``), as tritonclient does by default.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from raymlops.serve.loaded import LoadedModel, ServingState
from raymlops.serve.oip_tensors import (
    DATATYPES,
    NUMERIC,
    OipError,
    bytes_elements,
    bytes_tensor,
    category_codes_of,
    flat_elements,
    json_kind,
    json_values,
    shown_value,
    tensor_shape,
)
from raymlops.serve.request import REQUEST_ID, DomainPolicy, RequestError, Signature, decode_json, domain_errors

__all__ = [
    "DATATYPES", "EXTENSIONS", "InferRequest", "OipError", "PREDICT", "PREDICT_PROBA", "infer_response",
    "match_version", "model_metadata", "outputs_of", "parse_infer_request", "server_metadata", "version_label",
]

SERVER_NAME = "raymlops"
EXTENSIONS = ("binary_tensor_data",)
PREDICT = "predict"
PREDICT_PROBA = "predict_proba"
HEADER_LENGTH = "inference-header-content-length"

_VERSION = re.compile(r"^v?(\d+)$")


# -- names and versions ---------------------------------------------------------------------------
def version_label(model_id: str, name: str) -> str:
    """The version a v2 client sees: ``v3`` for ``<name>:v3``; a version of another registry
    model than the route's name keeps its full id (``other:v3``)."""
    model, _, version = model_id.partition(":")
    return version if model == name and version else model_id


def match_version(requested: str, model_ids: Sequence[str], name: str) -> str | None:
    """The served model id that ``requested`` (``v3``, ``3`` or ``name:v3``) names, if any."""
    want = requested.strip()
    for mid in model_ids:
        label = version_label(mid, name)
        if want in (mid, label):
            return mid
        m, n = _VERSION.match(want), _VERSION.match(label)
        if m and n and int(m.group(1)) == int(n.group(1)):  # "02" is 2, as Triton reads a version
            return mid
    return None


def check_name(requested: str, name: str) -> None:
    if requested == "stats" and name != "stats":  # tritonclient's get_inference_statistics()
        raise OipError(404, "this server does not have Triton's statistics extension (GET v2/models/stats); "
                       "the route's Prometheus metrics are at GET <route>/metrics", "unknown_model")
    if requested != name:
        raise OipError(404, f"unknown model {requested!r}; this endpoint serves {name!r}", "unknown_model")


# -- metadata -------------------------------------------------------------------------------------
def datatype_of(dtype: np.dtype[Any]) -> str:
    """The protocol's datatype of a numpy dtype (strings and objects: BYTES)."""
    if dtype.kind == "b":
        return "BOOL"
    if dtype.kind in "iu":
        return f"{'U' if dtype.kind == 'u' else ''}INT{dtype.itemsize * 8}"
    if dtype.kind == "f" and dtype.itemsize in (2, 4, 8):
        return f"FP{dtype.itemsize * 8}"
    return "BYTES"


def outputs_of(has_proba: bool) -> tuple[str, ...]:
    return (PREDICT, PREDICT_PROBA) if has_proba else (PREDICT,)


def server_metadata(version: str | None = None) -> dict[str, Any]:
    """``$metadata_server_response``; ``version``: raymlops' own unless given."""
    if version is None:
        from importlib.metadata import PackageNotFoundError
        from importlib.metadata import version as package_version

        try:
            version = package_version("raymlops")
        except PackageNotFoundError:  # run from a source tree
            version = "0+unknown"
    return {"name": SERVER_NAME, "version": version, "extensions": list(EXTENSIONS)}


def model_metadata(name: str, model_ids: Sequence[str], signature: Signature, *, predict_dtype: np.dtype[Any],
                   n_classes: int | None, platform: str) -> dict[str, Any]:
    """``$metadata_model_response``: one ``FP64 [-1]`` input per feature (``BYTES`` for a string
    feature, ``BOOL`` for a boolean one, which takes 1 / 0 in a number tensor too; a single
    ``[-1, features]`` tensor in this order is accepted too for numbers only), then the outputs."""
    categories = signature.categories or (None,) * len(signature.features)
    inputs = [{"name": f, "datatype": "BYTES" if c is not None else "BOOL" if signature.kind(j) == "boolean"
               else "FP64", "shape": [-1]} for j, (f, c) in enumerate(zip(signature.features, categories, strict=True))]
    outputs: list[dict[str, Any]] = [{"name": PREDICT, "datatype": datatype_of(predict_dtype), "shape": [-1]}]
    if n_classes is not None:
        outputs.append({"name": PREDICT_PROBA, "datatype": "FP64", "shape": [-1, int(n_classes)]})
    return {"name": name, "versions": [version_label(m, name) for m in model_ids], "platform": platform,
            "inputs": inputs, "outputs": outputs}


# -- the inference request ------------------------------------------------------------------------
@dataclass(frozen=True)
class InferRequest:
    """A validated inference request: rows as a float matrix in signature order, the client's
    ``id`` (if any), the outputs to return (in order) and which of them go back as binary."""

    X: np.ndarray
    id: str | None
    outputs: tuple[str, ...]
    binary: frozenset[str] = frozenset()

    @property
    def rows(self) -> int:
        return int(self.X.shape[0])

    @property
    def request_id(self) -> str | None:
        """The client's ``id`` when it can name the request for ``/feedback`` (else None; the
        answer echoes ``id`` whatever it is, as the protocol says)."""
        return self.id if self.id is not None and REQUEST_ID.match(self.id) else None


def _tensor(spec: Any, i: int, binary: memoryview | None, offset: int, allow_nan: Sequence[bool],
            width: int, known: frozenset[str] | None = None,
            categorical: bool = False, numbers: str | None = None) -> tuple[str, tuple[int, ...], np.ndarray, int]:
    """``(name, shape, float64 values, next binary offset)`` of one ``$request_input``; a string
    feature's tensor (``categorical``) is ``BYTES``, its values the category codes. ``numbers``: the
    tensor's features that are numbers, not booleans (named, or "every feature"): ``BOOL`` is refused
    for them, as Triton refuses a datatype the model does not take (true / false for a measurement is
    a client's bug, not a value)."""
    if not isinstance(spec, dict):
        raise OipError(400, f"inputs[{i}] must be an object with name, shape, datatype and data")
    name = spec.get("name")
    where = f"input {name!r}" if isinstance(name, str) else f"inputs[{i}]"
    if not isinstance(name, str) or not name:
        raise OipError(400, f"{where}: 'name' must be a non-empty string")
    shape = tensor_shape(spec.get("shape"), where)
    datatype = spec.get("datatype")
    if categorical:
        if datatype != "BYTES":
            raise OipError(400, f"{where}: a string feature takes datatype BYTES, found {datatype!r}")
    elif datatype not in NUMERIC and datatype != "BOOL":
        raise OipError(400, f"{where}: datatype {datatype!r} is not supported; send one of FP64, FP32, FP16, "
                       "INT8..INT64, UINT8..UINT64 or BOOL")
    elif datatype == "BOOL" and numbers is not None:
        raise OipError(400, f"{where}: datatype BOOL is for boolean features, and {numbers} (FP64 in the model's "
                       "metadata); send a numeric datatype", "invalid_value")
    count = math.prod(shape)
    params = spec.get("parameters") or {}
    if not isinstance(params, dict):
        raise OipError(400, f"{where}: 'parameters' must be an object")
    size = params.get("binary_data_size")
    if size is not None:
        if binary is None:
            raise OipError(400, f"{where}: binary_data_size given but the request has no binary part "
                           "(send the Inference-Header-Content-Length header)")
        if not isinstance(size, float) or not size.is_integer() or size < 0 or offset + int(size) > len(binary):
            raise OipError(400, f"{where}: binary_data_size {size!r} exceeds the {len(binary) - offset} bytes left")
        if "data" in spec:
            raise OipError(400, f"{where}: give either 'data' or binary_data_size, not both")
        if categorical:
            chunk = binary[offset:offset + int(size)]
            return name, shape, category_codes_of(bytes_elements(chunk, count, where), where, allow_nan[0], known), \
                offset + int(size)
        dtype = DATATYPES[datatype]
        if int(size) != count * dtype.itemsize:
            raise OipError(400, f"{where}: binary_data_size {int(size)} does not match shape {list(shape)} of "
                           f"{datatype} ({count * dtype.itemsize} bytes)")
        values = np.frombuffer(binary[offset:offset + int(size)], dtype=dtype).astype(np.float64)
        return name, shape, values, offset + int(size)
    if "data" not in spec:
        raise OipError(400, f"{where}: 'data' is missing")
    flat = flat_elements(spec["data"], where)
    if len(flat) != count:
        raise OipError(400, f"{where}: shape {list(shape)} needs {count} elements, found {len(flat)}")
    if categorical:
        return name, shape, category_codes_of(flat, where, allow_nan[0], known), offset
    return name, shape, json_values(flat, datatype, where, allow_nan, width), offset


def _matrix(tensors: list[tuple[str, tuple[int, ...], np.ndarray]], signature: Signature) -> np.ndarray:
    names = signature.features
    width = len(names)
    if len(tensors) == 1 and len(tensors[0][1]) == 2 and not (tensors[0][0] in names and tensors[0][1][1] == 1
                                                              and width > 1):
        name, shape, values = tensors[0]
        if shape[1] != width:
            raise OipError(400, f"input {name!r} has shape {list(shape)}; this model takes [-1, {width}] "
                           f"(features {', '.join(names[:8])}{', ...' if width > 8 else ''}) or one [-1] "
                           "tensor per feature")
        return values.reshape(shape)
    by_name: dict[str, np.ndarray] = {}
    rows: int | None = None
    for name, shape, values in tensors:
        if name not in names:
            raise OipError(400, f"unknown input {name!r}: send one tensor per feature ({', '.join(names[:8])}"
                           f"{', ...' if width > 8 else ''}) or a single [-1, {width}] tensor")
        if name in by_name:
            raise OipError(400, f"input {name!r} is given twice")
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
            raise OipError(400, f"input {name!r} has shape {list(shape)}; a per-feature tensor is [rows] or [rows, 1]")
        rows = shape[0] if rows is None else rows
        by_name[name] = values
    counts = {name: shape[0] for name, shape, _ in tensors}
    if len(set(counts.values())) > 1:  # every one named: which is the odd one is the client's to say
        shown = ", ".join(f"{n} {r}" for n, r in list(counts.items())[:8]) + (", ..." if len(counts) > 8 else "")
        raise OipError(400, f"the inputs have different row counts: {shown}")
    missing = [n for n in names if n not in by_name]
    if missing:
        raise OipError(400, f"missing input{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing[:8]))}"
                       f"{', ...' if len(missing) > 8 else ''}")
    return np.stack([by_name[n] for n in names], axis=1)


def _check_values(X: np.ndarray, signature: Signature, policy: DomainPolicy) -> None:
    """``/predict``'s value rules: finite unless the feature allows NaN, within the domain policy."""
    names = signature.features
    finite = np.isfinite(X)
    if not finite.all():
        allow = np.asarray(signature.allow_nan or (False,) * len(names), dtype=bool)
        bad = ~finite & ~(np.isnan(X) & allow)
        if bad.any():
            i, j = (int(k) for k in np.argwhere(bad)[0])
            more = int(bad.sum()) - 1
            raise OipError(400, f"row {i}, feature {names[j]!r}: expected a finite number, found {X[i, j]}"
                           + (f" (and {more} more)" if more else ""), "invalid_value")
    if any(signature.booleans):  # a boolean feature: 1 / 0 (true / false), as /predict takes it
        flags = [j for j, flag in enumerate(signature.booleans) if flag]
        cols = X[:, flags]
        bad = ~np.isnan(cols) & (cols != 0) & (cols != 1)
        if bad.any():
            i, k = (int(v) for v in np.argwhere(bad)[0])
            raise OipError(400, f"row {i}, feature {names[flags[k]]!r}: expected true / false (or 1 / 0), found "
                           f"{cols[i, k]:g}", "invalid_value")
    try:  # the domain policy is /predict's own check; only the wording is the protocol's
        domain_errors(X, signature, policy)
    except RequestError as exc:
        raise OipError(400, exc.message.replace(", field ", ", feature ", 1), "out_of_domain") from None


def _requested(body: dict[str, Any], available: tuple[str, ...]) -> tuple[tuple[str, ...], frozenset[str]]:
    params = body.get("parameters") or {}
    if not isinstance(params, dict):
        raise OipError(400, "'parameters' must be an object")
    all_binary = params.get("binary_data_output") is True
    wanted = body.get("outputs")
    if wanted is None:
        return available, frozenset(available if all_binary else ())
    if not isinstance(wanted, list):
        raise OipError(400, "'outputs' must be an array of {\"name\": ...}")
    names: list[str] = []
    binary: set[str] = set()
    for k, out in enumerate(wanted):
        name = out.get("name") if isinstance(out, dict) else None
        if name not in available:
            raise OipError(400, f"outputs[{k}]: unknown output {name!r}; this model has {', '.join(available)}")
        oparams = out.get("parameters") or {}
        if not isinstance(oparams, dict):
            raise OipError(400, f"outputs[{k}]: 'parameters' must be an object")
        if name not in names:
            names.append(name)
        if oparams.get("binary_data", all_binary) is True:
            binary.add(name)
    return tuple(names) or available, frozenset(binary)


def parse_infer_request(raw: bytes, signature: Signature, *, outputs: tuple[str, ...], max_rows: int,
                        max_bytes: int, header_length: str | None = None,
                        policy: DomainPolicy | None = None) -> InferRequest:
    """``$inference_request`` (and the binary extension) as rows in signature order, or :class:`OipError`."""
    if len(raw) > max_bytes:
        raise OipError(413, f"body of {len(raw)} bytes exceeds the limit of {max_bytes}", "payload_too_large")
    binary: memoryview | None = None
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            n = -1
        if not 0 < n <= len(raw):
            raise OipError(400, f"Inference-Header-Content-Length {header_length[:20]!r} is not a length within the "
                           f"body of {len(raw)} bytes")
        binary = memoryview(raw)[n:]
        raw = raw[:n]
    try:
        body = decode_json(raw, max_bytes, example='{"inputs": [{"name", "shape", "datatype", "data"}]}')
    except RequestError as exc:
        raise OipError.from_request_error(exc) from None
    if not isinstance(body, dict):
        raise OipError(400, f"expected a JSON object with 'inputs', found {type(body).__name__}")
    rid = body.get("id")
    if rid is not None and not isinstance(rid, str):
        raise OipError(400, f"'id' must be a string, found {json_kind(rid)}: {shown_value(rid)}")
    if rid is not None and not REQUEST_ID.match(rid):  # it names the request for /feedback, as the header would
        raise OipError(400, f"'id' {rid[:64]!r}: expected 1 to 128 characters of A-Z a-z 0-9 . _ : - (it names the "
                       "request for /feedback); send another, or none")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise OipError(400, "'inputs' must be a non-empty array of tensors")
    names, binary_out = _requested(body, outputs)
    width = len(signature.features)
    allow = signature.allow_nan or (False,) * width
    categories = signature.categories or (None,) * width
    strings = [n for n, c in zip(signature.features, categories, strict=True) if c is not None]
    tensors = []
    offset = 0
    for i, spec in enumerate(inputs):
        feature = spec.get("name") if isinstance(spec, dict) else None
        if strings and feature not in signature.features:
            what = f"inputs[{i}] has no 'name'" if feature is None else f"unknown input {feature!r}"
            raise OipError(400, f"{what}: this model has string features ({', '.join(strings[:8])}), so it takes "
                           "one tensor per feature, named by the feature, with datatype BYTES for the strings")
        # a per-feature tensor: its own NaN rule; a 2-D one: the rule of each column
        j = signature.features.index(feature) if feature in signature.features else -1
        own = (allow[j],) if j >= 0 and (len(inputs) > 1 or strings) else allow
        cats = categories[j] if j >= 0 else None
        known = signature.known_categories[j] if cats is not None and (policy or DomainPolicy()).kind != "any" \
            else None
        cols = [j] if len(own) == 1 and j >= 0 else range(width)
        numeric = [signature.features[k] for k in cols if signature.kind(k) == "number"]
        numbers = None if not numeric else f"feature {numeric[0]!r} is a number" if len(numeric) == 1 else \
            f"features {', '.join(repr(f) for f in numeric[:3])}{', ...' if len(numeric) > 3 else ''} are numbers"
        name, shape, values, offset = _tensor(spec, i, binary, offset, own, len(own), known, cats is not None,
                                              numbers)
        tensors.append((name, shape, values))
    if binary is not None and offset != len(binary):
        raise OipError(400, f"the binary part has {len(binary) - offset} bytes that no input claims")
    X = _matrix(tensors, signature)
    if X.shape[0] == 0:
        raise OipError(400, "the inputs have no rows")
    if X.shape[0] > max_rows:
        raise OipError(413, f"{X.shape[0]} rows exceed the limit of {max_rows} per request", "too_many_rows")
    _check_values(X, signature, policy or DomainPolicy())
    return InferRequest(np.ascontiguousarray(X, dtype=np.float64), rid, names, binary_out)


# -- the inference response -----------------------------------------------------------------------
def infer_response(name: str, model_id: str, request_id: str | None, outputs: dict[str, np.ndarray],
                   req: InferRequest) -> tuple[bytes, dict[str, str]]:
    """``$inference_response`` (JSON, or JSON header + binary tensors) and its extra headers."""
    out: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for oname in req.outputs:
        arr = np.asarray(outputs[oname])
        datatype = datatype_of(arr.dtype)
        tensor: dict[str, Any] = {"name": oname, "datatype": datatype, "shape": list(arr.shape)}
        if oname in req.binary:
            blob = bytes_tensor(arr) if datatype == "BYTES" else np.ascontiguousarray(
                arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            flat = arr.ravel()
            tensor["data"] = [str(v) for v in flat.tolist()] if datatype == "BYTES" else flat.tolist()
        out.append(tensor)
    body: dict[str, Any] = {"model_name": name, "model_version": version_label(model_id, name)}
    if request_id is not None:
        body["id"] = request_id
    body["outputs"] = out
    head = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    if not blobs:
        return head, {"Content-Type": "application/json"}
    return head + b"".join(blobs), {"Content-Type": "application/octet-stream",
                                    "Inference-Header-Content-Length": str(len(head))}


def pick_model(state: ServingState, name: str, version: str | None, route: str) -> LoadedModel | None:
    """The model ``name``/``version`` names on ``route`` (None: no version, route as /predict), or
    :class:`OipError` 404 naming what is served."""
    check_name(name, route)
    if version is None:
        return None
    found = match_version(version, list(state.models()), name)
    if found is None:
        served = ", ".join(version_label(m, name) for m in state.models())
        raise OipError(404, f"model {name!r} has no version {version!r} being served (serving {served})",
                       "unknown_version")
    return state.models()[found]


def metadata_of(state: ServingState, name: str, version: str | None, route: str) -> tuple[dict[str, Any], str]:
    """``(model metadata body, id of the version it describes)``; inputs in the champion's order:
    the route's contract, whichever version answers."""
    model = pick_model(state, name, version, route) or state.champion
    est = model.model
    classes = getattr(est, "classes_", None) if model.has_proba else None
    dtype = np.asarray(classes).dtype if classes is not None else np.dtype(np.float64)
    ids = [model.model_id] if version is not None else list(state.models())
    body = model_metadata(name, ids, state.champion.signature, predict_dtype=dtype,
                          n_classes=None if classes is None else len(classes),
                          platform=f"{type(est).__module__.split('.')[0]}_joblib")
    return body, model.model_id


def unknown_route_body(path: str, status: int, detail: str) -> dict[str, Any]:
    """The body of FastAPI's own errors (no such path, a method the path does not take) in the shape
    of the route's other errors: the protocol's ``{"error": message}`` under ``/v2`` (clients such as
    tritonclient read that key), raymlops' ``{"error": code, "message": ...}`` elsewhere."""
    what = "no such route" if status == 404 else detail.lower() if status == 405 else detail
    message = f"{what}: {path}"
    if "/v2/" in path or path.endswith("/v2"):
        return {"error": message}
    return {"error": {404: "not_found", 405: "method_not_allowed"}.get(status, "bad_request"), "message": message}
