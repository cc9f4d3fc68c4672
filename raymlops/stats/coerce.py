"""Numbers that a reader took for text on one side only.

A CSV reader makes a whole column text for one value such as ``?`` or ``n/a``; compared with the
other side's numbers as categories, every value is a new category and a five-standard-deviation
shift read "no drift". Where one side of a column is numbers and the other text, the text side's
values that are numbers are read as numbers and the rest as missing (the missing rate and the type
change are then the data-quality findings), so the drift test compares the values that are there."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["numbers_read_as_text"]  # (and integers beyond 2^53 made exact)


def _is_numbers(values: Any) -> bool:
    """Numbers, some of them there (a column of nulls only reads as NaN and is no numeric column)."""
    return isinstance(values, np.ndarray) and values.dtype.kind in "fiu" and not (
        values.dtype.kind == "f" and bool(np.isnan(values).all()))


def _is_text(values: Any) -> bool:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return pa.types.is_string(values.type) or pa.types.is_large_string(values.type)
    return isinstance(values, np.ndarray) and values.dtype.kind in "OUS" and all(
        v is None or isinstance(v, str) for v in values[:1000].tolist())


def _number(text: Any) -> float:
    if text is None:
        return math.nan
    try:
        value = float(str(text).strip())
    except ValueError:
        return math.nan
    return value


def _as_numbers(values: Any) -> np.ndarray:
    items = values.to_pylist() if isinstance(values, (pa.Array, pa.ChunkedArray)) else values.tolist()
    return np.fromiter((_number(v) for v in items), dtype=np.float64, count=len(items))


def _big_integers(values: Any) -> bool:
    """64-bit integers some of which a double cannot hold exactly (beyond 2^53)."""
    if not (isinstance(values, np.ndarray) and values.dtype.kind in "iu" and values.size):
        return False
    return bool(values.max() > _EXACT or (values.dtype.kind == "i" and values.min() < -_EXACT))


_EXACT = 2**53


def _exact_integers(reference: Any, current: Any) -> tuple[Any, Any]:
    """Both sides of an integer column as doubles that keep every value apart: less their common
    minimum when the values span under 2^53 (distances keep their scale), else their ranks among
    both sides' values (order and ties kept: KS and chi-square are the same). As doubles, 2^63 + 1
    and 2^63 + 300 were one value, and two samples with no value in common read "no drift"."""
    if not (isinstance(reference, np.ndarray) and isinstance(current, np.ndarray)
            and reference.dtype.kind in "iu" and current.dtype.kind in "iu"):
        return reference, current  # a side of text or doubles: left to the other rules
    lo = min(int(reference.min()) if reference.size else 0, int(current.min()) if current.size else 0)
    hi = max(int(reference.max()) if reference.size else 0, int(current.max()) if current.size else 0)
    if hi - lo < _EXACT:  # in whole-array integer arithmetic: every value fits the type chosen, and so do the gaps
        base = np.uint64 if lo >= 0 else np.int64
        return ((reference.astype(base) - base(lo)).astype(np.float64),
                (current.astype(base) - base(lo)).astype(np.float64))
    if reference.dtype == current.dtype:
        both = np.unique(np.concatenate([reference, current]))
        return (np.searchsorted(both, reference).astype(np.float64),
                np.searchsorted(both, current).astype(np.float64))
    both = np.unique(np.concatenate([reference.astype(object), current.astype(object)]))  # int64 with uint64
    rank = {int(v): float(i) for i, v in enumerate(both.tolist())}
    return (np.asarray([rank[int(v)] for v in reference.tolist()], dtype=np.float64),
            np.asarray([rank[int(v)] for v in current.tolist()], dtype=np.float64))


class _Overlay(Mapping[str, Any]):
    """``base`` with some columns replaced (``base`` may read its columns lazily)."""

    def __init__(self, base: Mapping[str, Any], replaced: dict[str, Any]) -> None:
        self._base, self._replaced = base, replaced

    def __getitem__(self, name: str) -> Any:
        return self._replaced[name] if name in self._replaced else self._base[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._base)

    def __len__(self) -> int:
        return len(self._base)


def numbers_read_as_text(reference: Mapping[str, Any], current: Mapping[str, Any], names: Sequence[str]
                         ) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """``(reference, current)`` with the text side of each of ``names`` that is numbers on the
    other side read as numbers (the module docstring), and integer columns beyond 2^53 made exact
    (:func:`_exact_integers`); the columns are untouched otherwise."""
    ref_new: dict[str, Any] = {}
    cur_new: dict[str, Any] = {}
    for name in names:
        r, c = reference[name], current[name]
        if _big_integers(r) or _big_integers(c):
            ref_new[name], cur_new[name] = _exact_integers(r, c)
        elif _is_numbers(r) and _is_text(c):
            cur_new[name] = _as_numbers(c)
        elif _is_numbers(c) and _is_text(r):
            ref_new[name] = _as_numbers(r)
    return (_Overlay(reference, ref_new) if ref_new else reference,
            _Overlay(current, cur_new) if cur_new else current)
