"""The base model of every config section (strict, frozen, no unknown keys) and shared checks."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
)

from raymlops.expr import parse

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class Strict(BaseModel):
    """Every config section: unknown keys, type coercion and mutation are errors."""


    # strict: `port: yes` or `port: "80"` is an error, not port 1 / 80 (YAML gives native types)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


FUNC_REF = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")


def _expression(v: str) -> str:
    try:
        parse(v)
    except ValueError as exc:  # ValidationError: names what is not allowed
        raise ValueError("expected an allowed expression: " + str(exc).removeprefix(f"expression {v!r}: ")) from None
    return v


ExpressionText = Annotated[str, AfterValidator(_expression)]


def is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)
