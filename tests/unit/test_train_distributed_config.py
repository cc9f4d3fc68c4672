"""strategy: distributed — config errors name their key path; the search space expands as for
candidates; the boosted-model adapter predicts and round-trips through joblib (no Ray)."""

from __future__ import annotations

import io
from typing import Any

import joblib
import numpy as np
import pytest

from raymlops.config import TrainConfig, parse_config
from raymlops.exceptions import ConfigError
from raymlops.train.distributed import engine_metric, expand_params

BASE: dict[str, Any] = {
    "name": "m",
    "data": {"source": "sklearn://breast_cancer", "target": "target"},
}


def _config(train: dict[str, Any]) -> Any:
    return parse_config({**BASE, "train": train}, "p.yaml")


def _distributed(**kw: Any) -> dict[str, Any]:
    return {"strategy": "distributed", "framework": "xgboost", **kw}


def test_the_issue_example_loads() -> None:
    cfg = _config(_distributed(num_workers=2, cpus_per_worker=1, num_boost_round=200, early_stopping_rounds=20,
                               params={"max_depth": 6, "eta": {"loguniform": [0.01, 0.3]}, "subsample": 0.8},
                               num_samples=4))
    t = cfg.train
    assert (t.framework, t.num_workers, t.num_boost_round, t.early_stopping_rounds) == ("xgboost", 2, 200, 20)
    assert t.candidates == [] and t.metric == "roc_auc" and t.mode == "max"


def test_regression_defaults_to_rmse() -> None:
    t = _config(_distributed(task="regression")).train
    assert (t.metric, t.mode) == ("rmse", "min")


@pytest.mark.parametrize(
    ("train", "where", "what"),
    [
        ({"strategy": "distributed"}, "train.framework", "expected xgboost or lightgbm"),
        (_distributed(framework="catboost"), "train.framework", "catboost"),
        (_distributed(num_workers=0), "train.num_workers", "greater than or equal to 1"),
        (_distributed(cpus_per_worker=0), "train.cpus_per_worker", "greater than 0"),
        (_distributed(num_boost_round=0), "train.num_boost_round", "greater than or equal to 1"),
        (_distributed(early_stopping_rounds=0), "train.early_stopping_rounds", "greater than or equal to 1"),
        (_distributed(checkpoint_every=0), "train.checkpoint_every", "greater than or equal to 1"),
        (_distributed(params={"eta": {"loguniform": [0, 1]}}), "train.params.eta", "0 < low < high"),
        (_distributed(params={"eta": []}), "train.params.eta", "at least one value"),
        (_distributed(params={"objective": "reg:squarederror"}), "train.params", "'objective'"),
        # LightGBM's aliases of what raymlops sets: num_trees would win over num_boost_round
        (_distributed(framework="lightgbm", params={"num_trees": 5}), "train.params", "'num_trees'"),
        (_distributed(framework="lightgbm", params={"n_iter_no_change": 5}), "train.params", "'n_iter_no_change'"),
        (_distributed(metric="f1"), "train.metric", "with strategy 'distributed'"),
        (_distributed(task="regression", metric="r2"), "train.metric", "with strategy 'distributed'"),
        (_distributed(cv_folds=3), "train.cv_folds", "expected no cv_folds"),
        (_distributed(candidates=[{"estimator": "sklearn.linear_model.LogisticRegression"}]), "train.candidates",
         "expected no candidates"),
        (_distributed(bogus=1), "train.bogus", "unknown key"),
        ({"framework": "xgboost", "candidates": [{"estimator": "sklearn.linear_model.LogisticRegression"}]},
         "train.framework", "expected no framework"),
        ({"params": {"max_depth": 3}, "candidates": [{"estimator": "sklearn.linear_model.LogisticRegression"}]},
         "train.params", "train.candidates[i].params"),
        ({"candidates": []}, "train.candidates", "at least one candidate"),
    ],
)
def test_mistakes_are_reported_with_their_key_path(train: dict[str, Any], where: str, what: str) -> None:
    with pytest.raises(ConfigError) as info:
        _config(train)
    message = str(info.value)
    assert message.startswith(f"p.yaml: {where}"), message
    assert what in message, message


