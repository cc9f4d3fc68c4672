"""``data.transforms``: the user's steps between reading the source and checking its schema.

Each entry of the list sets exactly one kind (:class:`raymlops.config.TransformConfig`); this
module resolves them once on the driver (import problems are :class:`ConfigError` naming the key
path, e.g. ``data.transforms[0].map_batches``) and applies them in order with Ray Data.

Kinds:

``map_batches: "module:function"``
    ``function(batch: pandas.DataFrame) -> pandas.DataFrame``, run with
    ``Dataset.map_batches(fn, batch_format="pandas")`` on the Ray Data workers, which must be
    able to import ``module`` too (on a cluster: install it, or ship it in the job's
    ``working_dir``).
``select: [a, b]``, ``rename: {old: new}``, ``cast: {column: int64}``
    Column operations on Arrow batches (``cast`` is safe: a value that does not fit fails).
``filter: "age >= 18 and status != 'test'"``
    Keeps the rows where the expression is true (null counts as false).
``derive: {ratio: "income / (debt + 1)", adult: "age >= 18"}``
    Adds or replaces columns, in order (a later one may use an earlier one).

The declarative kinds run as ``map_batches`` on Arrow batches with :mod:`pyarrow.compute`;
their expressions are parsed by :mod:`raymlops.expr` (a whitelist over Python's ``ast``),
never given to ``eval``. A problem in a batch (a missing column, a bad cast) is a
:class:`ValidationError` naming the key path.

A new kind is one optional field on ``TransformConfig`` and one entry in :data:`_RESOLVERS`
(its check on the driver) and :data:`_APPLIERS` (how it changes the dataset).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import sysconfig
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from raymlops.config import TransformConfig
from raymlops.exceptions import ConfigError, ValidationError
from raymlops.expr import parse

if TYPE_CHECKING:
    import ray.data


@dataclass(frozen=True)
class Transform:
    """One resolved entry: its key path, its kind, what the config said, and what it runs."""

    key: str  # data.transforms[0].map_batches
    kind: str
    spec: Any
    fn: Callable[..., Any] | None = None

    @property
    def module(self) -> str | None:
        return self.spec.split(":", 1)[0] if self.kind == "map_batches" else None

    def code_location(self) -> tuple[str, str] | None:
        """``(source file, function name)`` of a user function, to find it in a traceback."""
        code = getattr(self.fn, "__code__", None)
        return (code.co_filename, code.co_name) if code is not None else None

    def describe(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "spec": self.spec}


def pandas_batch_function(fn: Callable[[Any], Any], key: str, spec: str) -> Callable[[Any], Any]:
    """The user's batch function, checked: it must return a pandas DataFrame. Keeps the user's
    function name, which Ray Data uses to name the operator (``MapBatches(clean)``). Pickled to
    the workers with the user's function by reference (its module is imported there)."""

    def batch_function(batch: Any) -> Any:
        import pandas as pd

        out = fn(batch)
        if not isinstance(out, pd.DataFrame):
            raise TypeError(f"{key}: {spec} returned {type(out).__name__}; expected a pandas DataFrame")
        return out

    batch_function.__name__ = batch_function.__qualname__ = getattr(fn, "__name__", "transform")
    return batch_function


def _resolve_map_batches(key: str, spec: str) -> Callable[..., Any]:
    return import_function(key, spec, "it must be importable by the driver and the Ray workers")


