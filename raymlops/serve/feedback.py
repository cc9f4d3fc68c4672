"""Ground-truth labels for served requests: parsing ``POST /<route>/feedback`` (pure: no Ray).

Body: ``{"request_ids": ["<id>", ...], "labels": [<label>, ...]}``, the ids the predict
answers returned (``request_id``), one label per id. A label is a number or, for a
classification model, a string; for a request of several rows, either a list of labels (one
per row, in order) or the row's own key ``"<id>/<row>"`` with a single label. Every mistake
is a :class:`~raymlops.serve.request.RequestError` naming the field and, where it is one, the
position:

=====  =======================  ===============================================================
 400   ``malformed_json``       empty, not UTF-8, or not JSON
 400   ``bad_request``          JSON, but not an object
 413   ``payload_too_large``    more bytes than the configured limit
 422   ``invalid_feedback``     a field missing, not a list, empty, the two lengths differ, more
                                ids than allowed, an id that no predict answer could have given,
                                a label of the wrong type, (classification) a label that is not
                                one of the model's classes, or a list of labels of another length
                                than the rows its request answered (the monitor's check; no label
                                of the post is taken)
 503   ``monitor_unavailable``  the monitor did not take the labels (retry later)
=====  =======================  ===============================================================

``"detail": true`` in the body (or ``?detail=1`` on the URL) asks for each label's outcome.

The monitor's answer of each shard is summed by :func:`merge_replies`: for this request's labels
(rows) ``matched`` (joined with the served prediction), ``waiting`` (the prediction has not
reached the monitor yet: the label waits for it, ``monitor.performance.early_label_ttl_s``),
``expired`` (pushed out of a full waiting store), ``unknown`` (never to be joined: labelled
already, or one label for a request of several rows), ``unmatched`` (all but matched),
``pending`` (predictions waiting for a label), ``totals`` (every label the monitor received, by
final outcome: see :mod:`raymlops.monitor.labels`) and, on request, ``outcomes``: one per id, in
the order given (a list of outcomes for a list of labels).
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from raymlops.exceptions import ValidationError
from raymlops.ray_session import unwrap
from raymlops.serve.handoff import shard_of
from raymlops.serve.request import REQUEST_ID, RequestError, decode_json
from raymlops.stats.agreement import MAX_REGRESSION_LABEL

__all__ = ["COUNTS", "FeedbackRequest", "forward", "merge_replies", "parse_feedback_request", "split_by_shard"]

logger = logging.getLogger("raymlops.serve")

# what the predict route returns as request id (X-Request-Id or a uuid4 hex), optionally /<row>
_ID = re.compile(REQUEST_ID.pattern.removesuffix("$") + r"(/[0-9]{1,6})?$")
_FIELDS = ("request_ids", "labels")
_OPTIONAL = ("detail",)
COUNTS = ("matched", "waiting", "expired", "unknown", "unmatched", "pending")


@dataclass(frozen=True)
class FeedbackRequest:
    request_ids: list[str]
    labels: list[Any]
    detail: bool = False


def _invalid(message: str, field: str, **detail: Any) -> RequestError:
    return RequestError(422, "invalid_feedback", message, [{"field": field, **detail}])


def _label_problem(label: Any, numeric_only: bool, booleans: bool = False) -> str | None:
    """What is wrong with one (scalar) label, or None; ``booleans``: the model's classes are
    false / true, so those are labels."""
    if isinstance(label, bool) and booleans:
        return None
    if isinstance(label, bool) or label is None or isinstance(label, (dict, list)):
        return type(label).__name__ if label is not None else "null"
    if isinstance(label, str):
        if numeric_only:
            return "string (a regression model takes numbers)"
        return None if 0 < len(label) <= 256 else "string of length " + str(len(label))
    if isinstance(label, (int, float)):
        if not math.isfinite(label):
            return str(label)
        if numeric_only and abs(label) > MAX_REGRESSION_LABEL:
            return (f"{label:g}, beyond the largest regression label taken ({MAX_REGRESSION_LABEL:g}: the "
                    "monitor's error sums must stay finite)")
        return None
    return type(label).__name__


def _class_key(value: Any) -> Any:
    """A class as labels are compared with it: numbers as floats (JSON has no integers here)."""
    if isinstance(value, (bool, int, float)) or hasattr(value, "dtype"):
        try:
            return float(value)
        except (TypeError, ValueError):
            return str(value)
    return str(value)


def parse_feedback_request(raw: bytes, max_bytes: int, max_ids: int, *, regression: bool = False,
                           max_rows: int = 1000, classes: tuple[Any, ...] = ()) -> FeedbackRequest:
    """The ids and labels of a feedback body, or a :class:`RequestError` naming the problem;
    ``classes``: a classifier's classes, the only labels it takes (a label it could never predict
    would count as an error of every prediction)."""
    body = decode_json(raw, max_bytes, example='{"request_ids": [...], "labels": [...]}')
    if not isinstance(body, dict):
        raise RequestError(400, "bad_request", f"expected a JSON object with 'request_ids' and 'labels', found "
                           f"{type(body).__name__}")
    for name in _FIELDS:
        if name not in body:
            raise _invalid(f"missing field {name!r}: send {{\"request_ids\": [...], \"labels\": [...]}}", name,
                           error="missing")
        if not isinstance(body[name], list):
            raise _invalid(f"{name!r} must be a list, found {type(body[name]).__name__}", name,
                           expected="list", found=type(body[name]).__name__)
    unknown = sorted(set(body) - set(_FIELDS) - set(_OPTIONAL))
    if unknown:
        raise _invalid(f"unknown field {unknown[0]!r}; expected only 'request_ids', 'labels' and 'detail'",
                       unknown[0], error="unknown")
    detail = body.get("detail", False)
    if not isinstance(detail, bool):
        raise _invalid(f"'detail' must be true or false, found {type(detail).__name__}", "detail",
                       expected="bool", found=type(detail).__name__)
    ids, labels = body["request_ids"], body["labels"]
    if not ids:
        raise _invalid("'request_ids' must be a non-empty list", "request_ids", error="empty")
    if len(ids) > max_ids:
        raise _invalid(f"'request_ids' has {len(ids)} ids, more than the limit of {max_ids} per request",
                       "request_ids", error="too_many", limit=max_ids)
    if len(ids) != len(labels):
        raise _invalid(f"'request_ids' and 'labels' differ in length ({len(ids)} and {len(labels)}): "
                       "send one label per id", "labels", expected=len(ids), found=len(labels))
    for i, rid in enumerate(ids):
        if not isinstance(rid, str) or not _ID.match(rid):
            found = repr(rid[:40]) if isinstance(rid, str) else "a number" if isinstance(rid, (int, float)) \
                and not isinstance(rid, bool) else type(rid).__name__
            raise _invalid(f"request_ids[{i}]: expected a request id as the predict answer gave it "
                           f"(letters, digits, '._:-', at most 128), found {found}", "request_ids", index=i)
    known = {_class_key(c) for c in classes} if classes and not regression else None
    booleans = bool(classes) and not regression and all(isinstance(c, bool) for c in classes)

    def check_class(label: Any, i: int, row: int | None = None) -> None:
        if known is not None and _class_key(label) not in known:
            shown = ", ".join(repr(c) for c in list(classes)[:10]) + (", ..." if len(classes) > 10 else "")
            where = f"labels[{i}]" + ("" if row is None else f"[{row}]")
            raise _invalid(f"{where}: {label!r} is not a class of the model ({shown})", "labels", index=i,
                           **({} if row is None else {"row": row}), expected=list(classes)[:50], found=label)

    out: list[Any] = []
    for i, label in enumerate(labels):
        if isinstance(label, list):
            if not label or len(label) > max_rows:
                raise _invalid(f"labels[{i}]: a list of labels needs 1 to {max_rows} (one per row), found "
                               f"{len(label)}", "labels", index=i)
            problems = [(k, _label_problem(one, regression, booleans)) for k, one in enumerate(label)]
            bad = [(k, p) for k, p in problems if p is not None]
            if bad:
                k, what = bad[0]
                raise _invalid(f"labels[{i}][{k}]: expected a number{'' if regression else ' or a string'}, found "
                               f"{what}", "labels", index=i, row=k)
            if "/" in ids[i]:
                raise _invalid(f"labels[{i}]: a list of labels goes with a request id, not with the row key "
                               f"{ids[i]!r}", "labels", index=i)
            for k, one in enumerate(label):
                check_class(one, i, k)
            out.append([float(v) if isinstance(v, (int, float)) else v for v in label])
            continue
        problem = _label_problem(label, regression, booleans)
        if problem is not None:
            raise _invalid(f"labels[{i}]: expected a number{'' if regression else ' or a string'}, found {problem}",
                           "labels", index=i)
        check_class(label, i)
        out.append(float(label) if isinstance(label, (int, float)) else label)
    return FeedbackRequest(list(ids), out, detail)


def split_by_shard(request: FeedbackRequest, shards: int) -> list[tuple[list[str], list[Any]]]:
    """``(ids, labels)`` for each monitor shard (see :func:`raymlops.serve.handoff.shard_of`)."""
    out: list[tuple[list[str], list[Any]]] = [([], []) for _ in range(max(shards, 1))]
    for rid, label in zip(request.request_ids, request.labels, strict=True):
        ids, labels = out[shard_of(rid, shards)]
        ids.append(rid)
        labels.append(label)
    return out


def merge_replies(replies: list[dict[str, Any]], request: FeedbackRequest | None = None) -> dict[str, Any]:
    """The shards' ``feedback`` answers (one per shard, in shard order), summed (see the module
    docstring); given the ``request`` (when its caller asked for detail), the per-id
    ``outcomes`` in its order."""
    out: dict[str, Any] = {k: int(sum(int(r.get(k, 0)) for r in replies)) for k in COUNTS}
    totals: dict[str, int] = {}
    for r in replies:
        for k, v in (r.get("totals") or {}).items():
            totals[k] = totals.get(k, 0) + int(v)
    out["totals"] = totals
    if request is not None:
        shards = len(replies)
        given = [list(r.get("outcomes") or []) for r in replies]
        at = [0] * shards
        outcomes: list[Any] = []
        for rid in request.request_ids:  # split_by_shard kept each shard's ids in this order
            k = shard_of(rid, shards)
            outcomes.append(given[k][at[k]] if at[k] < len(given[k]) else None)
            at[k] += 1
        out["outcomes"] = outcomes
    return out


async def forward(monitors: Sequence[Any], request: FeedbackRequest, detail: bool, route: str
                  ) -> list[dict[str, Any]]:
    """The labels sent to the monitor shard that saw each request; the shards' replies. A label the
    monitor refuses (a list of labels of another length than its request's rows) is a 422
    :class:`RequestError` naming it, and changes nothing: with several shards and a list of labels,
    every shard checks its part before any takes one. Another failure of a shard (the monitor is
    down: not the client's mistake) is a 503 ``monitor_unavailable``."""
    parts = split_by_shard(request, len(monitors))
    try:
        if len(monitors) > 1 and any(isinstance(label, list) for label in request.labels):
            await asyncio.gather(*[m.check_feedback.remote(ids, labels)
                                   for m, (ids, labels) in zip(monitors, parts, strict=True) if ids])
        return list(await asyncio.gather(*[m.feedback.remote(ids, labels, detail=detail)
                                           for m, (ids, labels) in zip(monitors, parts, strict=True)]))
    except Exception as exc:
        refused = unwrap(exc)  # the monitor's own error inside Ray's wrapper
        if isinstance(refused, ValidationError):
            raise _invalid(str(refused).splitlines()[0], "labels") from None
        logger.warning("feedback to the monitor of %s failed: %s", route, exc)
        raise RequestError(503, "monitor_unavailable", f"the monitor of {route!r} did not take the labels "
                           f"({type(exc).__name__}); retry later") from None
