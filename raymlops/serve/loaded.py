"""What a Serve replica holds: the models of its route's traffic table, loaded and verified.

A replica unpickles nothing but the registry's own model artifacts, through
:meth:`raymlops.registry.spec.ModelSpec.load` (read once, after its sha256 matched the
registry's). :class:`ServingState` (the table with its champion and
challenger loaded) is replaced whole when the table changes, reusing models whose artifact did
not change.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from raymlops.registry.spec import ModelSpec
from raymlops.serve.request import RequestError, Signature, parse_predict_request
from raymlops.serve.routing import TrafficTable
from raymlops.stats.agreement import regression_tolerance


def binary_scores(model: LoadedModel, proba: np.ndarray | None) -> tuple[np.ndarray | None, Any]:
    """For a binary classifier, each row's probability of its second class (and that class), which
    the monitor uses for score-based metrics and for estimating performance before labels
    arrive; ``(None, None)`` otherwise."""
    if proba is None or proba.ndim != 2 or proba.shape[1] != 2:
        return None, None
    classes = getattr(model.model, "classes_", None)
    cls = classes[1].item() if classes is not None and hasattr(classes[1], "item") else (
        classes[1] if classes is not None else 1)
    return np.ascontiguousarray(proba[:, 1], dtype=np.float64), cls


@dataclass(frozen=True)
class LoadedModel:
    model_id: str
    spec: ModelSpec
    model: Any
    signature: Signature
    has_proba: bool
    order: np.ndarray | None = None  # columns of the champion's order, for a challenger

    @cached_property
    def agreement_tolerance(self) -> float | None:
        """How far a challenger's answer may lie from this (champion) model's and agree: a
        regression's half holdout MAE (:mod:`raymlops.stats.agreement`), None for a classifier.
        Worked out once per loaded model, not per shadow request."""
        return regression_tolerance(self.spec.metrics) if self.signature.output == "regression" else None

    @cached_property
    def example_row(self) -> np.ndarray | None:
        """The model's input example as one row in its own feature order (None without one): the
        row it is known to predict, against which a failing request is told apart from a broken model."""
        if not self.spec.input_example:
            return None
        try:
            body = json.dumps({"instances": [self.spec.input_example]}).encode()
            return parse_predict_request(body, self.signature, 1, len(body) + 1).X
        except RequestError:
            return None

    @classmethod
    def load(cls, spec: ModelSpec, reuse: dict[str, LoadedModel],
             champion: list[str] | None = None) -> LoadedModel:
        old = reuse.get(spec.model_id)
        model = old.model if old is not None and old.spec.artifact_sha256 == spec.artifact_sha256 else spec.load()
        order = None
        names = spec.features
        if champion is not None and champion != names:
            order = np.array([champion.index(n) for n in names])
        return cls(spec.model_id, spec, model, Signature.from_dict(spec.signature),
                   hasattr(model, "predict_proba"), order)


@dataclass(frozen=True)
class ServingState:
    """What a replica serves; replaced whole (one assignment), never changed in place."""

    table: TrafficTable
    champion: LoadedModel
    challenger: LoadedModel | None

    @classmethod
    def build(cls, table: dict[str, Any], current: ServingState | None) -> ServingState:
        t = TrafficTable.from_dict(table)
        reuse: dict[str, LoadedModel] = {}
        if current is not None:
            reuse[current.champion.model_id] = current.champion
            if current.challenger is not None:
                reuse[current.challenger.model_id] = current.challenger
        champion = LoadedModel.load(t.champion, reuse)
        challenger = None
        if t.challenger is not None:
            challenger = LoadedModel.load(t.challenger, reuse, list(champion.signature.features))
        return cls(t, champion, challenger)

    def metadata(self, limits: dict[str, Any]) -> dict[str, Any]:
        """The route's ``/metadata`` answer: the champion's version, signature, lineage, metrics and
        an input example, the traffic table and the request ``limits``."""
        spec = self.champion.spec
        return {"model_version": self.champion.model_id, "signature": spec.signature,
                "lineage": spec.lineage_summary, "metrics": spec.metrics,
                "input_example": {"instances": [spec.input_example]}, "traffic": self.table.summary(),
                "limits": limits}

    def models(self) -> dict[str, LoadedModel]:
        out = {self.champion.model_id: self.champion}
        if self.challenger is not None:
            out[self.challenger.model_id] = self.challenger
        return out


def predict_batch(items: list[tuple[LoadedModel, np.ndarray]],
                  observe: Callable[[str, float], None]) -> list[dict[str, Any] | Exception]:
    """One ``@serve.batch`` call: the requests' rows, grouped by model, predicted in one call per
    model; each request gets its own slice of ``predictions`` and ``probabilities``. When that
    call fails, each request of the group is predicted alone, so that one request the model cannot
    take fails alone: its place holds the exception."""
    out: list[dict[str, Any] | Exception | None] = [None] * len(items)
    groups: dict[str, list[int]] = {}
    for i, (model, _) in enumerate(items):
        groups.setdefault(model.model_id, []).append(i)
    for idx in groups.values():
        loaded = items[idx[0]][0]
        arrays = [items[i][1] for i in idx]
        X = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
        observe("raymlops_serve_batch_requests", float(len(idx)))
        observe("raymlops_serve_batch_rows", float(len(X)))
        try:
            preds, proba = _predict(loaded, X)
        except Exception as exc:
            if len(idx) == 1:
                out[idx[0]] = exc
                continue
            for i, a in zip(idx, arrays, strict=True):
                try:
                    p, q = _predict(loaded, a)
                    out[i] = {"predictions": p, "probabilities": q}
                except Exception as alone:
                    out[i] = alone
            continue
        start = 0
        for i, a in zip(idx, arrays, strict=True):
            n = len(a)
            out[i] = {"predictions": preds[start:start + n],
                      "probabilities": None if proba is None else proba[start:start + n]}
            start += n
    return [o for o in out if o is not None]


class ModelFailed(Exception):
    """The model raised on a request's valid rows: ``status`` 500 (our fault: the model fails on its
    own input example too, or has none), or 422 when it predicts its example but not a row of the
    request (the request's values are the cause; ``detail`` names the row, and the field when one
    is to blame)."""

    def __init__(self, model_id: str, message: str, status: int = 500, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.model_id, self.status, self.detail = model_id, status, detail

    def body(self) -> dict[str, Any]:
        if self.detail is None:
            return {"error": "model_error", "message": str(self)}
        return {"error": "model_refused", "message": str(self), "details": [self.detail]}

    @classmethod
    def explain(cls, model: LoadedModel, X: np.ndarray, exc: Exception) -> ModelFailed:
        """What to answer when ``model`` raised ``exc`` on the request's rows ``X`` (its columns)."""
        example = model.example_row
        refused = None if example is None else refused_cell(model, X, example)
        if refused is None:
            return cls(model.model_id, f"{model.model_id} failed: {type(exc).__name__}")
        row, j, why = refused
        if j is None:
            return cls(model.model_id, f"row {row}: the model cannot predict from these values ({why})", 422,
                       {"row": row, "error": "model_refused"})
        name, value = model.signature.features[j], X[row, j].item()
        return cls(model.model_id, f"row {row}, field {name!r}: the model cannot predict from {value!r} ({why})",
                   422, {"row": row, "field": name, "error": "model_refused", "found": value})


