"""The pure parts of training: gate, search-space expansion, estimators, metrics and the holdout split."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from raymlops.config import Candidate, GateConfig, parse_config
from raymlops.data.split import holdout_mask
from raymlops.exceptions import ConfigError
from raymlops.features import category_code
from raymlops.train.evaluate import classification_metrics
from raymlops.train.gate import evaluate_gate
from raymlops.train.search import build_estimator, expand, import_estimator

LOGREG = "sklearn.linear_model.LogisticRegression"
HGB = "sklearn.ensemble.HistGradientBoostingClassifier"

# ---------------------------------------------------------------------------- gate


def test_gate_passes_when_every_rule_holds() -> None:
    rules = GateConfig(rules=["roc_auc >= 0.95", "accuracy > 0.9", "log_loss < 0.3"]).parsed()
    verdict = evaluate_gate(rules, {"roc_auc": 0.95, "accuracy": 0.93, "log_loss": 0.2})
    assert verdict.passed is True and verdict.status == "passed"
    assert verdict.reasons == []
    assert [r.passed for r in verdict.rules] == [True, True, True]
    assert [r.rule for r in verdict.rules] == ["roc_auc >= 0.95", "accuracy > 0.9", "log_loss < 0.3"]
    assert verdict.to_dict()["status"] == "passed"


def test_gate_fails_with_a_reason_per_failed_rule() -> None:
    rules = [("roc_auc", ">=", 0.95), ("accuracy", ">", 0.9), ("log_loss", "<=", 0.3)]
    verdict = evaluate_gate(rules, {"roc_auc": 0.91234, "accuracy": 0.9, "log_loss": 0.3})
    assert verdict.passed is False and verdict.status == "rejected"
    assert [r.passed for r in verdict.rules] == [False, False, True]  # '>' is strict, '<=' is not
    assert verdict.reasons == ["roc_auc >= 0.95 failed: roc_auc = 0.9123", "accuracy > 0.9 failed: accuracy = 0.9000"]
    as_dict = verdict.to_dict()
    assert as_dict["status"] == "rejected" and as_dict["reasons"] == verdict.reasons
    assert as_dict["rules"][0] == {
        "rule": "roc_auc >= 0.95",
        "metric": "roc_auc",
        "value": 0.91234,
        "threshold": 0.95,
        "passed": False,
    }


def test_gate_missing_metric_fails() -> None:
    verdict = evaluate_gate([("roc_auc", ">=", 0.5), ("log_loss", "<", 1.0)], {"roc_auc": 0.99})
    assert verdict.passed is False
    assert verdict.rules[1].value is None
    assert verdict.reasons == ["log_loss < 1: metric missing"]


def test_gate_nan_metric_fails() -> None:
    verdict = evaluate_gate(
        [("roc_auc", ">=", 0.5), ("log_loss", "<", 1.0)], {"roc_auc": float("nan"), "log_loss": float("nan")}
    )
    assert verdict.passed is False and not any(r.passed for r in verdict.rules)


def test_gate_without_rules_passes() -> None:
    assert evaluate_gate([], {}).passed is True


# ---------------------------------------------------------------------------- search space


def test_expand_is_the_cartesian_product_with_fixed_scalars() -> None:
    candidates = [
        Candidate(estimator=LOGREG, scale=True, params={"C": [0.1, 1.0, 10.0], "max_iter": 2000}),
        Candidate(estimator=HGB, params={"learning_rate": [0.05, 0.2], "max_depth": [3, None], "max_iter": 50}),
        Candidate(estimator="sklearn.naive_bayes.GaussianNB"),
    ]
    trials = expand(candidates)
    assert len(trials) == 3 + 2 * 2 + 1
    logreg = [t for t in trials if t["candidate"] == 0]
    assert [t["params"]["C"] for t in logreg] == [0.1, 1.0, 10.0]
    assert all(t["params"]["max_iter"] == 2000 and t["scale"] is True and t["estimator"] == LOGREG for t in logreg)
    hgb = [t for t in trials if t["candidate"] == 1]
    combos = {(t["params"]["learning_rate"], t["params"]["max_depth"]) for t in hgb}
    assert combos == {(0.05, 3), (0.05, None), (0.2, 3), (0.2, None)}
    assert all(t["params"]["max_iter"] == 50 and t["scale"] is False for t in hgb)
    assert trials[-1] == {"candidate": 2, "estimator": "sklearn.naive_bayes.GaussianNB", "scale": False, "params": {}}


@pytest.mark.parametrize(
    "path",
    [
        "sklearn.linear_model.NoSuchModel",
        "no_such_package_xyz.Model",
        "collections.OrderedDict",
        "sklearn.linear_model",
    ],
)
def test_expand_rejects_what_is_not_an_importable_estimator(path: str) -> None:
    with pytest.raises(ConfigError, match="train.candidates") as info:
        expand([Candidate(estimator=LOGREG), Candidate(estimator=path)])
    assert path in str(info.value)


def test_import_estimator_returns_the_class() -> None:
    assert import_estimator(LOGREG) is LogisticRegression


def test_expand_rejects_an_unknown_parameter_naming_the_candidate() -> None:
    cands = [Candidate(estimator=LOGREG, params={"C": [1.0]}), Candidate(estimator=LOGREG, params={"bogus": [1, 2]})]
    with pytest.raises(ConfigError) as info:
        expand(cands)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert message.startswith("train.candidates[1].params") and "bogus" in message


def test_build_estimator_seeds_and_scales() -> None:
    trial = {"candidate": 0, "estimator": LOGREG, "scale": True, "params": {"C": 0.5, "max_iter": 300}}
    built = build_estimator(trial, seed=17)
    assert isinstance(built, Pipeline)
    assert isinstance(built.steps[0][1], StandardScaler)
    est = built.steps[-1][1]
    assert isinstance(est, LogisticRegression)
    assert est.C == 0.5 and est.max_iter == 300 and est.random_state == 17
    assert trial["params"] == {"C": 0.5, "max_iter": 300}  # the trial itself is not changed


def test_build_estimator_without_scale_is_the_bare_estimator() -> None:
    est = build_estimator({"estimator": LOGREG, "scale": False, "params": {}}, seed=3)
    assert isinstance(est, LogisticRegression) and est.random_state == 3
    again = build_estimator({"estimator": LOGREG, "scale": False, "params": {}}, seed=3)
    assert again is not est  # a fresh, unfitted estimator each time
    assert not hasattr(again, "coef_")


@pytest.mark.parametrize("scale", [True, False])
def test_build_estimator_one_hot_encodes_the_categorical_columns(scale: bool) -> None:
    rng = np.random.default_rng(0)
    plans = ["basic", "plus", "pro"]
    codes = np.array([category_code(p) for p in plans])
    cat = rng.integers(0, 3, 600)
    X = np.column_stack([rng.normal(50, 20, 600), codes[cat]])  # a number, then a category's code
    X[rng.random(600) < 0.05, 1] = np.nan  # a missing category is a category of its own
    y = (cat == 0).astype(int)  # only "basic" churns: no order of the codes can say so, one-hot can
    trial = {"candidate": 0, "estimator": LOGREG, "scale": scale, "params": {"max_iter": 500},
             "categorical": [1]}
    model = build_estimator(trial, seed=1).fit(X, y)
    encode = model.steps[0][1]
    assert [t[0] for t in encode.transformers_][0] == "categories"
    if scale:  # the numbers are standardised, the one-hot columns are not
        assert isinstance(encode.named_transformers_["remainder"], StandardScaler)
    assert encode.transform(X[:5]).shape[1] == 1 + 4  # three plans and missing, then the number
    assert (model.predict(X) == y)[~np.isnan(X[:, 1])].mean() > 0.99
    unseen = np.array([[50.0, category_code("enterprise")]])  # a category the model never saw: no column set
    assert np.array_equal(encode.transform(unseen)[0, :4], np.zeros(4))
    assert model.predict(unseen).shape == (1,)


def test_build_estimator_keeps_an_explicit_random_state() -> None:
    est = build_estimator({"estimator": LOGREG, "params": {"random_state": 99}}, seed=3)
    assert est.random_state == 99


def test_build_estimator_without_a_seed_parameter() -> None:
    est = build_estimator({"estimator": "sklearn.neighbors.KNeighborsClassifier", "params": {"n_neighbors": 3}}, seed=3)
    assert isinstance(est, KNeighborsClassifier) and est.n_neighbors == 3
    assert "random_state" not in est.get_params()


def test_build_estimator_seed_makes_training_reproducible() -> None:
    X, y = make_classification(n_samples=200, n_features=6, random_state=0)
    trial = {"estimator": "sklearn.ensemble.RandomForestClassifier", "params": {"n_estimators": 5}}
    a = build_estimator(trial, seed=1).fit(X, y).predict_proba(X)
    b = build_estimator(trial, seed=1).fit(X, y).predict_proba(X)
    c = build_estimator(trial, seed=2).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


# ---------------------------------------------------------------------------- metrics


def _binary() -> tuple[LogisticRegression, np.ndarray, np.ndarray]:
    X, y = make_classification(n_samples=300, n_features=5, flip_y=0.1, random_state=4)
    model = LogisticRegression(max_iter=500).fit(X[:200], y[:200])
    return model, X[200:], y[200:]


def test_binary_metrics_agree_with_sklearn() -> None:
    model, X, y = _binary()
    got = classification_metrics(model, X, y)
    pred, proba = model.predict(X), model.predict_proba(X)
    assert got["rows"] == 100.0
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred))
    assert got["recall"] == pytest.approx(skm.recall_score(y, pred))
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba[:, 1]))
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, proba))
    assert 0.5 < got["roc_auc"] <= 1.0 and got["accuracy"] < 1.0  # a real, imperfect model
    assert all(type(v) is float for v in got.values())


def test_multiclass_metrics_agree_with_sklearn() -> None:
    X, y = make_classification(n_samples=300, n_features=6, n_informative=4, n_classes=3, random_state=5)
    model = LogisticRegression(max_iter=500).fit(X[:200], y[:200])
    X, y = X[200:], y[200:]
    got = classification_metrics(model, X, y)
    pred, proba = model.predict(X), model.predict_proba(X)
    assert got["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert got["precision"] == pytest.approx(skm.precision_score(y, pred, average="macro"))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"))
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, proba))


def test_metrics_without_predict_proba_skip_roc_auc_and_log_loss() -> None:
    from sklearn.svm import LinearSVC

    X, y = make_classification(n_samples=120, n_features=4, random_state=6)
    got = classification_metrics(LinearSVC().fit(X, y), X, y)
    assert "roc_auc" not in got and "log_loss" not in got
    assert {"accuracy", "precision", "recall", "f1", "rows"} <= set(got)


def test_binary_metrics_with_string_labels() -> None:
    _, X, y = _binary()
    labels = np.array(["no", "yes"])
    named = LogisticRegression(max_iter=500).fit(X, labels[y])
    got = classification_metrics(named, X, labels[y])
    pred = named.predict(X)
    assert got["precision"] == pytest.approx(skm.precision_score(labels[y], pred, pos_label="yes"))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(labels[y], named.predict_proba(X)[:, 1]))


# ---------------------------------------------------------------------------- holdout split


def test_holdout_mask_is_deterministic_per_seed() -> None:
    a = holdout_mask(10_000, 0.2, seed=42)
    b = holdout_mask(10_000, 0.2, seed=42)
    assert a.dtype == np.bool_ and a.shape == (10_000,)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, holdout_mask(10_000, 0.2, seed=43))
    # a hash of the row index: the first rows are split the same whatever the table length
    np.testing.assert_array_equal(holdout_mask(500, 0.2, seed=42), a[:500])
    # a larger fraction holds out a superset of the rows
    assert np.all(holdout_mask(10_000, 0.3, seed=42)[a])


@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.5, 0.9])
def test_holdout_fraction_is_close_on_100k_rows(fraction: float) -> None:
    mask = holdout_mask(100_000, fraction, seed=7)
    assert abs(mask.mean() - fraction) < 0.01


def test_holdout_rows_are_not_a_block() -> None:
    mask = holdout_mask(100_000, 0.2, seed=0)
    halves = mask[:50_000].mean(), mask[50_000:].mean()
    assert abs(halves[0] - halves[1]) < 0.01
    # interleaved: both kinds of row occur early, not one block then the other
    assert np.flatnonzero(mask)[0] < 50 and np.flatnonzero(~mask)[0] < 50


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_holdout_rejects_fractions_outside_0_1(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction"):
        holdout_mask(100, fraction, seed=0)


def test_holdout_of_no_rows() -> None:
    assert holdout_mask(0, 0.2, seed=0).shape == (0,)


def test_negative_seed_is_a_config_error_and_holdout_takes_any_int() -> None:
    base = {"name": "p", "data": {"source": "x.csv", "target": "y"}, "train": {"candidates": [{"estimator": LOGREG}]}}
    with pytest.raises(ConfigError, match="seed: expected greater than or equal to 0, found -1"):
        parse_config({**base, "seed": -1})
    mask = holdout_mask(1_000, 0.2, -1)  # the pure function does not overflow on any Python int
    assert 0.1 < mask.mean() < 0.3
    assert not np.array_equal(mask, holdout_mask(1_000, 0.2, 1))


def test_xgboost_classifier_is_given_label_indices_and_answers_with_the_labels() -> None:
    import pickle

    from sklearn.base import is_classifier

    from raymlops.train.search import EncodedLabels
    from raymlops.train.trainer import _indices

    X, y01 = make_classification(n_samples=300, n_features=5, random_state=0)
    y = np.where(y01 == 1, "yes", "no")
    assert _indices(y01) and _indices(y01.astype(float)) and not _indices(y) and not _indices(y01 + 1)
    trial = {"candidate": 0, "estimator": "xgboost.XGBClassifier", "scale": False,
             "params": {"n_estimators": 10, "max_depth": 2}, "encode_labels": True}
    model = build_estimator(trial, seed=4)
    assert isinstance(model, EncodedLabels) and is_classifier(model)
    assert model.get_params()["estimator__random_state"] == 4  # seeded inside
    model.fit(X, y)
    assert list(model.classes_) == ["no", "yes"]
    assert set(model.predict(X)) <= {"no", "yes"} and (model.predict(X) == y).mean() > 0.9
    proba = model.predict_proba(X)
    assert proba.shape == (300, 2) and np.array_equal(model.classes_[proba.argmax(axis=1)], model.predict(X))
    again = pickle.loads(pickle.dumps(model))
    assert np.array_equal(again.predict_proba(X), proba)
    # other estimators, and XGBoost on 0..k-1, are left as they are
    assert not isinstance(build_estimator(dict(trial, encode_labels=False), seed=4), EncodedLabels)
    assert isinstance(build_estimator(dict(trial, estimator=LOGREG, params={}), seed=4), LogisticRegression)