def test_missing_candidates_still_name_the_key_for_other_strategies() -> None:
    with pytest.raises(ConfigError, match=r"train\.candidates: expected this key"):
        _config({"strategy": "tune"})


def test_search_space_expands_like_a_candidates() -> None:
    t = TrainConfig.model_validate(_distributed(params={"max_depth": [3, 6], "eta": {"loguniform": [0.01, 0.3]}},
                                                num_samples=2))
    trials = expand_params(t, seed=7)
    assert len(trials) == 4 and trials == expand_params(t, seed=7)
    assert {tr["params"]["max_depth"] for tr in trials} == {3, 6}
    assert all(0.01 <= tr["params"]["eta"] <= 0.3 for tr in trials)
    assert all(tr["estimator"] == "ray.train.xgboost.XGBoostTrainer" for tr in trials)
    assert expand_params(t, seed=8) != trials


def test_engine_metric_names() -> None:
    assert engine_metric("xgboost", "accuracy", 2) == ("error", True)
    assert engine_metric("xgboost", "log_loss", 3) == ("mlogloss", False)
    assert engine_metric("lightgbm", "mae", 0) == ("l1", False)
    with pytest.raises(ConfigError, match="train.metric"):
        engine_metric("lightgbm", "roc_auc", 3)


@pytest.mark.parametrize("framework", ["xgboost", "lightgbm"])
def test_boosted_model_predicts_and_round_trips_as_native_bytes(framework: str) -> None:
    from sklearn.datasets import make_classification

    from raymlops.train.boost_model import BoostedClassifier, boosted_model, native_bytes

    X, y = make_classification(400, 6, random_state=0)
    if framework == "xgboost":
        import xgboost

        booster = xgboost.train({"objective": "binary:logistic", "seed": 0, "nthread": 1},
                                xgboost.DMatrix(X, label=y), num_boost_round=8)
    else:
        import lightgbm

        booster = lightgbm.train({"objective": "binary", "verbose": -1, "num_threads": 1, "seed": 0},
                                 lightgbm.Dataset(X, label=y), num_boost_round=8)
    model = boosted_model("classification", framework, native_bytes(framework, booster), classes=["no", "yes"],
                          rounds_used=5, info={"num_workers": 2})
    assert isinstance(model, BoostedClassifier) and model.rounds_used_ == 5 and model.n_features_in_ == 6
    proba = model.predict_proba(X)
    # float64 rows that sum to 1 within scikit-learn's tolerance (XGBoost's own answer is float32)
    assert proba.shape == (400, 2) and proba.dtype == np.float64 and np.abs(proba.sum(axis=1) - 1).max() < 1e-12
    assert set(model.predict(X)) <= {"no", "yes"}
    assert (model.predict(X) == np.where(proba[:, 1] > 0.5, "yes", "no")).mean() > 0.99
    buf = io.BytesIO()
    joblib.dump(model, buf)
    again = joblib.load(io.BytesIO(buf.getvalue()))
    assert np.array_equal(again.predict_proba(X), proba) and again.info_ == {"num_workers": 2}
    name, data = again.native_file()
    assert name in ("model.ubj", "model.txt") and data == model.payload_
    # the state is arrays + JSON-able values with a format version, not a pickled booster
    state = model.__getstate__()
    assert state["format_version"] == 1 and isinstance(state["model"], bytes)
    assert set(state) == {"format_version", "framework", "task", "classes", "rounds_used", "info", "model"}


