"""The MLflow side of ``tracking:``: a parent run per pipeline run, a nested run per Tune trial
(Ray Tune's ``MLflowLoggerCallback``), and the champion in MLflow's model registry.

Tracking never costs a training result: an unreachable server or a failing MLflow call is logged
as a warning and kept in :attr:`MlflowTracker.record` (the pipeline puts it in the run record);
the run goes on. MLflow's own HTTP retries are bounded while the tracker talks to the server.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from raymlops.tracking.settings import TrackingConfig

__all__ = ["MlflowTracker"]

log = logging.getLogger("raymlops.tracking")
_MAX_PARAM = 6000  # MLflow's limit on a param value (characters)


def _flat(prefix: str, value: Any, out: dict[str, str]) -> dict[str, str]:
    if isinstance(value, dict):
        for k, v in value.items():
            _flat(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = str(value)[:_MAX_PARAM]
    return out


@contextlib.contextmanager
def _bounded(timeout_s: float) -> Iterator[None]:
    """MLflow's HTTP requests give up after ``timeout_s`` with one retry (unless the user set these)."""
    wanted = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
              "MLFLOW_HTTP_REQUEST_TIMEOUT": str(max(1, int(timeout_s)))}
    saved = {k: os.environ.get(k) for k in wanted}
    os.environ.update({k: v for k, v in wanted.items() if saved[k] is None})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)


_LOGGER: type | None = None


def _safe_logger_class() -> type:
    """Ray Tune's ``MLflowLoggerCallback``, with each MLflow failure kept in ``errors`` (then it stops
    logging) instead of stopping Tune. A module-level class: Tune pickles its callbacks."""
    global _LOGGER
    if _LOGGER is None:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        class SafeMLflowLoggerCallback(MLflowLoggerCallback):
            timeout_s = 10.0

            def _safe(self, what: str, fn: Callable[..., None], *args: Any, **kwargs: Any) -> None:
                errors = self.__dict__.setdefault("errors", [])
                if errors:
                    return
                try:
                    with _bounded(self.timeout_s):
                        fn(*args, **kwargs)
                except Exception as exc:  # noqa: BLE001  # tracking must not stop Tune
                    errors.append(f"trial logging ({what}): {type(exc).__name__}: {exc}"[:500])

            def setup(self, *args: Any, **kwargs: Any) -> None:
                self._safe("setup", super().setup, *args, **kwargs)

            def log_trial_start(self, trial: Any) -> None:
                self._safe("trial start", super().log_trial_start, trial)

            def log_trial_result(self, iteration: int, trial: Any, result: dict[str, Any]) -> None:
                self._safe("trial result", super().log_trial_result, iteration, trial, result)

            def log_trial_end(self, trial: Any, failed: bool = False) -> None:
                self._safe("trial end", super().log_trial_end, trial, failed)

        SafeMLflowLoggerCallback.__module__ = __name__
        SafeMLflowLoggerCallback.__qualname__ = "SafeMLflowLoggerCallback"
        globals()["SafeMLflowLoggerCallback"] = SafeMLflowLoggerCallback
        _LOGGER = SafeMLflowLoggerCallback
    return _LOGGER


