"""Parameter averaging and mergeable scaling moments of the data-parallel trainer, without Ray."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import SGDClassifier
from sklearn.preprocessing import StandardScaler

from raymlops.train.data_parallel import (
    average_params,
    get_params_of,
    moments,
    scaler_from_moments,
    set_params_of,
)


def test_average_is_weighted_by_rows_per_worker() -> None:
    a = {"coef_": np.array([[1.0, 2.0]]), "intercept_": np.array([0.0])}
    b = {"coef_": np.array([[3.0, 6.0]]), "intercept_": np.array([4.0])}
    out = average_params([a, b], [1, 1])
    np.testing.assert_allclose(out["coef_"], [[2.0, 4.0]])
    np.testing.assert_allclose(out["intercept_"], [2.0])
    out = average_params([a, b], [3, 1])
    np.testing.assert_allclose(out["coef_"], [[1.5, 3.0]])
    np.testing.assert_allclose(out["intercept_"], [1.0])
    assert out["coef_"].shape == (1, 2)
    # one worker, or equal states: unchanged
    np.testing.assert_array_equal(average_params([a], [7])["coef_"], a["coef_"])
    np.testing.assert_allclose(average_params([a, a, a], [1, 2, 3])["coef_"], a["coef_"])
    # inputs untouched
    np.testing.assert_array_equal(a["coef_"], [[1.0, 2.0]])


def test_a_worker_with_no_rows_does_not_count() -> None:
    a = {"coef_": np.array([1.0])}
    b = {"coef_": np.array([100.0])}
    np.testing.assert_array_equal(average_params([a, b], [5, 0])["coef_"], [1.0])


@pytest.mark.parametrize(
    ("states", "weights", "match"),
    [
        ([{"coef_": np.zeros(2)}, {"coef_": np.zeros(3)}], [1, 1], "shapes"),
        ([{"coef_": np.zeros(2)}, {"intercept_": np.zeros(1)}], [1, 1], "parameters"),
        ([{"coef_": np.zeros(2)}], [1, 1], "one weight per state"),
        ([], [], "one weight per state"),
        ([{"coef_": np.zeros(2)}, {"coef_": np.zeros(2)}], [0, 0], "positive sum"),
        ([{"coef_": np.zeros(2)}, {"coef_": np.zeros(2)}], [1, -1], "non-negative"),
    ],
)
def test_average_refuses_mismatched_states(states: list, weights: list, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        average_params(states, weights)


def test_averaging_fitted_sgd_models_round_trips_through_the_estimator() -> None:
    X, y = make_classification(n_samples=400, n_features=5, random_state=0)
    m1 = SGDClassifier(random_state=1).partial_fit(X[:200], y[:200], classes=[0, 1])
    m2 = SGDClassifier(random_state=2).partial_fit(X[200:], y[200:], classes=[0, 1])
    p1, p2 = get_params_of(m1), get_params_of(m2)
    assert set(p1) == {"coef_", "intercept_"}
    avg = average_params([p1, p2], [200, 200])
    set_params_of(m1, avg)
    np.testing.assert_allclose(m1.coef_, (p1["coef_"] + p2["coef_"]) / 2)
    expected = (X @ avg["coef_"].ravel() + avg["intercept_"][0] > 0).astype(int)
    np.testing.assert_array_equal(m1.predict(X), expected)
    m1.partial_fit(X, y)  # still a working learner after the parameters were replaced


def test_moments_merge_to_the_scaler_of_all_rows() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(loc=[1.0, -5.0, 0.0], scale=[1.0, 3.0, 0.0], size=(1000, 3))
    merged = scaler_from_moments([moments(X[:300]), moments(X[300:700]), moments(X[700:])])
    ref = StandardScaler().fit(X)
    np.testing.assert_allclose(merged.mean_, ref.mean_)
    np.testing.assert_allclose(merged.var_, ref.var_, atol=1e-9)
    np.testing.assert_allclose(merged.scale_, ref.scale_)  # a constant column scales by 1, as sklearn
    np.testing.assert_allclose(merged.transform(X), ref.transform(X), atol=1e-9)
    assert merged.n_samples_seen_ == 1000
    with pytest.raises(ValueError, match="no rows"):
        scaler_from_moments([moments(np.zeros((0, 3)))])


def test_training_modules_import_no_ray() -> None:
    """Ray at the edges: search spaces, trials, evaluation, the gate and averaging load without Ray."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import raymlops.train, raymlops.train.gate, raymlops.train.evaluate, raymlops.train.search\n"
        "import raymlops.train.objective, raymlops.train.incremental, raymlops.train.data_parallel\n"
        "bad = sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
