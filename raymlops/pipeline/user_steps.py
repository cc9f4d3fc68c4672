"""The user's own steps (``steps:`` in the config): a Python callable run after a built-in step.

::

    def no_leakage(view: StepInput, max_corr: float = 0.95) -> dict | None:
        X, y, _, _ = view.arrays()
        ...
        raise ValueError("...")     # fails the run, explained with this traceback
        return {"max_corr": 0.42}   # JSON values: the step's outputs in the run record

The callable gets a read-only :class:`StepInput` and the entry's ``with`` arguments. Its step is
timed, logged and recorded like a built-in one (``raymlops runs show``), its failure explained
with the user's exception and the line that raised it, each run audited (``step.ran`` /
``step.failed``), and with ``cache: true`` its outputs are reused while the function's module,
``call``, ``with``, the step before it (its cache key, else its outputs) and what the view
holds (snapshot, features, model version) are unchanged.
A user step runs when the step it follows ran or came from the cache, and is skipped with it.
"""

from __future__ import annotations

import inspect
import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from raymlops import audit
from raymlops.config import PipelineConfig, UserStepConfig
from raymlops.data.transforms import import_function, module_fingerprint
from raymlops.exceptions import ConfigError
from raymlops.pipeline.cache import fingerprint
from raymlops.pipeline.context import RunContext, SnapshotRows
from raymlops.pipeline.failures import Failure
from raymlops.pipeline.step import Outputs, Step
from raymlops.pipeline.steplog import capture_prints
from raymlops.store.home import Store

__all__ = ["StepInput", "UserStep", "import_call", "user_steps"]


@dataclass(frozen=True)
class StepInput:
    """What a user step sees: the run, the data and the model so far (read-only).

    ``outputs``: by step name, the outputs recorded by the steps before it (a user step's:
    the dict it returned). :meth:`table` and :meth:`arrays`: the rows so far (from ingest on:
    the snapshot once there is one, else the ingested / validated rows), read once per run
    and shared with the built-in steps; the arrays are read-only."""

    name: str
    after: str
    run_id: str
    config: PipelineConfig
    store: Store
    snapshot_id: str | None = None
    features: tuple[str, ...] | None = None
    model_version: str | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)
    outputs: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    _ctx: RunContext | None = field(default=None, repr=False, compare=False)
    _rows_so_far: SnapshotRows | None = field(default=None, repr=False, compare=False)

    def table(self) -> Any:
        """The snapshot's rows as a pyarrow Table (ValueError before the snapshot step)."""
        return self._rows().table

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``(X_train, y_train, X_holdout, y_holdout)`` of the features (after the schema step)."""
        if self.features is None:
            raise ValueError(f"step {self.name!r}: no features yet (a step after 'schema' has them)")
        out = []
        for a in self._rows().split(list(self.features)):
            view = a.view()
            view.flags.writeable = False
            out.append(view)
        return out[0], out[1], out[2], out[3]

    def log(self, line: str) -> None:
        """A line in this step's log (``raymlops runs logs RUN --step NAME``) and on the terminal."""
        if self._ctx is not None:
            self._ctx.say(f"{self.name}: {line}")

    def _rows(self) -> SnapshotRows:
        if self._rows_so_far is None:
            raise ValueError(f"step {self.name!r}: no rows yet (a step after 'ingest' has them)")
        return self._rows_so_far


def import_call(key: str, spec: str) -> Callable[..., Any]:
    """The function ``module:function`` names; ConfigError naming ``key`` when it is not there."""
    return import_function(key, spec, "expected 'module:function' importable here (PYTHONPATH)")


