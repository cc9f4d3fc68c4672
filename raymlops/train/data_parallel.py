"""Data-parallel training of scikit-learn incremental learners over Ray Data shards.

For data larger than one worker: ``num_workers`` Ray actors each hold one shard of a Ray Dataset
(``Dataset.split``) and never see the others' rows. Every epoch each worker runs ``partial_fit``
over its shard in batches of ``batch_size`` rows, starting from the current global parameters; the
driver then averages the workers' linear parameters (``coef_``, ``intercept_`` and, with
``average=True``, SGD's running averages) weighted by shard rows, and broadcasts the mean for the
next epoch (parameter averaging, as in Zinkevich et al. 2010 / Spark MLlib's SGD). With
``scale: true`` the features are standardized with the global mean and variance, merged from
per-shard moments in one pass before training.

Each worker reads its shard through Ray Data once and keeps it as arrays for the later epochs (a
shard is 1/``num_workers`` of the data). Works with linear incremental learners whose state is
those arrays: ``SGDClassifier``, ``SGDRegressor``, ``Perceptron``, ``PassiveAggressive*``. Each
worker's learning-rate counter (``t_``) stays local, so each worker takes steps of the size a
single process would. ``average: true`` (averaged SGD) makes both this and the single-process fit
much less noisy from run to run.

Tolerance (tested in tests/integration/test_train_ray.py on 20,000 synthetic rows, 2 workers,
10 epochs, ``SGDClassifier(loss="log_loss", average=True)`` on standardized features): holdout
accuracy within **0.02** of the same learner trained in one process, both with the same epochs
of ``partial_fit`` over all the training rows and with a plain ``fit``.

Why actors and not Ray Train: Ray Train's DataParallelTrainer (v2) runs without torch, but its
only collectives are ``barrier`` and ``broadcast_from_rank_zero``: averaging needs an all-reduce
or a coordinator, and plain actors driven by this module are that coordinator, with less machinery.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from raymlops.exceptions import ConfigError, RaymlopsError

#: the arrays that make up the state of a linear incremental learner, averaged each epoch
PARAM_ATTRS = ("coef_", "intercept_", "_standard_coef", "_standard_intercept", "_average_coef", "_average_intercept")


# ------------------------------------------------------------------------- pure parts


def average_params(states: Sequence[Mapping[str, np.ndarray]], weights: Sequence[float]) -> dict[str, np.ndarray]:
    """The weighted mean of each parameter array over the workers' ``states``.

    Every state must hold the same keys with the same shapes; weights (e.g. rows per shard) must be
    non-negative with a positive sum."""
    if not states or len(states) != len(weights):
        raise ValueError(f"expected one weight per state, found {len(states)} states and {len(weights)} weights")
    w = np.asarray(weights, dtype=np.float64)
    if (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"expected non-negative weights with a positive sum, found {list(weights)}")
    keys = set(states[0])
    out = {}
    for key in sorted(keys):
        arrays = []
        for i, state in enumerate(states):
            if set(state) != keys:
                raise ValueError(f"worker {i} has parameters {sorted(state)}, worker 0 has {sorted(keys)}")
            arrays.append(np.asarray(state[key], dtype=np.float64))
        if any(a.shape != arrays[0].shape for a in arrays):
            raise ValueError(f"parameter {key!r} has shapes {[a.shape for a in arrays]} across workers")
        out[key] = np.tensordot(w / w.sum(), np.stack(arrays), axes=1)
    return out


def get_params_of(est: Any) -> dict[str, np.ndarray]:
    """The averaged arrays of a fitted linear learner."""
    return {k: np.array(getattr(est, k)) for k in PARAM_ATTRS if isinstance(getattr(est, k, None), np.ndarray)}


def set_params_of(est: Any, params: Mapping[str, np.ndarray]) -> Any:
    for key, value in params.items():
        current = getattr(est, key)
        setattr(est, key, np.asarray(value, dtype=current.dtype).reshape(current.shape).copy())
    return est


def moments(X: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
    """``(rows, column sums, column sums of squares)``: mergeable across shards by adding."""
    X = np.asarray(X, dtype=np.float64)
    return len(X), X.sum(axis=0), (X * X).sum(axis=0)


def scaler_from_moments(parts: Sequence[tuple[int, np.ndarray, np.ndarray]]) -> Any:
    """A fitted ``StandardScaler`` from per-shard :func:`moments` (population variance, as sklearn)."""
    from sklearn.preprocessing import StandardScaler

    n = sum(p[0] for p in parts)
    if n == 0:
        raise ValueError("no rows to standardize")
    total = np.sum([p[1] for p in parts], axis=0)
    squares = np.sum([p[2] for p in parts], axis=0)
    mean = total / n
    var = np.maximum(squares / n - mean * mean, 0.0)
    scaler = StandardScaler()
    scaler.mean_, scaler.var_ = mean, var
    scale = np.sqrt(var)
    scaler.scale_ = np.where(scale < 10 * np.finfo(np.float64).eps, 1.0, scale)
    scaler.n_samples_seen_ = n
    scaler.n_features_in_ = len(mean)
    return scaler


# ------------------------------------------------------------------------- the Ray part


class _ShardWorker:
    """One worker: its shard, its copy of the learner, one ``partial_fit`` pass per epoch."""

    def __init__(self, shard: Any, features: list[str], label: str, estimator: Any, batch_size: int) -> None:
        self.shard = shard
        self.features = features
        self.label = label
        self.est = estimator
        self.batch_size = batch_size
        self.scaler: Any = None
        self.rows = 0
        self.cache: list[tuple[np.ndarray, np.ndarray]] | None = None

    def _batches(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The shard as (X, y) batches, read from Ray Data on first use and kept for later epochs."""
        if self.cache is None:
            self.cache = []
            for batch in self.shard.iter_batches(batch_size=self.batch_size, batch_format="numpy"):
                X = np.column_stack([np.asarray(batch[c], dtype=np.float64) for c in self.features])
                self.cache.append((X, np.asarray(batch[self.label])))
        return self.cache

    def moments(self) -> tuple[int, np.ndarray, np.ndarray]:
        parts = [moments(X) for X, _ in self._batches()]
        if not parts:
            return 0, np.zeros(len(self.features)), np.zeros(len(self.features))
        return sum(p[0] for p in parts), np.sum([p[1] for p in parts], axis=0), np.sum([p[2] for p in parts], axis=0)

    def set_scaler(self, scaler: Any) -> None:
        self.scaler = scaler

    def epoch(self, params: dict[str, np.ndarray] | None, classes: np.ndarray | None) -> tuple[dict[str, Any], int]:
        if params is not None:
            set_params_of(self.est, params)
        rows = 0
        for X, y in self._batches():
            Xs = self.scaler.transform(X) if self.scaler is not None else X
            if classes is not None:
                self.est.partial_fit(Xs, y, classes=classes)
            else:
                self.est.partial_fit(Xs, y)
            rows += len(y)
        self.rows = rows
        return get_params_of(self.est), rows

    def estimator(self, params: dict[str, np.ndarray] | None) -> Any:
        if params is not None:
            set_params_of(self.est, params)
        return self.est


