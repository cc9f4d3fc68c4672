"""Loading a config from YAML or a mapping; errors are one line naming file, key path, expected, found."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
)
from pydantic import ValidationError as PydanticValidationError

from raymlops.config.pipeline import PipelineConfig
from raymlops.exceptions import ConfigError


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _key_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = str(part)
            if not text.isidentifier():
                text = repr(text)  # odd keys (spaces, newlines) stay on one line and visible
            out += ("." if out else "") + text
    return out or "(top level)"


def _expected(err: Mapping[str, Any], model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        return f"unknown key; expected one of {', '.join(allowed)}" if allowed else "unknown key"
    if kind == "missing":
        return "expected this key, it is missing"
    msg = str(err["msg"])
    msg = msg.removeprefix("Value error, ")
    if msg.startswith("Input should be"):
        msg = "expected " + msg.removeprefix("Input should be ")
    elif not msg.startswith("expected"):
        msg = "expected: " + msg
    return msg


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        args = getattr(ann, "__args__", ())
        current = next((a for a in (ann, *args) if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if current is None:
            return []
    return sorted(f.alias or n for n, f in getattr(current, "model_fields", {}).items())


def parse_config(data: Any, source: str = "<config>") -> PipelineConfig:
    """Validate an already-parsed mapping; errors name ``source`` and the key path."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: (top level): expected a mapping of keys, found {_describe(data)}")
    try:
        return PipelineConfig.model_validate(data)
    except PydanticValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        loc = tuple(first["loc"])
        found = "" if first["type"] == "missing" else f", found {_describe(first.get('input'))}"
        expected = _expected(first, PipelineConfig, loc)
        if first["type"] == "extra_forbidden" or ", found " in expected:
            found = ""
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise ConfigError(
            f"{source}: {_key_path(loc)}: {expected}{found}{more}"
        ) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | Path) -> PipelineConfig:
    """Load and validate a YAML pipeline config."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: config file not found")
    try:
        data = yaml.load(p.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        raise ConfigError(f"{p}: not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    cfg = parse_config(data, str(p))
    cfg._file = str(p.resolve())
    return cfg
