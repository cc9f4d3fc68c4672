"""Training epoch by epoch, so a trial can report each epoch and ASHA can stop it (pure: no Ray).

Three ways to train an estimator (the last step of a Pipeline, after its other steps are fitted):

- ``partial_fit``: one ``partial_fit`` pass over the training rows per epoch (SGD*, MLP*,
  Perceptron, PassiveAggressive*, ...);
- ``warm_start``: the estimator grows between epochs: ``warm_start=True`` and ``n_estimators``
  (forests, gradient boosting, bagging) or ``max_iter`` (histogram gradient boosting) raised
  step by step up to its configured value, so the last epoch has the configured size;
- ``once``: a plain ``fit``, reported as a single epoch.

Detection (``incremental: None`` in the candidate): ``partial_fit`` when the estimator has it and an
iteration budget (``max_iter``), so naive Bayes and other one-pass learners are fitted once;
``warm_start`` with ``n_estimators``, or with ``max_iter`` for boosting estimators (whose
``max_iter`` counts boosting rounds, while LogisticRegression's caps an optimiser);
otherwise ``once``. ``incremental: true`` forces the first available of ``partial_fit`` /
``warm_start`` (``max_iter`` counts as the size), ``false`` forces ``once``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from raymlops.exceptions import ConfigError


@dataclass(frozen=True)
class Plan:
    """How one estimator trains: ``mode``, the epochs it runs, and for ``warm_start`` the size
    parameter and its value after each epoch."""

    mode: Literal["partial_fit", "warm_start", "once"]
    epochs: int
    attr: str | None = None
    schedule: tuple[int, ...] = ()


def final_step(model: Any) -> Any:
    """The estimator itself, or a Pipeline's last step."""
    return model.steps[-1][1] if hasattr(model, "steps") else model


def plan_for(model: Any, incremental: bool | None, epochs: int, grow: bool = True) -> Plan:
    """The :class:`Plan` for ``model`` (see the module docstring); ``epochs`` caps the epochs.

    ``grow=False`` (nothing will stop the trial early, e.g. the FIFO scheduler): a detected
    ``warm_start`` learner is fitted once at its full size instead, the same model without the
    cost of the intermediate fits; ``incremental: true`` still grows it epoch by epoch."""
    est = final_step(model)
    params = est.get_params(deep=False)
    has_partial = hasattr(est, "partial_fit")
    size_attr = None
    if "warm_start" in params:
        if "n_estimators" in params:
            size_attr = "n_estimators"
        elif "max_iter" in params and (incremental or "Boosting" in type(est).__name__):
            size_attr = "max_iter"
    if incremental is False:
        return Plan("once", 1)
    if has_partial and (incremental or "max_iter" in params):
        return Plan("partial_fit", epochs)
    sized = size_attr is not None and isinstance(params[size_attr], int) and params[size_attr] >= 1
    if (grow or incremental) and sized:
        assert size_attr is not None
        total = int(params[size_attr])
        n = min(epochs, total)
        schedule = tuple(math.ceil(total * (e + 1) / n) for e in range(n))
        return Plan("warm_start", n, size_attr, schedule)
    if incremental and size_attr is None:
        raise ConfigError(
            f"train.candidates: {type(est).__name__} cannot train incrementally "
            "(no partial_fit, and no warm_start with n_estimators or max_iter); set incremental: false"
        )
    return Plan("once", 1)


def train_epochs(model: Any, plan: Plan, X: np.ndarray, y: np.ndarray, epochs: int | None = None) -> Iterator[int]:
    """Train ``model`` in place, yielding the epoch number (1, 2, ...) after each epoch;
    ``epochs`` stops earlier than the plan."""
    stop = plan.epochs if epochs is None else min(epochs, plan.epochs)
    if plan.mode == "once":
        model.fit(X, y)
        yield 1
        return
    est = final_step(model)
    if plan.mode == "warm_start":
        assert plan.attr is not None
        for e in range(stop):
            est.set_params(warm_start=True, **{plan.attr: plan.schedule[e]})
            model.fit(X, y)
            yield e + 1
        est.set_params(warm_start=False)
        return
    head = model[:-1] if hasattr(model, "steps") and len(model.steps) > 1 else None
    Xt = head.fit_transform(X, y) if head is not None else X
    kwargs: dict[str, Any] = {}
    from sklearn.base import is_classifier

    if is_classifier(est):
        kwargs["classes"] = np.unique(y)
    for e in range(stop):
        try:
            est.partial_fit(Xt, y, **kwargs)
        except ValueError as exc:  # e.g. MLP's early_stopping=True: "partial_fit does not support ..."
            if e or "partial_fit" not in str(exc):
                raise
            raise ValueError(f"{exc} (raymlops trains {type(est).__name__} by partial_fit, one pass an epoch; "
                             "set incremental: false in its candidate for scikit-learn's own fit)") from exc
        yield e + 1


def fit_epochs(model: Any, plan: Plan, X: np.ndarray, y: np.ndarray, epochs: int) -> Any:
    """Train ``model`` for ``epochs`` epochs of ``plan`` (the refit of a chosen trial); returns it."""
    if plan.mode == "warm_start" and plan.attr is not None:
        # the size reached after `epochs` epochs, in one plain fit
        final_step(model).set_params(warm_start=False, **{plan.attr: plan.schedule[min(epochs, plan.epochs) - 1]})
        return model.fit(X, y)
    for _ in train_epochs(model, plan, X, y, epochs):
        pass
    return model
