"""A fitted model's content digest: the same model, the same digest, whatever process made it.

The artifact's sha256 is of its pickle bytes, and those depend on more than the model: pickle
writes an object once and refers back to it where the same object recurs, so two models equal in
every parameter and array pickle differently when one process shares a string or dtype object
between two attributes and another holds two equal copies (after a ``joblib.load`` in the same
process, say: measured on the quickstart model, 2,305 vs 2,337 bytes). :func:`model_digest` walks
the model's state as pickle would (``__reduce_ex__``) and hashes values, never identities: every
array's dtype, shape and bytes, every scalar and string, every class by its import path.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

_SCALARS = (str, bytes, int, float, complex, bool, type(None), np.generic)


def model_digest(model: Any) -> str:
    """sha256 of ``model``'s content (see the module docstring)."""
    h = hashlib.sha256()
    seen: set[int] = set()

    def name(obj: Any) -> str:
        return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"

    def walk(obj: Any) -> None:
        if isinstance(obj, _SCALARS):
            h.update(f"{type(obj).__name__}:{obj!r};".encode())
            return
        if isinstance(obj, np.ndarray):
            h.update(f"nd:{obj.dtype.str}:{obj.shape};".encode())
            if obj.dtype.hasobject:
                for item in obj.ravel().tolist():
                    walk(item)
            else:
                h.update(np.ascontiguousarray(obj).tobytes())
            return
        if isinstance(obj, type) or callable(obj) and not hasattr(obj, "__dict__") or isinstance(obj, np.dtype):
            h.update(f"ref:{obj if isinstance(obj, np.dtype) else name(obj)};".encode())
            return
        if id(obj) in seen:  # a cycle: the object is already in the digest
            h.update(b"cycle;")
            return
        seen.add(id(obj))
        try:
            if isinstance(obj, dict):
                h.update(b"{")
                for key in sorted(obj, key=repr):
                    walk(key)
                    walk(obj[key])
                h.update(b"}")
            elif isinstance(obj, (list, tuple)):
                h.update(f"{type(obj).__name__}[".encode())
                for item in obj:
                    walk(item)
                h.update(b"]")
            elif isinstance(obj, (set, frozenset)):
                h.update(b"set[")
                for item in sorted(obj, key=repr):
                    walk(item)
                h.update(b"]")
            else:  # an object: its class and what pickle would save of it
                h.update(f"obj:{name(type(obj))}(".encode())
                reduced = obj.__reduce_ex__(4)
                for part in (reduced[1:] if isinstance(reduced, tuple) else (reduced,)):
                    walk(list(part) if hasattr(part, "__next__") else part)  # list / dict items: iterators
                h.update(b")")
        finally:
            seen.discard(id(obj))

    walk(model)
    return h.hexdigest()
