"""A model that raises on some valid rows (a scaler turning 1e308 into infinity): the other requests
of its ``@serve.batch`` are answered, and the request is told which row and field the model cannot
take (422), while a model that fails on everything, its own input example too, stays a 500."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from raymlops.registry.spec import ModelSpec
from raymlops.serve.loaded import LoadedModel, ModelFailed, predict_batch, refused_cell
from raymlops.serve.request import Signature

FEATURES = ("age", "bmi", "bp")


def _loaded(model: Any) -> LoadedModel:
    signature = {"inputs": [{"name": n, "type": "double", "min": 0.0, "max": 0.1} for n in FEATURES],
                 "output": "regression"}
    version = type("V", (), {"id": "m:v1", "signature": signature, "lineage": {}, "metrics": {},
                             "artifact_key": "k", "artifact_sha256": "0" * 64})()
    spec = ModelSpec.of(version, "/nowhere")  # type: ignore[arg-type]
    return LoadedModel("m:v1", spec, model, Signature.from_dict(signature), False)


@pytest.fixture(scope="module")
def scaled() -> LoadedModel:
    rng = np.random.default_rng(0)
    X = rng.normal(0.05, 0.01, size=(200, 3))  # a spread of 0.01: 1e308 scales past the largest double
    return _loaded(make_pipeline(StandardScaler(), Ridge()).fit(X, X.sum(axis=1)))


def _observe(_: str, __: float) -> None:
    pass


def test_one_request_the_model_cannot_take_fails_alone(scaled: LoadedModel) -> None:
    good = [np.full((2, 3), 0.05), np.full((1, 3), 0.06)]
    bad = np.array([[0.05, 0.05, 0.05], [0.05, 1e308, 0.05]])
    out = predict_batch([(scaled, good[0]), (scaled, bad), (scaled, good[1])], _observe)
    assert isinstance(out[1], ValueError)
    for got, X in zip((out[0], out[2]), good, strict=True):
        assert isinstance(got, dict)
        np.testing.assert_array_equal(got["predictions"], scaled.model.predict(X))
    # a batch without the bad request: one call, every answer
    both = predict_batch([(scaled, good[0]), (scaled, good[1])], _observe)
    assert [len(o["predictions"]) for o in both if isinstance(o, dict)] == [2, 1]


def test_the_row_and_field_the_model_cannot_take_are_named(scaled: LoadedModel) -> None:
    X = np.array([[0.05, 0.05, 0.05], [0.04, 0.05, 0.06], [0.05, 0.05, -1e308], [1e308, 0.05, 0.05]])
    example = scaled.example_row
    assert example is not None and example.shape == (1, 3)
    row, field, why = refused_cell(scaled, X, example)  # type: ignore[misc]
    assert (row, FEATURES[field]) == (2, "bp") and "infinity" in why  # type: ignore[index]
    failed = ModelFailed.explain(scaled, X, ValueError("boom"))
    assert failed.status == 422
    assert failed.detail == {"row": 2, "field": "bp", "error": "model_refused", "found": -1e308}
    assert str(failed).startswith("row 2, field 'bp': the model cannot predict from -1e+308 (ValueError:")
    assert failed.body()["error"] == "model_refused"


def test_a_model_that_fails_on_its_own_example_is_our_fault() -> None:
    class Broken:
        def predict(self, X: np.ndarray) -> np.ndarray:
            raise RuntimeError("a bug")

    broken = _loaded(Broken())
    assert refused_cell(broken, np.zeros((3, 3)), broken.example_row) is None  # type: ignore[arg-type]
    failed = ModelFailed.explain(broken, np.zeros((3, 3)), RuntimeError("a bug"))
    assert failed.status == 500 and failed.body() == {"error": "model_error", "message": "m:v1 failed: RuntimeError"}


def test_an_answer_that_is_not_a_finite_number_is_explained_as_a_refused_row() -> None:
    """A linear model without a scaler answers 1e307 with about 1e309: infinity, which JSON cannot
    carry. The answer is refused (ValueError) and the row and field are named as for an exception."""
    from raymlops.serve.loaded import checked_answer

    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 3))
    model = _loaded(Ridge().fit(X, 50 * X[:, 0] + X[:, 1]))
    bad = np.array([[0.1, 0.2, 0.3], [1e307, 0.0, 0.0]])
    (out,) = predict_batch([(model, bad)], _observe)
    assert isinstance(out, dict) and np.isinf(out["predictions"][1])  # the batch call itself does not raise
    with pytest.raises(ValueError, match="not a finite number"):
        checked_answer(out)
    assert checked_answer({"predictions": np.array(["a", "b"], dtype=object), "probabilities": None})
    failed = ModelFailed.explain(model, bad, ValueError("the model's answer is not a finite number"))
    assert failed.status == 422 and failed.detail == {"row": 1, "field": "age", "error": "model_refused",
                                                      "found": 1e307}
    assert "its answer is not a finite number" in str(failed)
