"""Request parsing and validation against a model signature (pure: no Ray, no unpickling).

Accepts ``{"instances": [{"feature": value, ...}, ...]}`` (named features) or
``{"inputs": [[...], ...]}`` (ordered), like KServe v1 and MLflow scoring. Every client mistake
becomes a :class:`RequestError` with an HTTP status (400, 413, 422) and a JSON body naming the
row and field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class RequestError(Exception):
    status: int
    error: str
    message: str
    details: list[dict[str, Any]] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.error, "message": self.message}
        if self.details:
            out["details"] = self.details
        return out


@dataclass(frozen=True)
class Signature:
    """Input features in order (all numeric for now) and the output type."""

    features: tuple[str, ...]
    output: str = "classification"
    classes: tuple[Any, ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signature:
        return cls(
            features=tuple(f["name"] for f in data["inputs"]),
            output=data.get("output", "classification"),
            classes=tuple(data.get("classes", ())),
        )


def _number(value: Any, row: int, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        found = type(value).__name__
        raise RequestError(422, "invalid_value", f"row {row}, field {name!r}: expected a number, found {found}",
                           [{"row": row, "field": name, "expected": "number", "found": found}])
    try:
        x = float(value)
    except OverflowError:  # an integer with hundreds of digits
        x = math.inf
    if not math.isfinite(x):
        raise RequestError(422, "invalid_value", f"row {row}, field {name!r}: expected a finite number",
                           [{"row": row, "field": name, "expected": "finite number", "found": str(value)}])
    return x


def parse_request(raw: bytes, signature: Signature, max_rows: int, max_bytes: int) -> np.ndarray:
    """The request body as a float matrix in signature order, or a :class:`RequestError`."""
    if len(raw) > max_bytes:
        raise RequestError(413, "payload_too_large", f"body of {len(raw)} bytes exceeds the limit of {max_bytes}")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise RequestError(400, "malformed_json", f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RequestError(400, "bad_request", "expected a JSON object with 'instances' or 'inputs'")
    keys = set(body) & {"instances", "inputs"}
    if len(keys) != 1:
        raise RequestError(400, "bad_request", "expected exactly one of 'instances' or 'inputs'")
    key = keys.pop()
    rows = body[key]
    if not isinstance(rows, list) or not rows:
        raise RequestError(422, "invalid_request", f"'{key}' must be a non-empty list of rows")
    if len(rows) > max_rows:
        raise RequestError(413, "too_many_rows", f"{len(rows)} rows exceed the limit of {max_rows} per request")
    names = signature.features
    out = np.empty((len(rows), len(names)), dtype=np.float64)
    for i, row in enumerate(rows):
        if key == "instances":
            if not isinstance(row, dict):
                raise RequestError(422, "invalid_row", f"row {i}: expected an object of feature: value",
                                   [{"row": i, "expected": "object"}])
            missing = [n for n in names if n not in row]
            if missing:
                raise RequestError(422, "missing_feature", f"row {i}: missing feature {missing[0]!r}",
                                   [{"row": i, "field": n, "error": "missing"} for n in missing[:10]])
            unknown = [k for k in row if k not in set(names)]
            if unknown:
                raise RequestError(422, "unknown_feature", f"row {i}: unknown feature {unknown[0]!r}",
                                   [{"row": i, "field": k, "error": "unknown"} for k in unknown[:10]])
            for j, n in enumerate(names):
                out[i, j] = _number(row[n], i, n)
        else:
            if not isinstance(row, list) or len(row) != len(names):
                raise RequestError(422, "invalid_row", f"row {i}: expected a list of {len(names)} numbers",
                                   [{"row": i, "expected": f"list of {len(names)}"}])
            for j, n in enumerate(names):
                out[i, j] = _number(row[j], i, n)
    return out


def to_jsonable(values: Sequence[Any] | np.ndarray) -> list[Any]:
    return np.asarray(values).tolist()