@pytest.mark.parametrize(("framework", "params", "unknown"), [
    ("xgboost", {"max_dept": 4, "eta": 0.1}, ["max_dept"]),
    ("xgboost", {"max_depth": 4, "eta": 0.1, "subsample": 0.8}, []),
    ("lightgbm", {"num_leavs": 7, "learning_rate": 0.1}, ["num_leavs"]),
    ("lightgbm", {"num_leaves": 7, "learning_rate": 0.1, "min_data_in_leaf": 2}, []),
    # the engine's own quiet settings do not hide the line that names the typo
    ("xgboost", {"max_dept": 4, "verbosity": 0}, ["max_dept"]),
    ("lightgbm", {"num_leavs": 7, "verbosity": -1}, ["num_leavs"]),
    ("lightgbm", {"num_leavs": 7, "verbose": -1}, ["num_leavs"]),
])
def test_an_engine_parameter_the_engine_does_not_know_is_found(framework: str, params: dict[str, Any],
                                                               unknown: list[str]) -> None:
    """Neither engine refuses a misspelled parameter: it trains with its default while the lineage
    records the typo. The driver asks the engine first (one round on 16 rows)."""
    from raymlops.train.boost_engine import unknown_params

    assert unknown_params(framework, params) == unknown


@pytest.mark.parametrize(("framework", "params", "message"), [
    ("xgboost", {"max_depth": 3, "eta": -1},
     "train.params.eta: xgboost refuses -1: value -1 for Parameter learning_rate should be greater equal to 0"),
    ("xgboost", {"max_depth": "deep"}, "train.params.max_depth: xgboost refuses 'deep': Invalid Parameter format"),
    ("lightgbm", {"num_leaves": 1}, "train.params.num_leaves: lightgbm refuses 1: Check failed: (num_leaves) > (1)"),
    ("xgboost", {"max_dpeth": 3}, "train.params.max_dpeth: not a parameter of xgboost"),
])
def test_a_value_the_engine_refuses_is_a_config_error_naming_the_key(framework: str, params: dict[str, Any],
                                                                   message: str) -> None:
    """eta: -1 failed every Ray Train worker, each retried up to max_failures: two minutes, then
    exit 1 naming XGBoost's alias (learning_rate) and train.candidates, a key distributed mode
    refuses. The driver's one round names the key, at once (exit 2)."""
    from raymlops.exceptions import ConfigError
    from raymlops.train.boost_engine import check_params

    with pytest.raises(ConfigError) as info:
        check_params(framework, params)
    assert str(info.value).startswith(message) and info.value.exit_code == 2, str(info.value)
    check_params(framework, {"max_depth": 3, "eta": 0.1} if framework == "xgboost" else {"num_leaves": 7})


def test_a_lightgbm_model_file_keeps_no_worker_addresses() -> None:
    """Ray Train gives LightGBM the worker group's network (machines, ports); the model file lists
    every parameter, so each training's bytes differed and recorded the workers' addresses."""
    import lightgbm
    from sklearn.datasets import make_classification

    from raymlops.train.boost_model import boosted_model

    X, y = make_classification(200, 4, random_state=0)
    booster = lightgbm.train({"objective": "binary", "verbose": -1, "num_threads": 1, "seed": 0},
                             lightgbm.Dataset(X, label=y), num_boost_round=4)
    text = booster.model_to_string()
    assert "\nparameters:\n" in text
    with_network = text.replace("\nparameters:\n", "\nparameters:\n[machines: 10.0.0.1:39955,10.0.0.2:39305]\n"
                                "[local_listen_port: 39955]\n[num_machines: 2]\n", 1)
    model = boosted_model("classification", "lightgbm", with_network.encode(), classes=[0, 1], rounds_used=4)
    assert b"10.0.0.1" not in model.payload_ and b"local_listen_port" not in model.payload_
    assert model.payload_ == boosted_model("classification", "lightgbm", text.encode(), classes=[0, 1],
                                           rounds_used=4).payload_
    np.testing.assert_array_equal(model.predict_proba(X)[:, 1], booster.predict(X))


def test_an_engine_that_stopped_short_without_early_stopping_is_said() -> None:
    from raymlops.train.boost_model import short_training

    info = {"framework": "lightgbm", "rounds": 1, "num_boost_round": 20, "early_stopping_rounds": None,
            "num_workers": 2}
    said = short_training(info, 22)
    assert said is not None and said.startswith("lightgbm stopped after 1 of 20 rounds: no split met")
    assert "each worker holds about 11 training rows" in said
    assert short_training(info | {"rounds": 20}, 22) is None
    assert short_training(info | {"early_stopping_rounds": 5}, 22) is None  # stopping early is its job