def check_arguments(key: str, call: str, fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> None:
    """ConfigError naming ``<key>.with`` when ``fn`` cannot take the view and ``kwargs`` (an unknown
    or missing keyword): said before the first step, not when the step's turn comes after training."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin or a callable without a signature: found when it runs
        return
    try:
        signature.bind(None, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"{key}.with: {call} cannot be called with the step's view and "
                          f"{dict(kwargs) or 'no arguments'}: {exc}") from None


class UserStep(Step[StepInput, dict[str, Any]]):
    """``steps[index]`` of the config as a step (see the module docstring)."""

    def __init__(self, spec: UserStepConfig, index: int) -> None:
        self.spec, self.index = spec, index
        self.name = spec.name
        self.requires = (spec.after,)

    @property
    def key(self) -> str:
        return f"steps[{self.index}]"

    def take(self, ctx: RunContext, outputs: Mapping[str, Any]) -> StepInput:
        snap = outputs.get("snapshot")
        schema = outputs.get("schema")
        model = outputs.get("register")
        records = outputs.records if isinstance(outputs, Outputs) else {}
        return StepInput(
            name=self.name, after=self.spec.after, run_id=ctx.run_id, config=ctx.config, store=ctx.store,
            snapshot_id=snap.snapshot.id if snap is not None else None,
            features=tuple(schema.features) if schema is not None else None,
            model_version=model.version.id if model is not None else None,
            metrics=MappingProxyType(dict(ctx.result.metrics)),
            outputs=MappingProxyType({n: MappingProxyType(dict(r.outputs)) for n, r in records.items()}),
            _ctx=ctx, _rows_so_far=_rows_so_far(ctx, outputs),
        )

    def cache_key(self, ctx: RunContext, inputs: StepInput) -> str | None:
        if not self.spec.cache or not isinstance(inputs, StepInput):
            return None
        before = ctx.previous  # the step just before this one in the run
        return fingerprint("user-step", {
            "name": self.name, "call": self.spec.call, "with": self.spec.with_,
            "code": module_fingerprint(self.spec.call.partition(":")[0]),
            "previous": None if before is None else (before.cache_key or before.outputs),
            "snapshot": inputs.snapshot_id, "features": inputs.features, "model": inputs.model_version,
        })

    def describe_inputs(self, ctx: RunContext, inputs: StepInput) -> dict[str, Any]:
        return {"call": self.spec.call, "with": self.spec.with_, "after": self.spec.after}

    def run(self, ctx: RunContext, inputs: StepInput) -> dict[str, Any]:
        fn = import_call(f"{self.key}.call", self.spec.call)
        try:
            with capture_prints(ctx.step.log):  # its print()s: in `raymlops runs logs` too
                got = fn(inputs, **self.spec.with_)
            outputs = self._outputs(got)
        except BaseException as exc:
            self._audit(ctx, "failed", {"error": f"{type(exc).__name__}: {exc}"})
            raise
        ctx.step.outputs = outputs
        ctx.step.detail = f"{self.spec.call} returned " + (
            ", ".join(f"{k}={_short(v)}" for k, v in list(outputs.items())[:4]) if outputs else "nothing")
        self._audit(ctx, "ran", {"outputs": outputs})
        return outputs

    def _outputs(self, got: Any) -> dict[str, Any]:
        if got is not None and not isinstance(got, dict):
            raise TypeError(f"{self.key}.call: {self.spec.call} returned {type(got).__name__}; expected a dict of "
                            "JSON values, or None")
        try:  # numpy's scalars and arrays (a count, a mean computed with numpy) as the numbers they hold
            out: dict[str, Any] = json.loads(json.dumps(got or {}, allow_nan=False, default=_numpy_value))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{self.key}.call: {self.spec.call} returned a value that is not JSON: {exc}") from None
        return out

    def explain(self, ctx: RunContext, exc: BaseException, failure: Failure) -> Failure:
        """Named after the entry; the traceback from the user's function on (not the runner's frames)."""
        if failure.type == "ConfigError":
            return failure
        failure.context = f"{self.key} ({self.spec.call}) raised"
        module = sys.modules.get(self.spec.call.partition(":")[0])
        path = getattr(module, "__file__", None)
        lines = failure.traceback.splitlines(keepends=True)
        start = next((i for i, line in enumerate(lines) if path and line.startswith(f'  File "{path}"')), None)
        if start is not None and lines and lines[0].startswith("Traceback"):
            failure.traceback = lines[0] + "".join(lines[start:])
        return failure

    def _audit(self, ctx: RunContext, verdict: str, how: dict[str, Any]) -> None:
        with ctx.store.metadata.transaction() as conn:
            audit.append(conn, f"step.{verdict}", {"step": self.name, "run": ctx.run_id}, ctx.reason,
                         {"call": self.spec.call, "with": self.spec.with_, "after": self.spec.after,
                          "config_hash": ctx.config.config_hash(), **how})


def _rows_so_far(ctx: RunContext, outputs: Mapping[str, Any]) -> SnapshotRows | None:
    """The rows a user step sees: the snapshot's; before the snapshot step, the same rows from the
    cache entry the data steps came from, else the validated (or ingested) Ray Dataset's."""
    snap = outputs.get("snapshot")
    snapshot_id = snap.snapshot.id if snap is not None else ctx.result.snapshot
    if snapshot_id is not None:
        return ctx.rows(snapshot_id)
    found = outputs.get("validate") or outputs.get("ingest")
    dataset = getattr(found, "dataset", None)
    if dataset is None:
        return None

    def load() -> Any:
        import pyarrow as pa

        return pa.concat_tables(ctx.ray().get(dataset.to_arrow_refs()))

    return SnapshotRows(ctx.store, "", ctx.config, load)


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:39] + "…"


def user_steps(config: PipelineConfig) -> list[UserStep]:
    return [UserStep(spec, i) for i, spec in enumerate(config.steps)]


def _numpy_value(value: Any) -> Any:
    """A numpy scalar or array as Python numbers (``json.dumps``' ``default``); anything else is not
    JSON (np.float64 passed, being a float; np.int64 failed the run)."""
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
