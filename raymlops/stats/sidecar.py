"""Work beside this process: child processes for the KS p-values, and scipy.stats imported early.

A large-sample KS p-value can be a long ``scipy.special.smirnov`` sum that holds the GIL (about a
second at a million rows): :func:`forked` runs such a function in a forked child, beside the other
columns' passes. ``scipy.stats`` costs most of a second to import: :func:`preload_scipy` imports it
on a thread (for the exact small-sample tests, which need it in this process), and
:func:`start_kstwo_helper` in a forked helper process that computes ``kstwo.sf`` on request
(:func:`kstwo_sf`), so that a command-line check of large files never imports it itself.
Pure standard library and numpy (scipy only in the children and on the preload thread).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import struct
import sys
import threading
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

__all__ = ["forked", "kstwo_sf", "preload_scipy", "start_kstwo_helper", "stop_kstwo_helper"]

FloatArray = npt.NDArray[np.float64]


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


def kstwo_sf(d: FloatArray, en: FloatArray) -> FloatArray:
    """``scipy.stats.kstwo.sf(d, en)``: from the helper process when one runs (:func:`start_kstwo_helper`),
    else here (importing scipy.stats, most of a second, only when needed)."""
    helper = _HELPER
    if helper is not None:
        got = helper.sf(d, en)
        if got is not None:
            return got
    from scipy.stats import kstwo

    return np.asarray(kstwo.sf(d, en), dtype=np.float64)


class _KstwoHelper:
    """A forked child that imports :mod:`scipy.stats` at once and then answers ``kstwo.sf`` requests
    over a pipe (``k``, then ``k`` statistics and ``k`` sizes as float64; back: ``k`` float64), until
    the parent closes the pipe. The child runs no code of the parent's after the fork but scipy's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        req_r, self._req = os.pipe()
        self._resp, resp_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns
            os.close(self._req)
            os.close(self._resp)
            self._serve(req_r, resp_w)
        os.close(req_r)
        os.close(resp_w)

    @staticmethod
    def _serve(req: int, resp: int) -> None:
        import signal

        code = 1
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's; the child ends with its pipe
            from scipy.stats import kstwo

            while (head := _read_exact(req, 8)) is not None:
                k = struct.unpack("q", head)[0]
                body = _read_exact(req, 16 * k)
                if body is None:
                    break
                values = np.frombuffer(body, dtype=np.float64)
                out = np.asarray(kstwo.sf(values[:k], values[k:]), dtype=np.float64)
                _write_all(resp, out.tobytes())
            code = 0
        finally:
            os._exit(code)

    def sf(self, d: FloatArray, en: FloatArray) -> FloatArray | None:
        """The answers, or None if the child is gone (then the caller computes them itself)."""
        d, en = np.ascontiguousarray(d, dtype=np.float64).ravel(), np.ascontiguousarray(en, dtype=np.float64).ravel()
        with self._lock:
            try:
                _write_all(self._req, struct.pack("q", d.size) + d.tobytes() + en.tobytes())
                body = _read_exact(self._resp, 8 * d.size)
            except OSError:
                body = None
        return None if body is None else np.frombuffer(body, dtype=np.float64).copy()

    def close(self) -> None:
        for fd in (self._req, self._resp):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def _read_exact(fd: int, size: int) -> bytes | None:
    parts, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def start_kstwo_helper() -> None:
    """Start a helper process that imports :mod:`scipy.stats` now, beside this process's own start-up,
    and later computes the large-sample KS p-values that need ``kstwo.sf`` (0.5-0.6 s of import that
    would otherwise come after the columns' passes, with one core idle). For a command-line process
    about to check large files; nothing happens where scipy.stats is already imported or ``os.fork``
    is missing. The helper ends when this process exits (or at :func:`stop_kstwo_helper`)."""
    global _HELPER
    if _HELPER is not None or "scipy.stats" in sys.modules or not hasattr(os, "fork"):
        return
    try:
        _HELPER = _KstwoHelper()
    except OSError:
        return
    import atexit

    atexit.register(stop_kstwo_helper)


def stop_kstwo_helper() -> None:
    global _HELPER
    helper, _HELPER = _HELPER, None
    if helper is not None:
        helper.close()


_HELPER: _KstwoHelper | None = None


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
