"""Search spaces from config and estimators from import paths (pure: no Ray).

A candidate's ``params`` map each parameter to a fixed value or a search space (see
:class:`raymlops.config.Candidate`). :func:`expand` turns the candidates into the concrete list of
trials Ray Tune runs: the cartesian product of every grid (a list, ``{grid: [...]}`` or
``{choice: [...]}`` — a choice is searched exhaustively, like a grid), and for a candidate with
sampled parameters (``uniform``, ``loguniform``, ``randint``) ``num_samples`` draws per grid
point from a generator seeded by ``(seed, candidate index)``. The same candidates, ``num_samples``
and seed give the same trials in the same order, and adding a candidate leaves the others' draws
unchanged.
"""

from __future__ import annotations

import difflib
import importlib
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from raymlops.config import Candidate
from raymlops.exceptions import ConfigError

_SAMPLED = ("uniform", "loguniform", "randint")


def import_estimator(path: str) -> Callable[..., Any]:
    """The estimator class (or a function returning an estimator or Pipeline) at ``path``."""
    module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        target = getattr(module, attr)
    except (ImportError, AttributeError):
        raise ConfigError(f"train.candidates: estimator {path!r} cannot be imported") from None
    if isinstance(target, type):
        if not hasattr(target, "fit"):
            raise ConfigError(f"train.candidates: {path!r} is not an estimator (it has no fit method)")
    elif not callable(target):
        raise ConfigError(f"train.candidates: {path!r} is neither an estimator class nor a function returning one")
    return target


def instantiate(path: str, params: dict[str, Any]) -> Any:
    """An estimator from a class (``cls(**params)``) or a factory (``factory().set_params(**params)``,
    so parameters of a Pipeline's steps take sklearn's ``step__param`` names)."""
    target = import_estimator(path)
    if isinstance(target, type):
        return target(**params)
    est = target()
    if not hasattr(est, "fit") or not hasattr(est, "set_params"):
        raise ConfigError(f"train.candidates: {path!r} returned {type(est).__name__}, not an estimator")
    return est.set_params(**params) if params else est


def _grid_values(value: Any) -> list[Any] | None:
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and len(value) == 1:
        kind, arg = next(iter(value.items()))
        if kind in ("grid", "choice"):
            return list(arg)
    return None


def _sampled(value: Any) -> tuple[str, Any] | None:
    if isinstance(value, dict) and len(value) == 1:
        kind, arg = next(iter(value.items()))
        if kind in _SAMPLED:
            return kind, arg
    return None


def _fixed(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) == "fixed":
        return value["fixed"]
    return value


def sample(kind: str, arg: Sequence[float], rng: np.random.Generator) -> float | int:
    """One draw of ``uniform`` / ``loguniform`` / ``randint`` ``[low, high]`` (high excluded for randint)."""
    low, high = arg
    if kind == "uniform":
        return float(rng.uniform(low, high))
    if kind == "loguniform":
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    if kind == "randint":
        return int(rng.integers(int(low), int(high)))
    raise ValueError(f"unknown distribution {kind!r}")


def expand(candidates: Sequence[Candidate], num_samples: int = 1, seed: int = 0) -> list[dict[str, Any]]:
    """Every trial as ``{"candidate": i, "estimator": path, "scale": bool, "params": {...}}`` (plus
    ``"incremental"`` when the candidate sets it), in a deterministic order."""
    trials = []
    for i, cand in enumerate(candidates):
        keys = sorted(cand.params)
        grid_keys = [k for k in keys if _grid_values(cand.params[k]) is not None]
        sampled = {k: s for k in keys if (s := _sampled(cand.params[k])) is not None}
        fixed = {k: _fixed(cand.params[k]) for k in keys if k not in sampled and k not in grid_keys}
        rng = np.random.default_rng([seed, i]) if seed >= 0 else np.random.default_rng([-seed, i, 1])
        grids = [_grid_values(cand.params[k]) or [] for k in grid_keys]
        draws = num_samples if sampled else 1
        for _ in range(draws):
            for values in itertools.product(*grids):
                params = dict(fixed)
                params.update(zip(grid_keys, values, strict=True))
                params.update({k: sample(kind, arg, rng) for k, (kind, arg) in sampled.items()})
                params = {k: params[k] for k in keys}
                try:
                    instantiate(cand.estimator, params)
                except (TypeError, ValueError) as exc:
                    if isinstance(exc, ConfigError):
                        raise
                    raise ConfigError(
                        f"train.candidates[{i}].params: {cand.estimator} rejects {params}: {exc}{_near(cand, keys)}"
                    ) from None
                trial: dict[str, Any] = {"candidate": i, "estimator": cand.estimator, "scale": cand.scale,
                                         "params": params}
                if cand.incremental is not None:
                    trial["incremental"] = cand.incremental
                trials.append(trial)
    return trials


