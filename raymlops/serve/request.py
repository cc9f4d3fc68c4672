"""Request parsing and validation against a model signature (pure: no Ray, no unpickling).

Accepts ``{"instances": [{"feature": value, ...}, ...]}`` (named features) or
``{"inputs": [[...], ...]}`` (ordered), like KServe v1 and MLflow scoring. Every client mistake
becomes a :class:`RequestError` with an HTTP status and a JSON body naming the row and field:

=====  =======================  ===============================================================
 400   ``malformed_json``       empty, not UTF-8, or not JSON
 400   ``bad_request``          JSON, but not an object with exactly one of instances / inputs,
                                or with another top-level field (it would be ignored silently)
 400   ``malformed_body``       a gzip / deflate body (Content-Encoding) that does not decompress
 413   ``payload_too_large``    more bytes than the configured limit (also once decompressed)
 413   ``too_many_rows``        more rows than the configured limit
 415   ``unsupported_media_type``  a Content-Type other than JSON (UTF-8), a Content-Encoding other
                                than gzip or deflate
 422   ``invalid_request``      instances / inputs is not a non-empty list
 422   ``invalid_row``          a row of the wrong shape (not an object / not a list of n)
 422   ``missing_feature``      a named row without a feature of the signature
 422   ``unknown_feature``      a named row with a field the signature does not have
 422   ``invalid_value``        not a number (strings, booleans, null, objects), or NaN / +-inf
                                (or a number too large for a double) where not allowed; for a
                                string (categorical) feature, not a string (null where nullable)
 422   ``out_of_domain``        outside the feature's training range, or a category the model was
                                not trained on (``domain: training_range``)
=====  =======================  ===============================================================

A string feature's value becomes its :func:`~raymlops.features.category_code`; under ``domain:
any`` a category the model never saw is answered (its one-hot encoder sets no column for it).

The body is decoded with :func:`json.loads` only; nothing is ever unpickled.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from dataclasses import dataclass, field
from functools import cached_property
from itertools import chain
from typing import Any

import numpy as np

from raymlops.features import category_code

MAX_DETAILS = 20  # error details listed per response (the message names the first)


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
    """Input features in order, their training ranges (numbers) or categories (strings: ``type:
    string``), whether each may be missing, and the output type."""

    features: tuple[str, ...]
    output: str = "classification"
    classes: tuple[Any, ...] = ()
    bounds: tuple[tuple[float | None, float | None], ...] = ()
    allow_nan: tuple[bool, ...] = ()
    #: per feature: None for a number, the training categories for a string feature
    categories: tuple[tuple[str, ...] | None, ...] = ()
    #: per feature: a boolean one (``type: boolean``) also takes JSON true / false
    booleans: tuple[bool, ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signature:
        inputs = data["inputs"]
        return cls(
            features=tuple(f["name"] for f in inputs),
            output=data.get("output", "classification"),
            classes=tuple(data.get("classes", ())),
            bounds=tuple(
                (None if f.get("min") is None else float(f["min"]), None if f.get("max") is None else float(f["max"]))
                for f in inputs
            ),
            allow_nan=tuple(bool(f.get("allow_nan", f.get("nullable", False))) for f in inputs),
            categories=tuple(tuple(str(c) for c in f.get("categories") or ()) if f.get("type") == "string" else None
                             for f in inputs),
            booleans=tuple(f.get("type") == "boolean" for f in inputs),
        )

    @cached_property
    def categorical(self) -> bool:
        """Whether any feature is a string (categorical) one."""
        return any(c is not None for c in self.categories)

    @cached_property
    def cell_by_cell(self) -> bool:
        """Whether a request is read cell by cell (strings or booleans among the features), not
        by the vectorised path: worked out once per loaded model, not per request."""
        return self.categorical or any(self.booleans)

    @cached_property
    def known_categories(self) -> tuple[frozenset[str] | None, ...]:
        """Per feature, the training categories as a set (None for a number), built once."""
        return tuple(None if c is None else frozenset(c) for c in self.categories)

    def kind(self, j: int) -> str:
        """``"string"``, ``"boolean"`` or ``"number"``: what feature ``j`` takes."""
        if self.categories and self.categories[j] is not None:
            return "string"
        return "boolean" if self.booleans and self.booleans[j] else "number"


@dataclass(frozen=True)
class DomainPolicy:
    """``any``: every finite number is accepted; ``training_range``: values outside
    ``[min - margin * (max - min), max + margin * (max - min)]`` of the training data get 422."""

    kind: str = "any"
    margin: float = 0.0

    def limits(self, signature: Signature) -> tuple[np.ndarray, np.ndarray] | None:
        if self.kind == "any" or not signature.bounds:
            return None
        lo = np.full(len(signature.features), -np.inf)
        hi = np.full(len(signature.features), np.inf)
        for j, (a, b) in enumerate(signature.bounds):
            span = (b - a) if a is not None and b is not None else 0.0
            if a is not None:
                lo[j] = a - self.margin * span
            if b is not None:
                hi[j] = b + self.margin * span
        return lo, hi


@dataclass(frozen=True)
class ParsedRequest:
    """A validated request: the rows as a float matrix in signature order, and the routing key."""

    X: np.ndarray
    key: str | None = None

    @property
    def rows(self) -> int:
        return int(self.X.shape[0])


JSON_TYPES = ("application/json", "text/json")


def check_content_type(content_type: str | None) -> None:
    """415 unless the Content-Type is absent or JSON in UTF-8 (``application/json``, ``+json``)."""
    if not content_type:
        return
    media, _, params = content_type.partition(";")
    media = media.strip().lower()
    if media not in JSON_TYPES and not (media.startswith("application/") and media.endswith("+json")):
        raise RequestError(415, "unsupported_media_type",
                           f"Content-Type {media or content_type!r} is not supported; send application/json")
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise RequestError(415, "unsupported_media_type",
                               f"charset {value.strip()!r} is not supported; send UTF-8 JSON")


def decode_json(raw: bytes, max_bytes: int, example: str = '{"instances": [...]} or {"inputs": [...]}') -> Any:
    """The JSON value of a body (numbers as floats), or a 413 / 400 :class:`RequestError`."""
    if len(raw) > max_bytes:
        raise RequestError(413, "payload_too_large", f"body of {len(raw)} bytes exceeds the limit of {max_bytes}")
    if not raw.strip():
        raise RequestError(400, "malformed_json", f"the request body is empty; send {example}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(400, "malformed_json", f"body is not UTF-8 (byte {exc.start}); send UTF-8 JSON") from None
    try:
        # integers as floats: a 5,000-digit integer becomes inf (then 422 naming the field)
        # instead of tripping Python's int-size guard
        return json.loads(text, parse_int=float)
    except RecursionError:
        raise RequestError(400, "malformed_json", "body is not valid JSON: nested too deeply") from None
    except ValueError as exc:
        raise RequestError(400, "malformed_json", f"body is not valid JSON: {exc}") from None


_decode = decode_json


def _key_text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        return str(int(value))
    return str(value)


def _cell_problem(value: Any, allow_nan: bool, kind: str = "number") -> tuple[str, str, str] | None:
    """``(error, expected, found)`` when ``value`` cannot be a feature value of ``kind`` (see
    :meth:`Signature.kind`), else None."""
    if value is None and allow_nan:
        return None
    if kind == "string":
        return None if isinstance(value, str) else ("invalid_value", "string", type(value).__name__)
    if kind == "boolean":  # true / false, or the numbers 1 / 0 (JSON numbers are read as floats)
        if isinstance(value, bool) or (isinstance(value, (int, float)) and value in (0, 1)):
            return None
        shown = f"{value:g}" if isinstance(value, (int, float)) else type(value).__name__
        return "invalid_value", "true / false (or 1 / 0)", shown
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "invalid_value", "number", type(value).__name__
    if not math.isfinite(value) and not (allow_nan and math.isnan(value)):
        return "invalid_value", "finite number", str(value)
    return None


class _Errors:
    """Collects the first :data:`MAX_DETAILS` problems; the first names the error."""

    def __init__(self) -> None:
        self.first: tuple[str, str] | None = None
        self.details: list[dict[str, Any]] = []
        self.count = 0

    def add(self, error: str, message: str, detail: dict[str, Any]) -> None:
        self.count += 1
        if self.first is None:
            self.first = (error, message)
        if len(self.details) < MAX_DETAILS:
            self.details.append(detail)

    def raise_if_any(self) -> None:
        if self.first is not None:
            error, message = self.first
            if self.count > 1:
                message += f" (and {self.count - 1} more problem{'s' if self.count > 2 else ''})"
            raise RequestError(422, error, message, self.details)


def _slow_errors(key: str, rows: list[Any], signature: Signature, key_column: str | None) -> None:
    """Find and raise every problem of the rows (the fast path only knows that there is one)."""
    names = signature.features
    allow = signature.allow_nan or (False,) * len(names)
    kinds = [signature.kind(j) for j in range(len(names))]
    known = set(names) | ({key_column} if key_column else set())
    errs = _Errors()
    for i, row in enumerate(rows):
        if key == "instances":
            if not isinstance(row, dict):
                errs.add("invalid_row", f"row {i}: expected an object of feature: value, found "
                         f"{type(row).__name__}", {"row": i, "expected": "object"})
                continue
            for n in names:
                if n not in row:
                    errs.add("missing_feature", f"row {i}: missing feature {n!r}",
                             {"row": i, "field": n, "error": "missing"})
            for k in row:
                if k not in known:
                    errs.add("unknown_feature", f"row {i}: unknown feature {k!r}",
                             {"row": i, "field": k, "error": "unknown"})
            cells = [(n, row[n], allow[j], kinds[j]) for j, n in enumerate(names) if n in row]
        else:
            if not isinstance(row, list) or len(row) != len(names):
                found = f"list of {len(row)}" if isinstance(row, list) else type(row).__name__
                errs.add("invalid_row", f"row {i}: expected a list of {len(names)} values, found {found}",
                         {"row": i, "expected": f"list of {len(names)}"})
                continue
            cells = [(n, row[j], allow[j], kinds[j]) for j, n in enumerate(names)]
        for n, value, ok_nan, kind in cells:
            problem = _cell_problem(value, ok_nan, kind)
            if problem is not None:
                error, expected, found = problem
                errs.add(error, f"row {i}, field {n!r}: expected a {expected}, found {found}",
                         {"row": i, "field": n, "expected": expected, "found": found})
    errs.raise_if_any()


def domain_errors(X: np.ndarray, signature: Signature, policy: DomainPolicy) -> None:
    """RequestError (422, ``out_of_domain``) naming the first rows outside the policy's limits."""
    limits = policy.limits(signature)
    if limits is None:
        return
    lo, hi = limits
    values = X
    with np.errstate(invalid="ignore"):
        bad = (values < lo) | (values > hi)
    if not bad.any():
        return
    errs = _Errors()
    for i, j in np.argwhere(bad)[: MAX_DETAILS * 2]:
        name, value = signature.features[j], float(X[i, j])
        errs.add("out_of_domain",
                 f"row {int(i)}, field {name!r}: {value!r} is outside the accepted range [{lo[j]:g}, {hi[j]:g}]",
                 {"row": int(i), "field": name, "expected": "within the training range", "found": value,
                  "min": float(lo[j]), "max": float(hi[j])})
    errs.count = int(bad.sum())
    errs.raise_if_any()


