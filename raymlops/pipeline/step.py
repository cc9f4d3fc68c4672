"""The shape of a pipeline step, and of a cache entry several steps share.

A :class:`Step` has a ``name``, says whether it uses Ray (``needs_ray``: it calls
``ctx.connect()``; a step without it never touches Ray), takes a typed input dataclass and
returns a typed output dataclass::

    inputs = step.take(ctx, outputs)   # from the outputs of the steps before it, by step name
    reason = step.skip(ctx, inputs)    # why it does not apply to this run, or None
    out = step.run(ctx, inputs)        # the work; fills ctx.step (detail, rows, bytes, outputs)

Every built-in step can be run alone from Python with inputs made by hand (``SnapshotStep().run(
ctx, SnapshotIn(dataset))``, ``TrainStep().run(ctx, TrainIn(snapshot_id, features))``). The runner
(:mod:`.runner`) adds timing, the run record, the step log, failures in the user's terms and the
cache.

Steps whose results are only reusable together share one cache entry, a :class:`CacheGroup`:
ingest → schema → validate → snapshot (:class:`.data_steps.DataCache`) and train → evaluate →
gate → register (:class:`.model_steps.ModelCache`). A group's entries are written once all its
steps succeeded, so a failed run never leaves one behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

from raymlops.pipeline.context import RunContext
from raymlops.pipeline.failures import Failure

__all__ = ["CacheGroup", "Outputs", "Restored", "Step"]

In = TypeVar("In")
Out = TypeVar("Out")


class Outputs(dict[str, Any]):
    """The outputs of the steps that ran or came from the cache so far, by step name, and
    (``records``) their :class:`StepResult` records."""

    def __init__(self) -> None:
        super().__init__()
        self.records: dict[str, Any] = {}


class Step(Generic[In, Out]):
    """One step (see the module docstring). ``requires``: the steps whose outputs :meth:`take`
    reads; when one of them was skipped, this one is skipped for the same reason."""

    name: str = ""
    needs_ray: bool = False
    requires: tuple[str, ...] = ()

    def take(self, ctx: RunContext, outputs: Mapping[str, Any]) -> In:
        """This step's inputs from the outputs of the steps before it (by step name)."""
        raise NotImplementedError

    def skip(self, ctx: RunContext, inputs: In) -> str | None:
        """Why the step does not run in this run (recorded as ``skipped``), or None."""
        return None

    def cache_key(self, ctx: RunContext, inputs: In) -> str | None:
        """A hash of everything the output depends on; None: never cached."""
        return None

    def run(self, ctx: RunContext, inputs: In) -> Out:
        raise NotImplementedError

    def explain(self, ctx: RunContext, exc: BaseException, failure: Failure) -> Failure:
        """The failure in the user's terms, refined with what only this step knows."""
        return failure

    def describe_inputs(self, ctx: RunContext, inputs: In) -> dict[str, Any]:
        """What the run record shows as the step's inputs."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@dataclass
class Restored:
    """A step's output taken from the cache, with what its record shows."""

    out: Any
    detail: str
    outputs: dict[str, Any] = field(default_factory=dict)
    rows: int | None = None
    nbytes: int | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    key: str | None = None


class CacheGroup:
    """Consecutive steps cached as one entry. ``names``: the steps, in run order."""

    names: ClassVar[tuple[str, ...]] = ()

    def restore(self, ctx: RunContext, outputs: Mapping[str, Any]) -> dict[str, Restored] | None:
        """The steps' outputs from a usable cache entry (by step name), or None: run them."""
        raise NotImplementedError

    def key_of(self, ctx: RunContext, name: str, outputs: Mapping[str, Any]) -> str | None:
        """The cache key the run record shows for step ``name``."""
        raise NotImplementedError

    def entries(self, ctx: RunContext, outputs: Mapping[str, Any], records: Mapping[str, Any],
                restored: set[str]) -> list[tuple[str, str, dict[str, Any]]]:
        """``(key, step, value)`` to store once every step of the group succeeded; ``restored``:
        the steps that came from the cache in this run; ``records``: the steps' StepResults."""
        raise NotImplementedError