def import_function(key: str, spec: str, where: str) -> Callable[..., Any]:
    """The function ``module:function`` names; ConfigError naming ``key`` when it cannot be
    imported (``where`` says where it must be importable), is missing or is not callable."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module itself raised while importing
        raise ConfigError(
            f"{key}: cannot import module {module_name!r} ({type(exc).__name__}: {exc}); {where}") from None
    fn = getattr(module, attr, None)
    if fn is None:
        raise ConfigError(f"{key}: module {module_name!r} has no function {attr!r}")
    if not callable(fn):
        raise ConfigError(f"{key}: {spec!r} is a {type(fn).__name__}, expected a function")
    return fn


def _arrow(batch: Any) -> pa.Table:
    return batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])


def _need(table: pa.Table, key: str, columns: Sequence[str]) -> None:
    for c in columns:
        if c not in table.column_names:
            raise ValidationError(f"{key}: column {c!r} not found (columns: {', '.join(table.column_names)})")


def _named(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    fn.__name__ = fn.__qualname__ = name  # Ray Data names the operator MapBatches(<name>)
    return fn


def _resolve_select(key: str, spec: list[str]) -> Callable[..., Any]:
    columns = list(spec)

    def select(batch: Any) -> pa.Table:
        table = _arrow(batch)
        _need(table, key, columns)
        return table.select(columns)

    return _named(select, "select")


def _resolve_rename(key: str, spec: dict[str, str]) -> Callable[..., Any]:
    mapping = dict(spec)

    def rename(batch: Any) -> pa.Table:
        table = _arrow(batch)
        _need(table, key, list(mapping))
        names = [mapping.get(n, n) for n in table.column_names]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup is not None:
            raise ValidationError(f"{key}: renaming would give two columns named {dup!r}")
        return table.rename_columns(names)

    return _named(rename, "rename")


def _resolve_cast(key: str, spec: dict[str, str]) -> Callable[..., Any]:
    types = {c: pa.type_for_alias(t) for c, t in spec.items()}  # names checked when the config loaded

    def cast(batch: Any) -> pa.Table:
        table = _arrow(batch)
        _need(table, key, list(types))
        for column, to in types.items():
            i = table.column_names.index(column)
            try:
                table = table.set_column(i, column, pc.cast(table.column(i), to, safe=True))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise ValidationError(f"{key}: cannot cast column {column!r} to {to}: "
                                      f"{str(exc).splitlines()[0]}") from None
        return table

    return _named(cast, "cast")


def _resolve_filter(key: str, spec: str) -> Callable[..., Any]:
    expression = parse(spec, what=key)

    def filter(batch: Any) -> pa.Table:
        table = _arrow(batch)
        try:
            return table.filter(expression.mask(table))
        except ValidationError as exc:
            raise ValidationError(f"{key}: {exc}") from None

    return _named(filter, "filter")


def _resolve_derive(key: str, spec: dict[str, str]) -> Callable[..., Any]:
    expressions = {name: parse(text, what=f"{key}.{name}") for name, text in spec.items()}

    def derive(batch: Any) -> pa.Table:
        table = _arrow(batch)
        for name, expression in expressions.items():
            try:
                values = expression.evaluate(table)
            except ValidationError as exc:
                raise ValidationError(f"{key}.{name}: {exc}") from None
            if name in table.column_names:
                table = table.set_column(table.column_names.index(name), name, values)
            else:
                table = table.append_column(name, values)
        return table

    return _named(derive, "derive")


_RESOLVERS: dict[str, Callable[[str, Any], Callable[..., Any] | None]] = {
    "map_batches": _resolve_map_batches,
    "select": _resolve_select,
    "rename": _resolve_rename,
    "cast": _resolve_cast,
    "filter": _resolve_filter,
    "derive": _resolve_derive,
}


def _apply_map_batches(ds: ray.data.Dataset, t: Transform) -> ray.data.Dataset:
    assert t.fn is not None
    return ds.map_batches(pandas_batch_function(t.fn, t.key, t.spec), batch_format="pandas")


def _apply_arrow(ds: ray.data.Dataset, t: Transform) -> ray.data.Dataset:
    assert t.fn is not None
    return ds.map_batches(t.fn, batch_format="pyarrow", batch_size=None)


_APPLIERS: dict[str, Callable[[ray.data.Dataset, Transform], ray.data.Dataset]] = {
    "map_batches": _apply_map_batches,
    **{kind: _apply_arrow for kind in ("select", "rename", "cast", "filter", "derive")},
}


def resolve(transforms: Sequence[TransformConfig], prefix: str = "data.transforms") -> list[Transform]:
    """Check every entry on the driver (imports included); ConfigError names the key path."""
    out = []
    for i, entry in enumerate(transforms):
        kind = entry.kind
        key = f"{prefix}[{i}].{kind}"
        spec = getattr(entry, kind)
        out.append(Transform(key=key, kind=kind, spec=spec, fn=_RESOLVERS[kind](key, spec)))
    return out


def apply(ds: ray.data.Dataset, transforms: Sequence[Transform]) -> ray.data.Dataset:
    """``ds`` with every transform applied in order (lazily: Ray Data runs them when consumed)."""
    for t in transforms:
        ds = _APPLIERS[t.kind](ds, t)
    return ds


def _installed(path: Path) -> bool:
    """A file of an installed distribution or of the standard library (not the user's own code)."""
    return any(part in ("site-packages", "dist-packages") for part in path.parts) or path.is_relative_to(_STDLIB)


_STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()


def _user_sources(module: str, origin: Path) -> list[Path]:
    """The source files whose edits change what ``module`` (the user's, at ``origin``) does: every
    ``.py`` file of the package it belongs to (a helper module it imports from there included), or,
    for a module outside any package, every ``.py`` file of its folder (not only the loaded ones: a
    helper that the step's function imports when it runs is not loaded yet when the cache key is
    made, and its edits were missed)."""
    top = module.partition(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    locations = list(getattr(spec, "submodule_search_locations", None) or []) if spec is not None else []
    if locations:
        return sorted({f for loc in locations for f in Path(loc).rglob("*.py")
                       if not any(part.startswith(".") or part == "__pycache__" for part in f.parts)})
    return sorted(set(origin.parent.glob("*.py")) | {origin})


def module_fingerprint(module: str) -> str | None:
    """sha256 of a module's code, so that editing it invalidates a cached step or transform: for
    the user's own code, every source file of its package (a helper module that a step's function
    imports from there, say), or of a module outside any package, every ``.py`` file of its folder;
    for an installed one (site-packages, the standard library: its version is in the
    run record), its own file. None for modules without a file or that cannot be found."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None)
    if not origin or not Path(origin).is_file():
        return None
    path = Path(origin).resolve()
    if _installed(path):
        return hashlib.sha256(path.read_bytes()).hexdigest()
    h = hashlib.sha256()
    for f in _user_sources(module, path):
        h.update(f"{f.name}\n".encode())
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def code_hash(transforms: Sequence[Transform]) -> str | None:
    """sha256 of what the transforms do: each kind and spec, and the source file of every user
    function's module (so editing that code changes the hash). None without transforms."""
    if not transforms:
        return None
    parts = []
    for t in transforms:
        entry: dict[str, Any] = {"kind": t.kind, "spec": t.spec}
        if t.module is not None:
            entry["code"] = module_fingerprint(t.module)
        parts.append(entry)
    canon = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canon.encode()).hexdigest()