def parse_predict_request(
    raw: bytes,
    signature: Signature,
    max_rows: int,
    max_bytes: int,
    *,
    content_type: str | None = None,
    policy: DomainPolicy | None = None,
    key_column: str | None = None,
) -> ParsedRequest:
    """The request body as a float matrix in signature order, or a :class:`RequestError`.

    ``key_column``: a field of ``instances`` rows that is not a feature; its value (of the
    first row) is the request's routing key (sticky canary). Valid requests take a fast,
    vectorised path; only a request with a problem is walked cell by cell to name it.
    """
    check_content_type(content_type)
    body = _decode(raw, max_bytes)
    if not isinstance(body, dict):
        raise RequestError(400, "bad_request",
                           f"expected a JSON object with 'instances' or 'inputs', found {type(body).__name__}")
    keys = [k for k in ("instances", "inputs") if k in body]
    if len(keys) != 1:
        raise RequestError(400, "bad_request", "expected exactly one of 'instances' or 'inputs'"
                           + (", found both" if keys else f", found keys {sorted(body)[:5]}"))
    key = keys[0]
    if len(body) > 1:
        others = ", ".join(repr(k) for k in sorted(body) if k != key)
        raise RequestError(400, "bad_request", f"unknown top-level field {others}: the body takes only '{key}'")
    rows = body[key]
    if not isinstance(rows, list) or not rows:
        raise RequestError(422, "invalid_request", f"'{key}' must be a non-empty list of rows")
    if len(rows) > max_rows:
        raise RequestError(413, "too_many_rows", f"{len(rows)} rows exceed the limit of {max_rows} per request")
    names = signature.features
    width = len(names)
    routing_key: str | None = None
    if signature.cell_by_cell:  # strings or booleans: every cell is looked at anyway
        if key == "instances" and key_column is not None and isinstance(rows[0], dict) and key_column in rows[0]:
            routing_key = _key_text(rows[0][key_column])
        _slow_errors(key, rows, signature, key_column)
        X = _mixed_matrix(key, rows, signature, policy or DomainPolicy())
    else:
        X, routing_key = _number_matrix(key, rows, signature, key_column)
    finite = np.isfinite(X)
    if not finite.all():
        allow_arr = np.asarray(signature.allow_nan or (False,) * width, dtype=bool)
        bad = ~finite & ~(np.isnan(X) & allow_arr)
        if bad.any():
            errs = _Errors()
            for i, j in np.argwhere(bad)[:MAX_DETAILS]:
                name, found = names[j], str(float(X[i, j]))
                errs.add("invalid_value", f"row {int(i)}, field {name!r}: expected a finite number, found {found}",
                         {"row": int(i), "field": name, "expected": "finite number", "found": found})
            errs.count = int(bad.sum())
            errs.raise_if_any()
    domain_errors(X, signature, policy or DomainPolicy())
    return ParsedRequest(X, routing_key)