def _near(cand: Candidate, keys: Sequence[str]) -> str:
    """``"; did you mean 'C' for 'Cc'"`` for parameter names the estimator does not have, if close."""
    try:
        target = import_estimator(cand.estimator)
        have = list((target() if not isinstance(target, type) else target()).get_params(deep=True))
    except Exception:  # noqa: BLE001 - only a hint: an estimator that needs arguments has none
        return ""
    near = [f"{m[0]!r} (not {k!r})" for k in keys if k not in have and (m := difflib.get_close_matches(k, have, 1))]
    return f"; did you mean {', '.join(near)}" if near else ""


def _seed_everything(est: Any, params: dict[str, Any], seed: int) -> None:
    """Set every unset ``random_state`` (also a Pipeline step's ``step__random_state``) to ``seed``."""
    try:
        current = est.get_params(deep=True)
    except Exception:  # an estimator whose get_params cannot recurse
        current = est.get_params(deep=False)
    updates = {
        k: seed
        for k, v in current.items()
        if (k == "random_state" or k.endswith("__random_state")) and k not in params and v is None
    }
    if updates:
        est.set_params(**updates)


class EncodedLabels:
    """A classifier fitted on label indices ``0..k-1`` that answers with the labels themselves:
    XGBoost's scikit-learn classifier takes no other labels (``'yes'``/``'no'``, or 1 and 2, stop
    it). Built by :func:`build_estimator` for ``xgboost`` classifiers when the trial says
    ``encode_labels`` (:func:`raymlops.train.fit` sets it when the labels are not ``0..k-1``)."""

    _estimator_type = "classifier"

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"estimator": self.estimator}
        if deep:
            out.update({f"estimator__{k}": v for k, v in self.estimator.get_params(deep=True).items()})
        return out

    def set_params(self, **params: Any) -> EncodedLabels:
        inner = {k.removeprefix("estimator__"): v for k, v in params.items() if k.startswith("estimator__")}
        if "estimator" in params:
            self.estimator = params["estimator"]
        if inner:
            self.estimator.set_params(**inner)
        return self

    def __sklearn_tags__(self) -> Any:
        from sklearn.utils import get_tags

        return get_tags(self.estimator)

    def fit(self, X: Any, y: Any, **kwargs: Any) -> EncodedLabels:
        self.classes_, codes = np.unique(np.asarray(y), return_inverse=True)
        self.estimator.fit(X, codes, **kwargs)
        return self

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.classes_)[np.asarray(self.estimator.predict(X)).astype(np.int64)]

    def predict_proba(self, X: Any) -> np.ndarray:
        return np.asarray(self.estimator.predict_proba(X))


def build_estimator(trial: dict[str, Any], seed: int) -> Any:
    """A fresh, unfitted estimator for ``trial``, seeded where the estimator takes a seed.

    ``trial["categorical"]`` (the positions of the string features, as their
    :func:`~raymlops.data.schema.category_code`): those columns are one-hot encoded first (a
    category the model never saw, or a missing one it never saw, sets no column), and ``scale``
    then standardises only the other columns."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    params = dict(trial["params"])
    est = instantiate(trial["estimator"], params)
    _seed_everything(est, params, seed)
    if trial.get("encode_labels") and type(est).__module__.startswith("xgboost") and hasattr(est, "predict_proba"):
        est = EncodedLabels(est)
    categorical = [int(j) for j in trial.get("categorical") or ()]
    if categorical:
        from sklearn.compose import ColumnTransformer
        from sklearn.preprocessing import OneHotEncoder

        encode = ColumnTransformer(
            [("categories", OneHotEncoder(handle_unknown="ignore", sparse_output=False), categorical)],
            remainder=StandardScaler() if trial.get("scale") else "passthrough")
        return make_pipeline(encode, est)
    return make_pipeline(StandardScaler(), est) if trial.get("scale") else est


def check_trials(trials: Sequence[dict[str, Any]], task: str, metric: str) -> None:
    """Refuse, before any trial runs, an estimator of the wrong kind for ``task`` or one that cannot
    produce ``metric`` (roc_auc and log_loss need ``predict_proba``)."""
    from sklearn.base import is_classifier, is_regressor

    for trial in trials:
        est = build_estimator(trial, seed=0)
        where = f"train.candidates[{trial['candidate']}]"
        name = type(est[-1] if hasattr(est, "steps") else est).__name__
        if task == "classification" and is_regressor(est):
            raise ConfigError(f"{where}.estimator: {name} is a regressor, but train.task is classification "
                              "(set train.task: regression, or train.metric to r2, mae or rmse)")
        if task == "regression" and is_classifier(est):
            raise ConfigError(f"{where}.estimator: {name} is a classifier, but train.task is regression "
                              "(set train.task: classification, or a regressor)")
        if metric in ("roc_auc", "log_loss") and not hasattr(est, "predict_proba"):
            raise ConfigError(
                f"{where}: {name} with {trial['params']} has no predict_proba, which metric {metric!r} needs"
                " (e.g. loss: log_loss for SGDClassifier), or choose another train.metric"
            )
