"""Tensor data of the Open Inference Protocol (pure: no Ray): the datatypes, a tensor's elements
in JSON (nested or flat) or in Triton's binary layout, and ``BYTES`` (each element a 4-byte
little-endian length and its UTF-8 bytes), both ways. :mod:`raymlops.serve.oip` builds requests
and answers from them; :class:`OipError` is the protocol's error for both.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from raymlops.serve.request import RequestError, cached_code

# little-endian, as the binary extension sends them
DATATYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(code) for name, code in (
        ("UINT8", "u1"), ("UINT16", "<u2"), ("UINT32", "<u4"), ("UINT64", "<u8"),
        ("INT8", "i1"), ("INT16", "<i2"), ("INT32", "<i4"), ("INT64", "<i8"),
        ("FP16", "<f2"), ("FP32", "<f4"), ("FP64", "<f8"), ("BOOL", "?"),
    )
}
NUMERIC = frozenset(DATATYPES) - {"BOOL"}


class OipError(Exception):
    """A request the protocol answers with ``{"error": message}`` and ``status``; ``kind`` is
    the reason counted in ``raymlops_serve_rejected_requests_total``."""

    def __init__(self, status: int, message: str, kind: str = "bad_request") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind

    def body(self) -> dict[str, Any]:
        return {"error": self.message}

    @classmethod
    def from_request_error(cls, exc: RequestError) -> OipError:
        """The native parser's error in the protocol's terms (413 stays 413; the rest is 400)."""
        return cls(exc.status if exc.status in (413, 415) else 400, exc.message, exc.error)


def flat_elements(data: Any, where: str) -> list[Any]:
    """Row-major elements of nested (or already flat) JSON arrays."""
    if not isinstance(data, list):
        raise OipError(400, f"{where}: 'data' must be a JSON array, found {type(data).__name__}")
    if not any(isinstance(v, list) for v in data):
        return data
    out: list[Any] = []
    stack = [iter(data)]
    while stack:
        for v in stack[-1]:
            if isinstance(v, list):
                stack.append(iter(v))
                break
            out.append(v)
        else:
            stack.pop()
    return out


def tensor_shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not value or not all(
            isinstance(d, float) and d.is_integer() and 0 <= d < 2**53 for d in value):
        raise OipError(400, f"{where}: 'shape' must be a non-empty array of non-negative integers, found "
                       f"{json.dumps(value)[:60]}")
    return tuple(int(d) for d in value)


def json_kind(value: Any) -> str:
    """The JSON type of a parsed value (numbers are parsed as floats: an integer is a number)."""
    return ("null" if value is None else "a boolean" if isinstance(value, bool) else "a number"
            if isinstance(value, (int, float)) else "a string" if isinstance(value, str) else "an array"
            if isinstance(value, list) else "an object")


def shown_value(value: Any) -> str:
    """A JSON number as the client wrote it, near enough: whole ones without a fraction."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e300:
        return str(int(value))
    return json.dumps(value)[:40]


def json_values(flat: list[Any], datatype: str, where: str, allow_nan: Sequence[bool], width: int) -> np.ndarray:
    """The elements as float64 (``null`` -> NaN where the feature allows it; ``BOOL``: true / false
    as 1 / 0); 400 names the first bad one."""
    if datatype == "BOOL":
        for k, v in enumerate(flat):
            if not (isinstance(v, bool) or (v is None and allow_nan[k % width])):
                raise OipError(400, f"{where}: element {k} must be true or false (datatype BOOL), found "
                               f"{json.dumps(v)[:40]}")
        return np.array([math.nan if v is None else float(v) for v in flat], dtype=np.float64)
    if all(type(v) is float for v in flat):
        values = np.array(flat, dtype=np.float64)
    else:
        for k, v in enumerate(flat):
            if v is None and allow_nan[k % width]:
                continue
            if type(v) is not float:
                raise OipError(400, f"{where}: element {k} must be a number (datatype {datatype}), found "
                               f"{'a boolean' if isinstance(v, bool) else json.dumps(v)[:40]}")
        values = np.array([math.nan if v is None else v for v in flat], dtype=np.float64)
    dtype = DATATYPES[datatype]
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        # above: the first power of two past the largest value (2^63 for INT64, which a float64 compared
        # with the integer maximum took for it: 2^63 passed; a JSON number is parsed as a float64)
        above = 2.0 ** (8 * dtype.itemsize - (dtype.kind == "i"))
        with np.errstate(invalid="ignore"):
            bad = ~np.isnan(values) & ((values != np.floor(values)) | (values < info.min) | (values >= above))
        if bad.any():
            k = int(np.argmax(bad))
            raise OipError(400, f"{where}: element {k} ({shown_value(flat[k])}) is not a value of datatype {datatype}")
    elif dtype.itemsize < 8:  # what the client meant (FP32 / FP16); too large becomes inf, rejected later
        with np.errstate(over="ignore"):
            values = values.astype(dtype).astype(np.float64)
    return values


def bytes_elements(chunk: memoryview, count: int, where: str) -> list[Any]:
    """The ``count`` strings of a binary ``BYTES`` tensor (4-byte little-endian length, UTF-8 bytes)."""
    out: list[Any] = []
    pos = 0
    for k in range(count):
        if pos + 4 > len(chunk):
            raise OipError(400, f"{where}: the BYTES data ends before element {k} of {count}")
        n = int.from_bytes(chunk[pos:pos + 4], "little")
        pos += 4
        if pos + n > len(chunk):
            raise OipError(400, f"{where}: element {k} claims {n} bytes, {len(chunk) - pos} are left")
        try:
            out.append(bytes(chunk[pos:pos + n]).decode("utf-8"))
        except UnicodeDecodeError:
            raise OipError(400, f"{where}: element {k} is not UTF-8") from None
        pos += n
    if pos != len(chunk):
        raise OipError(400, f"{where}: {len(chunk) - pos} bytes follow the last of its {count} BYTES elements")
    return out


def category_codes_of(values: list[Any], where: str, nullable: bool, known: frozenset[str] | None) -> np.ndarray:
    """A string feature's elements as their category codes (``null`` -> NaN where nullable);
    ``known``: the training categories, when the domain policy refuses others."""
    out = np.empty(len(values), dtype=np.float64)
    for k, v in enumerate(values):
        if v is None and nullable:
            out[k] = math.nan
        elif not isinstance(v, str):
            raise OipError(400, f"{where}: element {k} must be a string (datatype BYTES), found "
                           f"{'a boolean' if isinstance(v, bool) else json.dumps(v)[:40]}", "invalid_value")
        elif known is not None and v not in known:
            shown = ", ".join(repr(c) for c in sorted(known)[:10]) + (", ..." if len(known) > 10 else "")
            raise OipError(400, f"{where}: element {k} ({v!r}) is not a category the model was trained on "
                           f"({shown})", "out_of_domain")
        else:
            out[k] = cached_code(v)
    return out


def bytes_tensor(values: np.ndarray) -> bytes:
    """Triton's BYTES layout: each element as a 4-byte little-endian length and its UTF-8 bytes."""
    parts = []
    for v in values.ravel().tolist():
        b = v if isinstance(v, bytes) else str(v).encode()
        parts.append(len(b).to_bytes(4, "little") + b)
    return b"".join(parts)
