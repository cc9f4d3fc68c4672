"""A model's content digest (raymlops.registry.digest): equal models, equal digests, whatever object
sharing the process left in them; any changed value changes it."""

from __future__ import annotations

import io
import pickle

import joblib
import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from raymlops.registry.digest import model_digest


def _fitted() -> object:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 4))
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(X, (X[:, 0] > 0).astype(int))


def _bytes(model: object) -> bytes:
    buf = io.BytesIO()
    joblib.dump(model, buf)
    return buf.getvalue()


def test_equal_models_whose_objects_are_shared_differently_pickle_differently_and_digest_alike() -> None:
    a, b = _fitted(), _fitted()
    word = "lbfgs-solver"
    a.steps[1][1].note, a.steps[1][1].again = word, word  # one object twice: pickled once, then referred to
    b.steps[1][1].note, b.steps[1][1].again = word, "".join(["lbfgs", "-solver"])  # two equal objects
    assert _bytes(a) != _bytes(b)
    assert model_digest(a) == model_digest(b)
    assert model_digest(pickle.loads(pickle.dumps(a))) == model_digest(a)


def test_any_changed_value_changes_the_digest() -> None:
    a, b = _fitted(), _fitted()
    assert model_digest(a) == model_digest(b)
    coef = b.steps[1][1].coef_
    coef[0, 0] = np.nextafter(coef[0, 0], np.inf)  # one unit in the last place
    assert model_digest(a) != model_digest(b)
    c = _fitted()
    c.steps[1][1].C = 0.5
    assert model_digest(c) != model_digest(a)


def test_a_boosted_model_with_cython_objects_and_a_cycle_is_digested() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 3))
    y = (X[:, 1] > 0).astype(int)
    a = HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(X, y)
    b = HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(X, y)
    assert model_digest(a) == model_digest(b)
    a.cycle = [a]
    assert len(model_digest(a)) == 64
