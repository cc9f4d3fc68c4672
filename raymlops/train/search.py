"""Search spaces from config and estimators from import paths (pure: no Ray)."""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Sequence
from typing import Any

from raymlops.config import Candidate
from raymlops.exceptions import ConfigError


def import_estimator(path: str) -> type:
    module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        cls = getattr(module, attr)
    except (ImportError, AttributeError):
        raise ConfigError(f"train.candidates: estimator {path!r} cannot be imported") from None
    if not hasattr(cls, "fit"):
        raise ConfigError(f"train.candidates: {path!r} is not an estimator (it has no fit method)")
    return cls


def expand(candidates: Sequence[Candidate]) -> list[dict[str, Any]]:
    """Every trial as ``{"candidate": i, "estimator": path, "scale": bool, "params": {...}}``:
    the cartesian product of each candidate's list-valued parameters."""
    trials = []
    for i, cand in enumerate(candidates):
        cls = import_estimator(cand.estimator)
        keys = sorted(cand.params)
        grids = [cand.params[k] if isinstance(cand.params[k], list) else [cand.params[k]] for k in keys]
        for values in itertools.product(*grids):
            params = dict(zip(keys, values, strict=True))
            try:
                cls(**params)
            except TypeError as exc:
                raise ConfigError(f"train.candidates[{i}].params: {cand.estimator} rejects {params}: {exc}") from None
            trials.append({"candidate": i, "estimator": cand.estimator, "scale": cand.scale, "params": params})
    return trials


def build_estimator(trial: dict[str, Any], seed: int) -> Any:
    """A fresh, unfitted estimator for ``trial``, seeded where the estimator takes a seed."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    cls = import_estimator(trial["estimator"])
    params = dict(trial["params"])
    est = cls(**params)
    if "random_state" in est.get_params() and "random_state" not in params:
        est.set_params(random_state=seed)
    return make_pipeline(StandardScaler(), est) if trial.get("scale") else est