#: category codes of the string values seen (bounded: a flood of distinct values is not kept)
_CODES: dict[str, float] = {}
_CODES_MAX = 100_000


def cached_code(value: str) -> float:
    """:func:`~raymlops.features.category_code`, remembered for the values seen (bounded)."""
    code = _CODES.get(value)
    if code is None:
        code = category_code(value)
        if len(_CODES) < _CODES_MAX:
            _CODES[value] = code
    return code


def _mixed_matrix(key: str, rows: list[Any], signature: Signature, policy: DomainPolicy) -> np.ndarray:
    """The rows (already checked by :func:`_slow_errors`) as a float matrix: numbers as they are,
    booleans as 1 / 0, strings as their category codes, null as NaN. Under ``training_range``, a category the model
    was not trained on is a 422 ``out_of_domain`` naming the row, the field and the categories."""
    names = signature.features
    errs = _Errors()
    columns = []
    for j, name in enumerate(names):
        values = [r[name] for r in rows] if key == "instances" else [r[j] for r in rows]
        categories = signature.categories[j] if signature.categories else None
        if categories is None:  # a number, or a boolean (true / false are 1 / 0)
            columns.append(np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64))
            continue
        if policy.kind != "any":
            known = signature.known_categories[j]
            assert known is not None
            for i, v in enumerate(values):
                if v is not None and v not in known:
                    shown = ", ".join(repr(c) for c in categories[:10]) + (", ..." if len(categories) > 10 else "")
                    errs.add("out_of_domain", f"row {i}, field {name!r}: {v!r} is not a category the model was "
                             f"trained on ({shown})",
                             {"row": i, "field": name, "expected": "a training category", "found": v,
                              "categories": list(categories)})
        columns.append(np.array([np.nan if v is None else cached_code(v) for v in values], dtype=np.float64))
    errs.raise_if_any()
    return np.column_stack(columns) if columns else np.empty((len(rows), 0))


