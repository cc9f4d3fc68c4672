"""Work beside this process: child processes for the KS p-values, and scipy.stats imported early.

A large-sample KS p-value can be a long ``scipy.special.smirnov`` sum that holds the GIL (about a
second at a million rows): :func:`forked` runs such a function in a forked child, beside the other
columns' passes. ``scipy.stats`` costs most of a second to import: :func:`preload_scipy` imports it
on a thread (for the exact small-sample tests, and the few large-sample p-values that need
``kstwo.sf``'s recursions), so that the import overlaps the passes instead of following them.
Pure standard library (scipy only on the preload thread).
"""

from __future__ import annotations

import importlib
import os
import struct
import sys
import threading
from collections.abc import Callable

__all__ = ["forked", "preload_scipy"]


def forked(compute: Callable[[], float], fallback: Callable[[], float]) -> Callable[[], float]:
    """Run ``compute`` in a forked child that writes its float to a pipe; the returned function
    reads it (or calls ``fallback`` if the child failed)."""
    with _FORK_LOCK:
        try:
            r, w = os.pipe()
            pid = os.fork()
        except OSError:
            return fallback
        if pid == 0:  # the child: compute, write 8 bytes, leave at once (no cleanup of the parent's state)
            code = 1
            try:
                os.close(r)
                os.write(w, struct.pack("d", compute()))
                code = 0
            finally:
                os._exit(code)
    os.close(w)

    def result() -> float:
        with os.fdopen(r, "rb") as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        if len(data) == 8 and os.waitstatus_to_exitcode(status) == 0:
            return float(struct.unpack("d", data)[0])
        return fallback()

    return result


_FORK_LOCK = threading.Lock()


def preload_scipy() -> threading.Thread | None:
    """Start importing :mod:`scipy.stats` (most of a second) on a background thread, so that it
    overlaps reading the data and the linear passes (which release the GIL) instead of preceding
    them. Returns that thread (the same one when called again while it runs); None when scipy.stats
    was already imported. Join the thread before the interpreter exits."""
    global _PRELOAD
    with _PRELOAD_LOCK:
        if _PRELOAD is not None and _PRELOAD.is_alive():
            return _PRELOAD
        if "scipy.stats" in sys.modules:
            return None
        _PRELOAD = threading.Thread(target=importlib.import_module, args=("scipy.stats",), name="raymlops-preload",
                                    daemon=True)
        _PRELOAD.start()
        return _PRELOAD


_PRELOAD: threading.Thread | None = None
_PRELOAD_LOCK = threading.Lock()