@dataclass(frozen=True)
class DataParallelResult:
    """The trained model (a fitted estimator, or a Pipeline of the scaler and it) and its epochs."""

    model: Any
    #: per epoch: {"epoch", "seconds", and the validation metrics when validation data was given}
    history: list[dict[str, float]] = field(default_factory=list)
    rows_per_worker: tuple[int, ...] = ()
    seconds: float = 0.0


def train_data_parallel(
    dataset: Any,
    features: list[str],
    label: str,
    estimator: Any,
    *,
    num_workers: int,
    epochs: int,
    batch_size: int = 4096,
    scale: bool = False,
    classes: np.ndarray | None = None,
    cpus_per_worker: float = 1.0,
    seed: int = 0,
    on_epoch: Callable[[int, Any], dict[str, float]] | None = None,
) -> DataParallelResult:
    """Train ``estimator`` (unfitted, with ``partial_fit``) data-parallel over ``dataset``.

    ``dataset``: a Ray Dataset with the ``features`` columns and ``label``. ``classes``: every
    class label (classifiers; read from the dataset when not given). ``on_epoch(epoch, model)``:
    called on the driver with the averaged model after every epoch, its returned metrics are kept
    in the history. Worker ``i`` gets ``estimator`` with ``random_state = seed + i`` when it has one."""
    import ray
    from sklearn.base import clone, is_classifier
    from sklearn.pipeline import make_pipeline

    if not hasattr(estimator, "partial_fit"):
        raise ConfigError(f"train.candidates[0].estimator: {type(estimator).__name__} has no partial_fit, which "
                          "strategy 'data_parallel' needs (e.g. sklearn.linear_model.SGDClassifier)")
    cpus = float(ray.cluster_resources().get("CPU", 0.0))
    if num_workers * cpus_per_worker > cpus:
        raise RaymlopsError(
            f"train.num_workers {num_workers} x {cpus_per_worker:g} CPU per worker needs "
            f"{num_workers * cpus_per_worker:g} CPUs, but the Ray cluster has {cpus:g}: they could never all start"
        )
    start = time.perf_counter()
    if is_classifier(estimator) and classes is None:
        classes = np.asarray(sorted(dataset.unique(label)))
    shards = dataset.split(num_workers, equal=True)
    Worker: Any = ray.remote(num_cpus=cpus_per_worker)(_ShardWorker)
    workers: list[Any] = []
    for i, shard in enumerate(shards):
        est = clone(estimator)
        if "random_state" in est.get_params():
            est.set_params(random_state=seed + i)
        workers.append(Worker.remote(shard, features, label, est, batch_size))
    try:
        scaler = None
        if scale:
            scaler = scaler_from_moments(ray.get([w.moments.remote() for w in workers]))
            ray.get([w.set_scaler.remote(scaler) for w in workers])
        params: dict[str, np.ndarray] | None = None
        history: list[dict[str, float]] = []
        template: Any = None
        rows: list[int] = []
        for epoch in range(1, epochs + 1):
            t0 = time.perf_counter()
            out = ray.get([w.epoch.remote(params, classes) for w in workers])
            rows = [r for _, r in out]
            params = average_params([p for p, _ in out], rows)
            entry = {"epoch": float(epoch), "seconds": time.perf_counter() - t0}
            if on_epoch is not None:
                if template is None:
                    template = ray.get(workers[0].estimator.remote(params))
                set_params_of(template, params)
                entry.update(on_epoch(epoch, make_pipeline(scaler, template) if scaler is not None else template))
            history.append(entry)
        final = ray.get(workers[0].estimator.remote(params))
    finally:
        for w in workers:
            ray.kill(w)
    model = make_pipeline(scaler, final) if scaler is not None else final
    return DataParallelResult(model, history, tuple(rows), time.perf_counter() - start)


def arrays_to_dataset(X: np.ndarray, y: np.ndarray) -> tuple[Any, list[str], str]:
    """A Ray Dataset of ``X`` (columns ``x0``, ``x1``, …) and ``y`` (column ``label``)."""
    import pyarrow as pa
    import ray

    features = [f"x{j}" for j in range(X.shape[1])]
    table = pa.table({**{f: np.ascontiguousarray(X[:, j]) for j, f in enumerate(features)}, "label": y})
    return ray.data.from_arrow(table), features, "label"