class MlflowTracker:
    """One pipeline run's tracking. ``warn`` gets one line per problem (the pipeline's log)."""

    def __init__(self, cfg: TrackingConfig, pipeline: str, run_id: str,
                 warn: Callable[[str], None] | None = None) -> None:
        self.cfg = cfg
        self.pipeline = pipeline
        self.run_id = run_id
        self.experiment = cfg.experiment or pipeline
        self.warn = warn or (lambda line: log.warning("%s", line))
        self.parent_run_id: str | None = None
        self.record: dict[str, Any] = {"mlflow_uri": cfg.mlflow_uri, "experiment": self.experiment,
                                       "status": "not started", "parent_run_id": None, "errors": []}
        self._client: Any = None
        self._callbacks: list[Any] = []

    # -- bookkeeping ------------------------------------------------------------------------------
    def bounded(self) -> contextlib.AbstractContextManager[None]:
        return _bounded(self.cfg.request_timeout_s)

    def _problem(self, what: str, exc: BaseException) -> None:
        text = f"{what}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500]
        self.record["errors"].append(text)
        self.warn(f"tracking.mlflow_uri {self.cfg.mlflow_uri}: {text} (training goes on; tracking skipped)")

    @property
    def active(self) -> bool:
        return self.parent_run_id is not None

    # -- the run --------------------------------------------------------------------------------
    def start(self) -> bool:
        """Open the experiment and the parent run; False (warned, recorded) when MLflow is unreachable."""
        try:
            from mlflow import MlflowClient

            with self.bounded():
                client = MlflowClient(tracking_uri=self.cfg.mlflow_uri, registry_uri=self.cfg.mlflow_uri)
                exp = client.get_experiment_by_name(self.experiment)
                exp_id = exp.experiment_id if exp is not None else client.create_experiment(self.experiment)
                run = client.create_run(exp_id, run_name=f"{self.pipeline}-{self.run_id}",
                                        tags={"raymlops.run": self.run_id, "raymlops.pipeline": self.pipeline})
        except Exception as exc:  # noqa: BLE001  # tracking must not cost the training run
            self.record["status"] = "unavailable"
            self._problem("could not start the MLflow run", exc)
            return False
        self._client = client
        self.parent_run_id = run.info.run_id
        self.record.update(status="running", parent_run_id=self.parent_run_id, experiment_id=exp_id)
        return True

    def tune_callbacks(self) -> list[Any]:
        """Ray Tune's MLflow logger, each trial a run nested under the parent (empty when inactive)."""
        if not self.active:
            return []
        callback = _safe_logger_class()(
            tracking_uri=self.cfg.mlflow_uri, registry_uri=self.cfg.mlflow_uri, experiment_name=self.experiment,
            tags={"mlflow.parentRunId": self.parent_run_id, "raymlops.run": self.run_id,
                  "raymlops.pipeline": self.pipeline})
        callback.timeout_s = self.cfg.request_timeout_s
        self._callbacks.append(callback)
        return [callback]

    def finish(self, *, snapshot_id: str, model_version: str, model_status: str, champion: bool,
               metrics: dict[str, float], best: dict[str, Any], config_hash: str,
               artifact: tuple[str, bytes] | None) -> None:
        """Log the chosen model on the parent run; register it when it is champion and
        ``register_model`` is on; end the parent run."""
        if not self.active:
            return
        for callback in self._callbacks:
            for error in getattr(callback, "errors", []):
                self.record["errors"].append(error)
                self.warn(f"tracking.mlflow_uri {self.cfg.mlflow_uri}: {error} (training went on)")
        client, run_id = self._client, self.parent_run_id
        try:
            with self.bounded():
                params = {"snapshot_id": snapshot_id, "raymlops_run": self.run_id, "model_version": model_version,
                          "config_hash": config_hash, **_flat("best", best, {})}
                for k, v in params.items():
                    client.log_param(run_id, k, v)
                for k, value in metrics.items():
                    client.log_metric(run_id, k, float(value))
                for k, v in {"raymlops.snapshot": snapshot_id, "raymlops.version": model_version,
                             "raymlops.status": model_status}.items():
                    client.set_tag(run_id, k, v)
                if self.cfg.register_model and champion and artifact is not None:
                    self._register(model_version, artifact)
                client.set_terminated(run_id, "FINISHED")
            self.record["status"] = "logged"
        except Exception as exc:  # noqa: BLE001
            self.record["status"] = "incomplete"
            self._problem("could not log the chosen model", exc)
            with contextlib.suppress(Exception), self.bounded():
                client.set_terminated(run_id, "FAILED")

    def _register(self, model_version: str, artifact: tuple[str, bytes]) -> None:
        client, run_id = self._client, self.parent_run_id
        name, data = artifact
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_bytes(data)
            client.log_artifact(run_id, str(path), artifact_path="model")
        registered = self.cfg.registered_model_name or self.pipeline
        try:
            client.get_registered_model(registered)
        except Exception:  # noqa: BLE001  # MlflowException RESOURCE_DOES_NOT_EXIST: the first version
            client.create_registered_model(registered, tags={"raymlops.pipeline": self.pipeline})
        source = client.get_run(run_id).info.artifact_uri.rstrip("/") + "/model"
        mv = client.create_model_version(registered, source, run_id=run_id,
                                         tags={"raymlops.version": model_version})
        self.record["registered_model"] = {"name": registered, "version": str(mv.version),
                                           "raymlops_version": model_version}
