"""A trained XGBoost or LightGBM booster as a scikit-learn-like model (pure: no Ray).

``strategy: distributed`` trains a native booster with Ray Train; the rest of raymlops (holdout
evaluation, the gate, the registry, Serve, the monitor, ``reproduce``) talks to models through
``predict`` / ``predict_proba`` / ``classes_`` over numpy arrays. :class:`BoostedClassifier` and
:class:`BoostedRegressor` are that seam.

What is stored is the engine's own model file (XGBoost UBJSON, LightGBM text), with a small JSON
header and a format version, never the booster's Python object graph: ``__getstate__`` returns
``{"format_version", "framework", "task", "classes", "rounds_used", "info", "model"}`` (``model``:
the native bytes), so the registry's joblib artifact holds the native file, and
:meth:`BoostedModel.native_file` gives the file itself, which the registry stores next to it with
its sha256 (any XGBoost / LightGBM can load that file without raymlops).

Predictions use the first ``rounds_used`` rounds: the best round on the validation split when
early stopping ran, else every round.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from raymlops.exceptions import ValidationError

FORMAT_VERSION = 1
#: native file name per engine
NATIVE_FILES = {"xgboost": "model.ubj", "lightgbm": "model.txt"}


def load_booster(framework: str, payload: bytes) -> Any:
    """The engine's booster from its native bytes (UBJSON or JSON for XGBoost, text for LightGBM)."""
    if framework == "xgboost":
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(bytearray(payload))
        return booster
    if framework == "lightgbm":
        import lightgbm

        return lightgbm.Booster(model_str=payload.decode("utf-8"))
    raise ValidationError(f"unknown boosting framework {framework!r}: expected xgboost or lightgbm")


#: LightGBM parameters of the worker group's network (Ray Train sets them): the model file lists every
#: parameter, and these would make each training's file differ (and record the workers' addresses)
NETWORK_PARAMS = ("machines", "local_listen_port", "num_machines", "machine_list_filename", "time_out")


def portable(framework: str, payload: bytes) -> bytes:
    """A native model file without the network's parameters (:data:`NETWORK_PARAMS`, LightGBM's
    ``parameters:`` lines), so the same training gives the same bytes; XGBoost's as it is."""
    if framework != "lightgbm":
        return payload
    lines = payload.decode("utf-8").split("\n")
    return "\n".join(line for line in lines if not any(line.startswith(f"[{p}: ") for p in NETWORK_PARAMS)
                     ).encode("utf-8")


def short_training(info: dict[str, Any], train_rows: int) -> str | None:
    """What to say when an engine stopped before ``num_boost_round`` without early stopping (its
    training ``info``): no split met the engine's requirements, as with LightGBM's default
    ``min_data_in_leaf`` (20) on small per-worker shards; the model may answer a constant."""
    if info.get("early_stopping_rounds") or int(info["rounds"]) >= int(info["num_boost_round"]):
        return None
    per_worker = train_rows // max(int(info.get("num_workers") or 1), 1)
    return (f"{info['framework']} stopped after {info['rounds']} of {info['num_boost_round']} rounds: no split met "
            f"its requirements (each worker holds about {per_worker} training rows; LightGBM's min_data_in_leaf is "
            "20 unless train.params says less), so the model may answer a constant")


def native_bytes(framework: str, booster: Any) -> bytes:
    """The booster's native file: XGBoost UBJSON, LightGBM text (:func:`portable`)."""
    if framework == "xgboost":
        return bytes(booster.save_raw(raw_format="ubj"))
    return portable(framework, str(booster.model_to_string()).encode("utf-8"))


def booster_rounds(framework: str, booster: Any) -> int:
    return int(booster.num_boosted_rounds() if framework == "xgboost" else booster.current_iteration())


class BoostedModel:
    """A fitted booster; build one with :meth:`from_booster` (or :func:`boosted_model`)."""

    framework: str
    task: str

    def __init__(self, framework: str, payload: bytes, *, classes: list[Any] | None = None, rounds_used: int = 0,
                 info: dict[str, Any] | None = None) -> None:
        self._set(framework, payload, classes, rounds_used, info or {})

    def _set(self, framework: str, payload: bytes, classes: list[Any] | None, rounds_used: int,
             info: dict[str, Any]) -> None:
        self.framework = framework
        self.payload_ = portable(framework, bytes(payload))
        self.classes_ = None if classes is None else np.asarray(classes)
        self.booster_ = load_booster(framework, self.payload_)
        total = booster_rounds(framework, self.booster_)
        self.rounds_used_ = int(rounds_used) if 0 < rounds_used <= total else total
        self.info_ = dict(info)
        self.n_features_in_ = int(self.booster_.num_features() if framework == "xgboost"
                                  else self.booster_.num_feature())

    # -- serialisation: the native file and a JSON header, with a format version ----------------
    def __getstate__(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION, "framework": self.framework, "task": self.task,
            "classes": None if self.classes_ is None else self.classes_.tolist(),
            "rounds_used": self.rounds_used_, "info": self.info_, "model": self.payload_,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        version = state.get("format_version")
        if version != FORMAT_VERSION:
            raise ValidationError(f"boosted model format {version!r}: this raymlops reads format {FORMAT_VERSION}")
        self._set(state["framework"], state["model"], state["classes"], state["rounds_used"], state["info"])

    def native_file(self) -> tuple[str, bytes]:
        """``(file name, bytes)`` of the engine's own model file."""
        return NATIVE_FILES[self.framework], self.payload_

    # -- prediction ------------------------------------------------------------------------------
    def _raw(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValidationError(f"expected rows of {self.n_features_in_} features, found shape {X.shape}")
        if self.framework == "xgboost":
            return np.asarray(self.booster_.inplace_predict(X, iteration_range=(0, self.rounds_used_)))
        return np.asarray(self.booster_.predict(X, num_iteration=self.rounds_used_))

    def predict(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(framework={self.framework!r}, rounds_used={self.rounds_used_}, "
                f"features={self.n_features_in_})")


class BoostedClassifier(BoostedModel):
    task = "classification"

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        # in float64, rows summing to 1 (XGBoost answers float32: its rows were 3e-8 off, and
        # scikit-learn's metrics warned that the probabilities do not sum to one)
        raw = self._raw(X).astype(np.float64)
        if raw.ndim == 1:  # binary: the engine gives P(classes_[1])
            return np.column_stack([1.0 - raw, raw])
        return raw / raw.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        assert self.classes_ is not None
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class BoostedRegressor(BoostedModel):
    task = "regression"

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self._raw(X).astype(np.float64)


def boosted_model(task: str, framework: str, payload: bytes, *, classes: list[Any] | None = None,
                  rounds_used: int = 0, info: dict[str, Any] | None = None) -> BoostedModel:
    """A :class:`BoostedClassifier` or :class:`BoostedRegressor` of the native ``payload``."""
    if task == "classification":
        if not classes or len(classes) < 2:
            raise ValidationError(f"a classifier needs at least two classes, found {classes}")
        return BoostedClassifier(framework, payload, classes=classes, rounds_used=rounds_used, info=info)
    return BoostedRegressor(framework, payload, rounds_used=rounds_used, info=info)
