"""raymlops' own errors raised inside Ray Data tasks, given back to the caller as themselves.

A :class:`ValidationError` raised by a batch function on a Ray worker reaches the driver
wrapped (``RayTaskError(UserCodeException)``, its cause chain holding the original); the
functions of :mod:`raymlops.data` re-raise the original, so callers catch what was raised.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from raymlops import exceptions
from raymlops.exceptions import RaymlopsError
from raymlops.ray_session import exception_chain, parse_remote


def inner_error(exc: BaseException) -> RaymlopsError | None:
    """The :class:`RaymlopsError` behind ``exc``: found in its cause chain, or rebuilt from the
    remote traceback Ray carries as text (``raymlops.exceptions.ValidationError: …``)."""
    for e in exception_chain(exc):
        if isinstance(e, RaymlopsError) and type(e).__module__.startswith("raymlops."):
            return e

    found = parse_remote(str(exc))
    if found is None:
        return None
    etype, message, _ = found
    module, _, name = etype.rpartition(".")
    cls = getattr(exceptions, name, None) if module == "raymlops.exceptions" else None
    if not (isinstance(cls, type) and issubclass(cls, RaymlopsError)) or cls is exceptions.StepFailed:
        return None
    return cls((message.splitlines() or [""])[0])


@contextmanager
def ours() -> Iterator[None]:
    """Re-raise a raymlops error found inside a Ray error as itself (one clear message)."""
    try:
        yield
    except RaymlopsError:
        raise
    except Exception as exc:
        inner = inner_error(exc)
        if inner is None:
            raise
        raise inner.with_traceback(None) from None
