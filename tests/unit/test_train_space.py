"""Training config (search spaces, task/metric/mode, strategy) and search-space expansion, without Ray."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import make_classification, make_regression

from raymlops.config import Candidate, TrainConfig, parse_config
from raymlops.exceptions import ConfigError
from raymlops.train.incremental import fit_epochs, plan_for, train_epochs
from raymlops.train.objective import TrialSettings, run_trial, validation_folds
from raymlops.train.search import build_estimator, check_trials, expand, sample

SGD = "sklearn.linear_model.SGDClassifier"
BASE: dict[str, Any] = {"name": "p", "data": {"source": "x.csv", "target": "y"},
                        "train": {"candidates": [{"estimator": SGD}]}}


def _config(train: dict[str, Any] | None = None, gate: dict[str, Any] | None = None) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data["train"].update(train or {})
    if gate is not None:
        data["gate"] = gate
    return data


def _error(data: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, "t.yaml")
    message = str(info.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------------- config: search spaces


def test_every_search_space_form_loads_and_is_kept_as_written() -> None:
    params = {
        "alpha": {"loguniform": [1e-5, 1e-1]},
        "eta0": {"uniform": [0.01, 1]},
        "max_iter": {"randint": [5, 50]},
        "penalty": {"choice": ["l2", "l1"]},
        "loss": ["log_loss", "modified_huber"],
        "l1_ratio": {"grid": [0.1, 0.5]},
        "class_weight": {"fixed": {"grid": 1}},
        "tol": 1e-3,
    }
    cfg = parse_config(_config({"candidates": [{"estimator": SGD, "params": params}]}))
    assert cfg.train.candidates[0].params == params


@pytest.mark.parametrize(
    ("value", "mentions"),
    [
        ({"loguniform": [0, 10]}, ["loguniform", "0 < low < high"]),
        ({"loguniform": [10, 1]}, ["loguniform"]),
        ({"uniform": [1]}, ["uniform", "[low, high]"]),
        ({"uniform": [1, "x"]}, ["uniform"]),
        ({"randint": [1.5, 10]}, ["randint", "integers"]),
        ({"randint": [3, 3]}, ["randint"]),
        ({"choice": []}, ["choice", "non-empty"]),
        ({"grid": "l2"}, ["grid"]),
        ({"logunifrom": [1e-3, 10]}, ["exactly one key", "loguniform"]),
        ({"uniform": [0, 1], "choice": [1]}, ["exactly one key"]),
        ([], ["at least one value"]),
    ],
)
def test_a_bad_search_space_names_the_parameter_key_path(value: Any, mentions: list[str]) -> None:
    message = _error(_config({"candidates": [{"estimator": SGD, "params": {"alpha": 0.1}},
                                             {"estimator": SGD, "params": {"C": value}}]}))
    assert message.startswith("t.yaml: train.candidates[1].params.C: expected "), message
    for word in mentions:
        assert word in message, (word, message)


def test_a_fixed_mapping_value_is_not_read_as_a_search_space() -> None:
    cfg = parse_config(_config({"candidates": [{"estimator": SGD, "params": {"class_weight": {"a": 1, "b": 2}}}]}))
    assert expand(cfg.train.candidates) == [
        {"candidate": 0, "estimator": SGD, "scale": False, "params": {"class_weight": {"a": 1, "b": 2}}}
    ]


# ------------------------------------------------------------------------- config: task, metric, strategy


def test_defaults_follow_the_task_and_the_metric() -> None:
    assert (lambda t: (t.task, t.metric, t.mode))(parse_config(_config()).train) == ("classification", "roc_auc", "max")
    reg = parse_config(_config({"task": "regression"})).train
    assert (reg.metric, reg.mode) == ("r2", "max")
    assert parse_config(_config({"task": "regression", "metric": "rmse"})).train.mode == "min"
    assert parse_config(_config({"metric": "log_loss"})).train.mode == "min"
    t = parse_config(_config()).train
    assert t.strategy == "tune" and t.scheduler.type == "fifo" and t.max_failures == 1 and t.num_samples == 1
    assert t.cv_folds is None and t.max_epochs == t.epochs == 10


@pytest.mark.parametrize(
    ("train", "key_path", "mentions"),
    [
        ({"task": "regression", "metric": "roc_auc"}, "train.metric", ["regression metric", "r2", "'roc_auc'"]),
        ({"task": "classification", "metric": "r2"}, "train.metric",
         ["classification metric", "'r2'", "set train.task: regression"]),
        ({"metric": "log_loss", "mode": "max"}, "train.mode", ["'min'", "lower is better"]),
        ({"task": "clustering"}, "train.task", ["'clustering'"]),
        ({"cv_folds": 1}, "train.cv_folds", ["greater than or equal to 2"]),
        ({"num_samples": 0}, "train.num_samples", ["1"]),
        ({"max_failures": -1}, "train.max_failures", ["0"]),
        ({"scheduler": "hyperband"}, "train.scheduler.type", ["'fifo'", "'asha'"]),
        ({"scheduler": {"type": "asha", "max_t": 3, "grace_period": 4}}, "train.scheduler.grace_period", ["max_t"]),
        ({"scheduler": {"type": "asha", "reduction_factor": 1}}, "train.scheduler.reduction_factor", ["1"]),
        # SGD parameter averaging was removed (benchmarks/RESULTS.md, bench_train): Ray Train is the path
        ({"strategy": "data_parallel"}, "train.strategy", ["'tune'", "'distributed'", "'data_parallel'"]),
        ({"candidates": [{"estimator": SGD, "incremental": "yes"}]}, "train.candidates[0].incremental", ["bool"]),
    ],
)
def test_bad_train_settings_name_their_key_path(train: dict[str, Any], key_path: str, mentions: list[str]) -> None:
    message = _error(_config(train))
    assert message.startswith(f"t.yaml: {key_path}: "), message
    for word in mentions:
        assert word in message, (word, message)


def test_scheduler_shorthand_and_full_form() -> None:
    assert parse_config(_config({"scheduler": "asha"})).train.scheduler.type == "asha"
    t = parse_config(_config({"epochs": 12, "scheduler": {"type": "asha", "max_t": 8, "grace_period": 2,
                                                           "reduction_factor": 3}})).train
    assert (t.scheduler.max_t, t.scheduler.grace_period, t.scheduler.reduction_factor, t.max_epochs) == (8, 2, 3.0, 8)


def test_gate_metrics_must_belong_to_the_task() -> None:
    message = _error(_config({"task": "regression"}, {"rules": ["roc_auc >= 0.9"]}))
    assert message.startswith("t.yaml: gate.rules: ") and "'roc_auc'" in message and "r2" in message
    cfg = parse_config(_config({"task": "regression"}, {"rules": ["r2 >= 0.5", {"metric": "rmse"}]}))
    assert cfg.gate.parsed() == [("r2", ">=", 0.5)]


# ------------------------------------------------------------------------- expansion and sampling


def test_expand_samples_distributions_num_samples_times_per_grid_point_deterministically() -> None:
    cands = [
        Candidate(estimator=SGD, params={"alpha": {"loguniform": [1e-5, 1e-1]}, "loss": ["hinge", "log_loss"],
                                         "max_iter": {"randint": [5, 9]}, "eta0": {"uniform": [0.1, 0.2]}}),
        Candidate(estimator=SGD, params={"penalty": {"choice": ["l1", "l2"]}}),
    ]
    trials = expand(cands, num_samples=3, seed=7)
    assert len(trials) == 3 * 2 + 2  # sampled: draws x grid; grid-only: once
    sampled = [t["params"] for t in trials if t["candidate"] == 0]
    assert all(1e-5 <= p["alpha"] <= 1e-1 and 5 <= p["max_iter"] < 9 and 0.1 <= p["eta0"] <= 0.2 for p in sampled)
    assert all(type(p["max_iter"]) is int and type(p["alpha"]) is float for p in sampled)
    assert [p["loss"] for p in sampled] == ["hinge", "log_loss"] * 3
    assert len({p["alpha"] for p in sampled}) == 6
    assert [t["params"] for t in trials if t["candidate"] == 1] == [{"penalty": "l1"}, {"penalty": "l2"}]
    assert expand(cands, num_samples=3, seed=7) == trials
    assert expand(cands, num_samples=3, seed=8) != trials
    # another candidate in front does not change this candidate's draws
    again = expand([Candidate(estimator=SGD, params={"alpha": {"uniform": [0, 1]}}), cands[0]], num_samples=3, seed=7)
    assert [t["params"] for t in again if t["candidate"] == 1] != sampled  # index 1 now: its own stream
    assert expand([cands[0]], num_samples=3, seed=7) == [t for t in trials if t["candidate"] == 0]


def test_loguniform_draws_spread_over_the_decades() -> None:
    rng = np.random.default_rng(0)
    draws = np.array([sample("loguniform", [1e-4, 1.0], rng) for _ in range(4000)])
    counts = np.histogram(np.log10(draws), bins=[-4, -3, -2, -1, 0])[0]
    assert counts.min() > 850  # about 1000 per decade, not piled up in the last one


def test_expand_checks_sampled_values_against_the_estimator() -> None:
    cand = Candidate(estimator=SGD, params={"bogus": {"uniform": [0, 1]}})
    with pytest.raises(ConfigError, match=r"train.candidates\[0\].params.*bogus"):
        expand([cand], num_samples=2)


def test_a_factory_function_builds_a_pipeline_with_step_params() -> None:
    trials = expand([Candidate(estimator="tests.unit.test_train_space.make_scaled_sgd",
                               params={"sgd__alpha": [1e-4, 1e-3]})])
    assert [t["params"] for t in trials] == [{"sgd__alpha": 1e-4}, {"sgd__alpha": 1e-3}]
    model = build_estimator(trials[1], seed=5)
    assert model.named_steps["sgd"].alpha == 1e-3 and model.named_steps["sgd"].random_state == 5


def make_scaled_sgd() -> Any:
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("scale", StandardScaler()), ("sgd", SGDClassifier(loss="log_loss"))])


def test_check_trials_refuses_the_wrong_kind_of_estimator_or_a_metric_it_cannot_produce() -> None:
    reg = expand([Candidate(estimator="sklearn.linear_model.Ridge")])
    with pytest.raises(ConfigError, match=r"train.candidates\[0\].estimator: Ridge is a regressor.*"
                                          r"set train.task: regression"):
        check_trials(reg, "classification", "accuracy")
    check_trials(reg, "regression", "r2")
    hinge = expand([Candidate(estimator=SGD, params={"loss": "hinge"})])
    with pytest.raises(ConfigError, match="predict_proba"):
        check_trials(hinge, "classification", "roc_auc")
    check_trials(hinge, "classification", "accuracy")


# ------------------------------------------------------------------------- incremental plans and trials


@pytest.mark.parametrize(
    ("estimator", "params", "incremental", "mode", "attr"),
    [
        (SGD, {}, None, "partial_fit", None),
        ("sklearn.neural_network.MLPClassifier", {"max_iter": 5}, None, "partial_fit", None),
        ("sklearn.naive_bayes.GaussianNB", {}, None, "once", None),
        ("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 8}, None, "warm_start", "n_estimators"),
        ("sklearn.ensemble.HistGradientBoostingClassifier", {"max_iter": 30}, None, "warm_start", "max_iter"),
        ("sklearn.linear_model.LogisticRegression", {}, None, "once", None),
        ("sklearn.linear_model.LogisticRegression", {}, True, "warm_start", "max_iter"),
        (SGD, {}, False, "once", None),
    ],
)
def test_plan_detects_how_an_estimator_learns(
    estimator: str, params: dict[str, Any], incremental: bool | None, mode: str, attr: str | None
) -> None:
    plan = plan_for(build_estimator({"estimator": estimator, "params": params}, 0), incremental, epochs=4)
    assert (plan.mode, plan.attr) == (mode, attr)
    assert plan.epochs == (1 if mode == "once" else 4)


def test_without_early_stopping_a_warm_start_learner_is_fitted_once() -> None:
    model = build_estimator({"estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
                             "params": {"max_iter": 30}}, 0)
    assert plan_for(model, None, epochs=4, grow=False).mode == "once"
    assert plan_for(model, True, epochs=4, grow=False).mode == "warm_start"  # asked for explicitly
    assert plan_for(build_estimator({"estimator": SGD, "params": {}}, 0), None, 4, grow=False).mode == "partial_fit"


def test_warm_start_grows_to_the_configured_size() -> None:
    plan = plan_for(build_estimator({"estimator": "sklearn.ensemble.RandomForestClassifier",
                                     "params": {"n_estimators": 10}}, 0), None, epochs=4)
    assert plan.schedule == (3, 5, 8, 10)
    small = plan_for(build_estimator({"estimator": "sklearn.ensemble.RandomForestClassifier",
                                      "params": {"n_estimators": 2}}, 0), None, epochs=4)
    assert small.epochs == 2 and small.schedule == (1, 2)


def test_incremental_true_on_an_estimator_that_cannot_is_refused() -> None:
    with pytest.raises(ConfigError, match="cannot train incrementally"):
        plan_for(build_estimator({"estimator": "sklearn.neighbors.KNeighborsClassifier", "params": {}}, 0), True, 3)


def test_partial_fit_epochs_match_a_hand_loop_and_refit_matches_the_trial() -> None:
    X, y = make_classification(n_samples=600, n_features=8, random_state=1)
    trial = {"estimator": SGD, "scale": True, "params": {"loss": "log_loss"}}
    model = build_estimator(trial, seed=3)
    plan = plan_for(model, None, epochs=3)
    assert list(train_epochs(model, plan, X, y)) == [1, 2, 3]
    by_hand = build_estimator(trial, seed=3)
    Xs = by_hand[0].fit_transform(X)
    for _ in range(3):
        by_hand[-1].partial_fit(Xs, y, classes=np.array([0, 1]))
    np.testing.assert_array_equal(model.predict_proba(X), by_hand.predict_proba(X))
    again = fit_epochs(build_estimator(trial, seed=3), plan, X, y, epochs=3)
    np.testing.assert_array_equal(again.predict_proba(X), model.predict_proba(X))


def test_run_trial_reports_every_epoch_and_improves() -> None:
    X, y = make_classification(n_samples=1000, n_features=10, random_state=2)
    trial = {"estimator": "sklearn.ensemble.GradientBoostingClassifier", "params": {"n_estimators": 20}}
    reports = list(run_trial(trial, X, y, TrialSettings("classification", "log_loss", 0, 4, 0.25)))
    assert [r["epoch"] for r in reports] == [1, 2, 3, 4] and {r["epochs_planned"] for r in reports} == {4}
    assert reports[-1]["log_loss"] < reports[0]["log_loss"]
    assert {"accuracy", "roc_auc", "f1", "precision", "recall"} <= set(reports[-1])
    assert "rows" not in reports[-1]
    again = list(run_trial(trial, X, y, TrialSettings("classification", "log_loss", 0, 4, 0.25)))
    assert [r["log_loss"] for r in again] == [r["log_loss"] for r in reports]


def test_run_trial_regression_with_k_folds() -> None:
    X, y = make_regression(n_samples=500, n_features=5, noise=10.0, random_state=3)
    settings = TrialSettings("regression", "rmse", 0, 1, 0.25, cv_folds=4)
    (report,) = run_trial({"estimator": "sklearn.linear_model.Ridge", "params": {}}, X, y, settings)
    assert set(report) >= {"r2", "mae", "rmse"} and report["r2"] > 0.9 and report["epochs_planned"] == 1.0


def test_validation_folds_holdout_and_kfold() -> None:
    y = np.array([0] * 30 + [1] * 10)
    ((tr, va),) = validation_folds(y, "classification", 0, 0.25, None)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == 40 and 0 < len(va) < 40
    folds = validation_folds(y, "classification", 0, 0.25, 5)
    assert len(folds) == 5
    assert sorted(np.concatenate([va for _, va in folds]).tolist()) == list(range(40))
    assert all((y[va] == 1).sum() == 2 for _, va in folds)  # stratified
    assert [va.tolist() for _, va in validation_folds(y, "classification", 0, 0.25, 5)] == \
        [va.tolist() for _, va in folds]


def test_train_config_constructs_from_python_too() -> None:
    t = TrainConfig(candidates=[Candidate(estimator=SGD)], task="regression")  # type: ignore[call-arg]
    assert (t.metric, t.mode) == ("r2", "max")


def test_mode_is_derived_from_the_metric_not_stored() -> None:
    written = parse_config(_config({"metric": "log_loss", "mode": "min"})).train  # agreeing: accepted
    assert written.mode == "min" and "mode" not in written.model_dump() and "mode_written" not in written.model_dump()
    # a derived value cannot go stale: a copy with another metric has that metric's direction
    assert written.model_copy(update={"metric": "accuracy"}).mode == "max"
    assert parse_config(_config({"metric": "log_loss"})).config_hash() == parse_config(
        _config({"metric": "log_loss", "mode": "min"})).config_hash()  # writing it changes nothing


def test_a_partial_fit_refusal_says_how_to_get_scikit_learns_own_fit() -> None:
    """MLPClassifier(early_stopping=True) failed with scikit-learn's "partial_fit does not support
    early_stopping=True", and nothing said that raymlops chose partial_fit, or how not to."""
    X, y = make_classification(n_samples=200, n_features=5, random_state=0)
    model = build_estimator({"estimator": "sklearn.neural_network.MLPClassifier",
                             "params": {"early_stopping": True, "max_iter": 50}}, 0)
    plan = plan_for(model, None, epochs=3)
    with pytest.raises(ValueError, match=r"early_stopping.*set incremental: false in its candidate"):
        list(train_epochs(model, plan, X, y))
    once = build_estimator({"estimator": "sklearn.neural_network.MLPClassifier",
                            "params": {"early_stopping": True, "max_iter": 50}}, 0)
    assert list(train_epochs(once, plan_for(once, False, epochs=3), X, y)) == [1]