def _number_matrix(key: str, rows: list[Any], signature: Signature,
                   key_column: str | None) -> tuple[np.ndarray, str | None]:
    """Rows of numbers as a float matrix, and the routing key: a fast, vectorised path for valid
    requests; only a request with a problem is walked cell by cell to name it."""
    names = signature.features
    width = len(names)
    routing_key: str | None = None
    try:
        if key == "instances":
            extra = 0
            if key_column is not None and isinstance(rows[0], dict) and key_column in rows[0]:
                routing_key = _key_text(rows[0][key_column])
            values = []
            for row in rows:
                extra = 1 if key_column is not None and key_column in row and key_column not in names else 0
                if len(row) != width + extra:
                    raise LookupError  # unknown (or missing) fields
                values.append([row[n] for n in names])
        else:
            values = rows
            if not all(type(r) is list and len(r) == width for r in rows):
                raise LookupError
        if not all(type(v) is float for v in chain.from_iterable(values)):
            raise LookupError  # strings, booleans, null, objects: name them below
        X = np.array(values, dtype=np.float64)
    except (LookupError, TypeError, ValueError):
        _slow_errors(key, rows, signature, key_column)
        # nullable features: null -> NaN, the only way to get here without an error
        allow = signature.allow_nan or (False,) * width
        X = np.array(
            [[np.nan if (v is None and allow[j]) else v for j, v in enumerate(
                [r[n] for n in names] if key == "instances" else r)] for r in rows],
            dtype=np.float64,
        )
    return X, routing_key



#: a request id a client may give (``X-Request-Id``): what ``/feedback`` can name
REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def request_id_of(given: str | None) -> tuple[str, dict[str, str], RequestError | None]:
    """``(the request's id, the headers to answer with, the error to answer instead)``.

    Under Serve the proxy puts an ``X-Request-Id`` on every request (the client's, or one it made)
    and adds that header to the answer itself: that is the request's id, and the app adds no
    header of its own (a second ``X-Request-Id`` that could disagree). Without it (the app called
    directly) the id is new, with its header. A client's id that cannot name a request for
    ``/feedback`` (not 1 to 128 of ``A-Z a-z 0-9 . _ : -``) is a 400 naming the header: the
    proxy echoes it whatever the app does, so replacing it would answer with two ids, and the 400's
    body says the same id (a new one there disagreed with the header)."""
    if given is None:
        made = uuid.uuid4().hex
        return made, {"X-Request-Id": made}, None
    if REQUEST_ID.match(given):
        return given, {}, None
    error = RequestError(400, "bad_request", f"header X-Request-Id {given[:64]!r}: expected 1 to 128 characters of "
                         "A-Z a-z 0-9 . _ : - (it names the request for /feedback); send another, or none",
                         [{"field": "X-Request-Id"}])
    return given, {}, error
