"""The log of one pipeline step: raymlops progress lines and the Python ``logging`` records
emitted while the step ran (the user's loggers and Ray's), kept with the run record.

While a step runs, Ray's own terminal handlers are muted and their records go to the step log
instead, so a failing Ray Data or Serve step prints raymlops' one-line progress and its one
paragraph, not Ray's error dump; ``raymlops runs logs RUN`` shows what was captured.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

MAX_LINES = 500
MAX_LINE_CHARS = 4000
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class StepLog:
    """The last :data:`MAX_LINES` lines of one step."""

    def __init__(self, max_lines: int = MAX_LINES) -> None:
        self._lines: deque[str] = deque(maxlen=max_lines)

    def add(self, line: str) -> None:
        for part in _ANSI.sub("", line).splitlines() or [""]:
            self._lines.append(part if len(part) <= MAX_LINE_CHARS else part[:MAX_LINE_CHARS] + "…")

    def tail(self, n: int = 20) -> list[str]:
        return list(self._lines)[-n:] if n > 0 else []

    @property
    def lines(self) -> list[str]:
        return list(self._lines)

    def text(self) -> str:
        return "\n".join(self._lines)


class _StepLogHandler(logging.Handler):
    def __init__(self, log: StepLog) -> None:
        super().__init__(logging.NOTSET)
        self.log = log
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.log.add(self.format(record))
        except Exception:  # a log line must never fail the step
            self.handleError(record)


def _is_terminal(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)


def _own_handler_loggers() -> list[logging.Logger]:
    """Ray's loggers that do not pass records up to the root (they print themselves)."""
    out = []
    for name, obj in list(logging.Logger.manager.loggerDict.items()):
        if name.split(".")[0] == "ray" and isinstance(obj, logging.Logger) and not obj.propagate:
            out.append(obj)
    return out


class LogCapture:
    """Routes logging into a :class:`StepLog` while active; :meth:`refresh` takes in Ray's
    loggers that appeared since (``ray.init`` and ``import ray.data`` create them)."""

    def __init__(self, log: StepLog, mute_ray_terminal: bool = True) -> None:
        self.handler = _StepLogHandler(log)
        self.mute = mute_ray_terminal
        self._targets: list[logging.Logger] = []
        self._muted: list[tuple[logging.Handler, int]] = []

    def _attach(self, logger: logging.Logger, ray_logger: bool) -> None:
        if logger in self._targets:
            return
        if self.mute and ray_logger:
            for h in logger.handlers:
                if _is_terminal(h):
                    self._muted.append((h, h.level))
                    h.setLevel(logging.CRITICAL + 1)
        logger.addHandler(self.handler)
        self._targets.append(logger)

    def start(self) -> LogCapture:
        self._attach(logging.getLogger(), ray_logger=False)
        self.refresh()
        return self

    def refresh(self) -> None:
        for logger in _own_handler_loggers():
            self._attach(logger, ray_logger=True)

    def stop(self) -> None:
        for logger in self._targets:
            logger.removeHandler(self.handler)
        for h, level in self._muted:
            h.setLevel(level)
        self._targets, self._muted = [], []


@contextmanager
def capture_logging(log: StepLog, mute_ray_terminal: bool = True) -> Iterator[LogCapture]:
    """Copy every logging record emitted in this process into ``log`` until the block ends."""
    capture = LogCapture(log, mute_ray_terminal).start()
    try:
        yield capture
    finally:
        capture.stop()


def stamp(line: str, clock: float | None = None, source: str = "INFO raymlops") -> str:
    """A progress line (or, with ``source``, another kind of line) as it is kept in the step log,
    with the time it was printed."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(clock if clock is not None else time.time())) + \
        f" {source}: {line}"


class _Printed(io.TextIOBase):
    """A stream that passes what is written on to ``echo`` and keeps each whole line in ``log``
    (stamped with the time it was printed)."""

    def __init__(self, log: StepLog, echo: TextIO) -> None:
        super().__init__()
        self.log, self.echo, self._part = log, echo, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.echo.write(text)
        *lines, self._part = (self._part + text).split("\n")
        for line in lines:
            self.log.add(stamp(line, source="PRINT"))
        return len(text)

    def flush(self) -> None:
        self.echo.flush()

    def end(self) -> None:
        if self._part:
            self.log.add(stamp(self._part, source="PRINT"))
            self._part = ""


@contextmanager
def capture_prints(log: StepLog) -> Iterator[None]:
    """While the block runs, what it prints (``sys.stdout`` and ``sys.stderr``: a user step's
    ``print``) still reaches the terminal and is kept in ``log`` too, so ``raymlops runs logs``
    shows it."""
    out, err = _Printed(log, sys.stdout), _Printed(log, sys.stderr)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield
    finally:
        out.end()
        err.end()