def _predict(loaded: LoadedModel, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    preds = np.asarray(loaded.model.predict(X))
    return preds, (np.asarray(loaded.model.predict_proba(X)) if loaded.has_proba else None)


def _finite(preds: np.ndarray, proba: np.ndarray | None) -> bool:
    return (preds.dtype.kind not in "fc" or bool(np.isfinite(preds).all())) and (
        proba is None or bool(np.isfinite(proba).all()))


def checked_answer(result: dict[str, Any]) -> dict[str, Any]:
    """A request's answer, or ValueError when a prediction or probability is not a finite number
    (JSON has none: the values that gave it are explained as :class:`ModelFailed` explains them)."""
    if not _finite(result["predictions"], result["probabilities"]):
        raise ValueError("the model's answer is not a finite number")
    return result


def refused_cell(loaded: LoadedModel, X: np.ndarray, example: np.ndarray) -> tuple[int, int | None, str] | None:
    """Why the model failed on a request's (valid) rows ``X``, when the request is the cause:
    ``(row, feature, the model's error)`` for the first row the model cannot predict, and the
    feature whose value, put in place of the ``example`` row's, the model cannot take (None when no
    single one is to blame). None when the model also fails on ``example`` (one row of its own
    input example, in ``X``'s columns): then the model is broken, not the request.
    Called only after a failure, with a few model calls: halving the rows to the first bad one,
    then one call per feature of that row."""
    def fails(rows: np.ndarray) -> str | None:
        try:
            with np.errstate(all="ignore"):  # the overflow that made it fail, once per probe
                preds, proba = _predict(loaded, rows)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"[:300]
        return None if _finite(preds, proba) else "its answer is not a finite number"

    if fails(example) is not None or (why := fails(X)) is None:
        return None
    lo, hi = 0, len(X)  # X[lo:hi] holds a row the model fails on
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fails(X[lo:mid]) is not None:
            hi = mid
        else:
            lo = mid
    why = fails(X[lo:lo + 1]) or why
    for j in range(X.shape[1]):
        probe = example.copy()
        probe[0, j] = X[lo, j]
        if fails(probe) is not None:
            return lo, j, why
    return lo, None, why
