"""``steps:``: the user's own steps, each a Python callable run after a built-in step.

::

    steps:
      - after: validate                # a built-in step (BUILTIN_STEPS)
        name: check-no-leakage         # unique, lowercase; not a built-in step's name
        call: mypkg.checks:no_leakage  # 'module:function', importable (checked before the first step)
        with: {max_corr: 0.95}         # keyword arguments (JSON values)
        cache: true                    # reuse the outputs while the call, its code, `with` and its input are unchanged

The pipeline runs them (:mod:`raymlops.pipeline.user_steps`): timed, recorded, cached and audited
like the built-in steps, a failure explained with the user's exception and traceback.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ConfigDict, Field, field_validator

from raymlops.config.base import FUNC_REF, NAME_PATTERN, Strict

#: The built-in steps, in run order (the pipeline's ``STEPS``; ``steps[i].after`` names one).
BUILTIN_STEPS = ("ingest", "schema", "validate", "snapshot", "data_drift", "train", "evaluate", "gate", "register",
                 "deploy", "smoke", "monitor")


class UserStepConfig(Strict):
    """One entry of ``steps``: call ``call(view, **with)`` after the built-in step ``after``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True,
                              serialize_by_alias=True)

    after: str = Field(description="the built-in step this one runs after")
    name: str = Field(description="lowercase letters, digits and '-'; unique, not a built-in step's name")
    call: str = Field(description="'module:function' called with a StepInput and the `with` arguments")
    with_: dict[str, Any] = Field(default_factory=dict, alias="with", description="keyword arguments (JSON values)")
    cache: bool = Field(False, description="reuse the outputs while the call, its code, `with` and input are the same")

    @field_validator("after")
    @classmethod
    def _builtin(cls, v: str) -> str:
        if v not in BUILTIN_STEPS:
            raise ValueError(f"expected a built-in step ({', '.join(BUILTIN_STEPS)}), found {v!r}")
        return v

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not NAME_PATTERN.match(v):
            raise ValueError(f"expected lowercase letters, digits and '-', at most 63 characters, found {v!r}")
        if v in BUILTIN_STEPS:
            raise ValueError(f"expected a name that is not a built-in step's, found {v!r}")
        return v

    @field_validator("call")
    @classmethod
    def _function_ref(cls, v: str) -> str:
        if not FUNC_REF.match(v):
            raise ValueError(f"expected 'module:function', e.g. 'mypkg.checks:no_leakage', found {v!r}")
        return v

    @field_validator("with_")
    @classmethod
    def _json(cls, v: dict[str, Any]) -> dict[str, Any]:
        try:
            json.dumps(v, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"expected JSON values (strings, numbers, lists, mappings): {exc}") from None
        return v


def unique_step_names(steps: list[UserStepConfig]) -> list[UserStepConfig]:
    names = [s.name for s in steps]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ValueError(f"expected unique step names, found {dup!r} twice")
    return steps


__all__ = ["BUILTIN_STEPS", "UserStepConfig", "unique_step_names"]
