"""Work beside this process: child processes for the KS p-values, and scipy.stats imported early.

A large-sample KS p-value can be a long ``scipy.special.smirnov`` sum that holds the GIL (about a
second at a million rows): :func:`forked` runs such a function in a forked child, beside the other
columns' passes. ``scipy.stats`` costs most of a second to import: :func:`preload_scipy` imports it
on a thread (for the exact small-sample tests, and the few large-sample p-values that need
``kstwo.sf``'s recursions), so that the import overlaps the passes instead of following them.
A command that expects such p-values (``monitor check`` of large files) starts a :class:`Helper`
at once instead: forked while the process is small, it imports scipy.special beside the
command's start-up and computes the long sums on request. Pure standard library (scipy only in
the children and on the preload thread).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import struct
import sys
import threading
from collections.abc import Callable

__all__ = ["Helper", "forked", "preload_scipy", "running_helper", "start_helper", "stop_helper"]


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


class Helper:
    """A child forked while this process is still small (a command's start) that imports ``warm``
    at once, beside this process's own start-up, and then answers ``compute(a, b, c)`` (three floats
    to one) on request, in order, until this process closes the pipe. A long computation that holds
    the GIL (a ``smirnov`` sum) runs there beside this process's threads, and without forking a
    large process: every page such a process writes while its fork lives is copied (0.2 s of a
    million-row check). :meth:`submit` returns at once; the function it returns waits for the answer
    (None when the helper is gone: the caller computes it then)."""

    def __init__(self, compute: Callable[[float, float, float], float], warm: tuple[str, ...] = ()) -> None:
        self._lock, self._read_lock = threading.Lock(), threading.Lock()
        self._seq = 0
        self._done: dict[int, float] = {}
        req_r, self._req = os.pipe()
        self._resp, resp_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns
            os.close(self._req)
            os.close(self._resp)
            self._serve(req_r, resp_w, compute, warm)
        os.close(req_r)
        os.close(resp_w)

    @staticmethod
    def _serve(req: int, resp: int, compute: Callable[[float, float, float], float], warm: tuple[str, ...]) -> None:
        import math
        import signal

        code = 1
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's; the child ends with its pipe
            for name in warm:
                importlib.import_module(name)
            while (head := _read_exact(req, 32)) is not None:
                seq, a, b, c = struct.unpack("qddd", head)
                try:
                    value = float(compute(a, b, c))
                except Exception:  # noqa: BLE001 - the parent computes it itself then
                    value = math.nan
                _write_all(resp, struct.pack("qd", seq, value))
            code = 0
        finally:
            os._exit(code)

    def submit(self, a: float, b: float, c: float) -> Callable[[], float | None]:
        with self._lock:
            seq = self._seq
            self._seq += 1
            try:
                _write_all(self._req, struct.pack("qddd", seq, a, b, c))
            except OSError:
                return lambda: None

        def result() -> float | None:
            with self._read_lock:  # answers come in order: whoever waits reads them all up to its own
                while seq not in self._done:
                    try:
                        body = _read_exact(self._resp, 16)
                    except OSError:
                        body = None
                    if body is None:
                        return None
                    s, value = struct.unpack("qd", body)
                    self._done[s] = value
                return self._done.pop(seq)

        return result

    def close(self) -> None:
        for fd in (self._req, self._resp):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


def _read_exact(fd: int, size: int) -> bytes | None:
    parts, left = [], size
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            return None
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def start_helper(compute: Callable[[float, float, float], float], warm: tuple[str, ...] = ()) -> Helper | None:
    """Start this process's :class:`Helper` (once; it ends when the process exits), or None where
    ``os.fork`` is missing or fails."""
    global _HELPER
    with _FORK_LOCK:
        if _HELPER is None and hasattr(os, "fork"):
            try:
                _HELPER = Helper(compute, warm)
            except OSError:
                return None
            import atexit

            atexit.register(stop_helper)
        return _HELPER


def running_helper() -> Helper | None:
    return _HELPER


def stop_helper() -> None:
    global _HELPER
    helper, _HELPER = _HELPER, None
    if helper is not None:
        helper.close()


_HELPER: Helper | None = None
