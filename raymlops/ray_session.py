"""Ray session helpers, below every layer: the namespace, connecting to Ray (reuse a running
session, join ``RAY_ADDRESS``, or start a quiet local one), finding the user's exception
inside Ray's wrappers (objects and remote traceback text), and telling Ctrl-C apart while Ray
Tune or Ray Train holds it (:func:`watch_interrupts`). Any layer may import this module; it imports
``ray`` only inside the functions that connect."""


from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from raymlops.exceptions import RaymlopsError, Terminated

NAMESPACE = "raymlops"

#: Ray settings of a private local Ray (``ray.init(_system_config=...)``):
#:
#: - Ray keeps one idle worker process per CPU and kills the others a second after their task
#:   ends; on a small machine each pipeline step that runs more tasks or actors than that (Ray
#:   Data's reads, Tune's trials, Ray Train's workers) starts and imports new processes, about 2
#:   CPU-seconds each. Up to 8 idle workers stay, so a process that runs pipelines one after
#:   another (the retrain loop, the test suite) reuses warm ones (at most 8 idle processes of
#:   about 150 MB each).
#: - Ray's own metrics (OpenCensus, exported to its dashboard's Prometheus endpoint) are not
#:   collected: a private Ray has no dashboard and nothing scrapes them, and every Ray process
#:   exporting them cost about a sixth of a Ray Train run's CPU here. raymlops' own metrics
#:   (``monitor.metrics_port``, the Grafana dashboard) are prometheus-client's and unaffected; a
#:   cluster (``RAY_ADDRESS``) keeps its own settings.
PRIVATE_RAY_CONFIG = {"num_workers_soft_limit": max(8, os.cpu_count() or 1), "enable_metrics_collection": False}


#: Environment of the Ray processes a private local Ray starts (they inherit the driver's): its log
#: monitor ships worker output to drivers, and raymlops' drivers take none (``log_to_driver=False``),
#: yet by default it looks for new worker log files ten times a second, a scan that grows with every
#: worker the session ever started (0.02-0.03 CPU/s after a few hundred). With these it scans every
#: 5 s; a cluster (``RAY_ADDRESS``) keeps its own.
PRIVATE_RAY_ENV = {"RAY_LOG_MONITOR_MANY_FILES_THRESHOLD": "0", "LOG_NAME_UPDATE_INTERVAL_S": "5"}


def quiet_ray_logs() -> None:
    for name, value in PRIVATE_RAY_ENV.items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
    for name in ("ray", "ray.data", "ray.tune", "ray.train", "ray.serve"):
        logging.getLogger(name).setLevel(logging.WARNING if name == "ray" else logging.ERROR)


def ensure_ray() -> bool:
    """Make sure this process is connected to Ray. Returns True when the cluster outlives this
    driver (``RAY_ADDRESS`` given, e.g. under ``ray job submit``, or ``auto`` for the cluster
    ``ray start`` left on this machine), False for a private local Ray started here."""
    import ray

    quiet_ray_logs()
    address = os.environ.get("RAY_ADDRESS")
    if ray.is_initialized():
        _after_init()
        return bool(address)
    if address:
        join_cluster(address)
        _after_init()
        return True
    try:
        with caller_sigterm():
            ray.init(
                address="local",  # a private Ray, even when a `ray start` cluster runs on this machine
                include_dashboard=False,
                _system_config=PRIVATE_RAY_CONFIG,
                namespace=NAMESPACE,
                log_to_driver=False,
                logging_level=logging.ERROR,
            )
    except ConnectionError as exc:
        raise RaymlopsError(f"cannot start a local Ray: {exc}") from None
    _after_init()
    return False


@contextlib.contextmanager
def caller_sigterm() -> Iterator[None]:
    """Around ``ray.init``: put back the SIGTERM handler the caller had installed (``raymlops run``'s
    :func:`~raymlops.exceptions.raise_terminated`). ``ray.init`` replaces it with its own (a private
    Ray's node: stop its processes and exit 1; a driver: exit 15), and Ray's core worker adds a
    native one that prints a stack dump: a SIGTERM during training was a failed run, exit 1, not
    an interruption. Without a handler of the caller's (the default), Ray's stay."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        if callable(before):
            signal.signal(signal.SIGTERM, before)


def stopped_by(signum: int, what: str) -> KeyboardInterrupt:
    """The exception for ``what`` (e.g. "Ray Tune") stopped by signal ``signum``: raymlops'
    :class:`~raymlops.exceptions.Terminated` for SIGTERM (the run exits 143), else a Ctrl-C."""
    if signum == signal.SIGTERM:
        return Terminated(f"{what} was stopped by SIGTERM")
    return KeyboardInterrupt(f"{what} was stopped by SIGINT")


def join_cluster(address: str) -> None:
    """Join the Ray cluster at ``address`` (quietly, in raymlops' namespace), or a
    :class:`RaymlopsError` naming it and the usual causes."""
    import ray

    quiet_ray_logs()
    try:
        _listening(address)  # Ray itself retries an address nothing listens at for minutes
        with caller_sigterm():
            ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.ERROR)
    except Exception as exc:  # ConnectionError, a bad address, a failed handshake ...
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        auth = ("" if os.environ.get("RAY_AUTH_MODE") else
                "; RAY_AUTH_MODE is not set here, and a cluster with token authentication (Ray's default for "
                "`ray start` and raymlops' own) needs RAY_AUTH_MODE=token")
        raise RaymlopsError(f"cannot reach the Ray cluster at {address}: {first}. Is it running (`ray status`)"
                            f"{auth}") from None


def _listening(address: str, timeout_s: float = 5.0) -> None:
    """A ConnectionError at once when nothing accepts a connection at ``host:port`` (``ray://``
    too); ``auto`` and other forms are left to Ray."""
    import socket

    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise ConnectionError(f"nothing accepts connections at {host}:{port} ({exc.strerror or exc})") from None


def cluster_address() -> str | None:
    """The address other processes join this process's Ray by (its GCS), or None without one."""
    import ray

    if not ray.is_initialized():
        return None
    return str(ray.get_runtime_context().gcs_address)


def _after_init() -> None:
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    # row order is part of a snapshot's content id and of the index-based split: keep it
    # deterministic from the first read on, not only once a snapshot is written
    ctx.execution_options.preserve_order = True
    ctx.print_on_execution_start = False
    quiet_ray_logs()  # Ray Data sets its own log levels on import


# -- finding the user's exception inside Ray's wrappers ----------------------------------------
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_CHAIN = re.compile(
    r"\n[ \t]*(?:The above exception was the direct cause of the following exception:"
    r"|During handling of the above exception, another exception occurred:)[ \t]*\n"
)
FRAME_LINE = re.compile(r'^\s*File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>.+?)\s*$')
_EXC_LINE = re.compile(r"^(?P<type>[A-Za-z_][\w.]*(?:\([\w.]+\))?)(?::[ \t]?(?P<msg>.*))?$")
_TB_HEADER = "Traceback (most recent call last):"
# exception types that only carry the user's exception (never the user's own)
_WRAPPERS = ("RayTaskError", "RayActorError", "UserCodeException", "TuneError", "RayError", "TaskError",
             "DeploymentUnavailableError", "RayServeException")


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception reachable from it (Ray's ``cause``, ``__cause__``,
    ``__context__``), breadth first, each once (chains may loop)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        e = todo.pop(0)
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        for nxt in (getattr(e, "cause", None), e.__cause__, e.__context__):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


def unwrap(exc: BaseException) -> BaseException:
    """The user's exception inside Ray's wrappers: ``RayTaskError.cause``, and the ``__cause__``
    of Ray and Tune wrapper types; the user's own exception chains are left alone."""
    seen: set[int] = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        cause = getattr(exc, "cause", None)
        if isinstance(cause, BaseException):
            exc = cause
            continue
        if is_wrapper_type(type_name(exc)) and isinstance(exc.__cause__, BaseException):
            exc = exc.__cause__
            continue
        break
    return exc


def parse_remote(text: str) -> tuple[str, str, str] | None:
    """``(type, message, traceback)`` of the user's exception in a remote traceback text, or None
    when the text holds no traceback. The user's exception is the last one in the chain that is
    not one of Ray's wrappers; a traceback nested in a message (Serve: ``RuntimeError:
    Traceback …``) is followed to its innermost part."""
    text = clean_text(text)
    sections = _CHAIN.split(text)
    found: list[tuple[str, str, str]] = []
    for section in sections:
        if _TB_HEADER in section:
            section = section[section.rindex(_TB_HEADER):]
        lines = section.splitlines()
        frames = [i for i, line in enumerate(lines) if FRAME_LINE.match(line)]
        if not frames:
            continue
        exc_at = next(
            (i for i in range(frames[-1] + 1, len(lines)) if lines[i] and not lines[i][0].isspace()
             and _EXC_LINE.match(lines[i].split(":", 1)[0])), None
        )
        if exc_at is None:
            continue
        head = lines[exc_at]
        etype, _, first = head.partition(":")
        message = "\n".join([first.strip(), *lines[exc_at + 1:]]).strip()
        # the traceback starts at its header line (``ray::Task() (pid=…)``), not at the text before it
        start = next((i for i in range(frames[0] - 1, -1, -1) if lines[i] and not lines[i][0].isspace()), 0)
        header = lines[start]
        if "ray::" in header:
            lines[start] = header[header.index("ray::"):]
        found.append((etype.strip(), message, "\n".join(lines[start:]).strip()))
    for etype, message, tb in reversed(found):
        if not is_wrapper_type(etype):
            return etype, message, tb
    return found[-1] if found else None


def type_name(exc: BaseException) -> str:
    cls = type(exc)
    if cls.__module__ in ("builtins", "__main__") or cls.__module__.startswith(("ray.", "raymlops.")):
        return cls.__name__
    return f"{cls.__module__}.{cls.__qualname__}"


def is_wrapper_type(name: str) -> bool:
    base = name.rsplit(".", 1)[-1]
    return name.startswith("ray.") or any(base.startswith(w) for w in _WRAPPERS)


def clean_text(text: str) -> str:
    return _ANSI.sub("", text).replace("\r\n", "\n")


def _private_ray_processes() -> list[Any]:
    """The processes (``subprocess.Popen``) of the private Ray this process started; [] for a
    cluster's (``RAY_ADDRESS``), which is never this process's to lose, or when Ray's internals moved."""
    try:
        from ray._private import worker

        node: Any = worker._global_node
        return [] if node is None else [i.process for v in node.all_processes.values() for i in v if i.process]
    except Exception:  # noqa: BLE001 - Ray's internals moved: as if there were none (the checks before these)
        return []


def private_ray_lost(wait_s: float = 0.0) -> bool:
    """Whether the private Ray this process started is going down: one of its own processes has
    exited (waiting up to ``wait_s`` for one to). A SIGTERM sent to the whole process group
    (``timeout``, systemd, ``kill -- -PGID``) reaches Ray's processes too: its log monitor exits at
    once, its raylet and GCS shut down within seconds, and a call into Ray then blocks until Ray's
    core worker ends the process (exit 1) 60 s later."""
    import time

    procs = _private_ray_processes()
    deadline = time.monotonic() + wait_s
    while procs:
        if any(p.poll() is not None for p in procs):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return False


def kill_private_ray() -> None:
    """SIGKILL what is left of the private Ray this process started (its workers exit with their
    raylet). For a Ray that is going down on its own (:func:`private_ray_lost`): ``ray.shutdown()``
    waits for each process's own shutdown, about 9 s after a SIGTERM to the process group."""
    for proc in _private_ray_processes():
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.kill()


@contextlib.contextmanager
def watch_interrupts(sigterm_as_ctrl_c: bool = False) -> Iterator[Callable[[], int]]:
    """A block that says whether SIGINT (Ctrl-C) or SIGTERM arrived in it, whoever handled it (the
    signal's number, 0 for none: use it as a bool, or :func:`stopped_by`), and puts back the SIGINT
    handler it found.

    Ray Tune and Ray Train install their own SIGINT handlers while they run and leave them
    installed: Tune's stops the trials and lets ``fit()`` return as if they had finished without a
    metric; Ray Train's aborts the run and exits (``SystemExit``), and after the run the same
    handler would do that again at the next Ctrl-C. Neither looks like an interruption to the
    caller. Here, the interpreter's wakeup file descriptor (``signal.set_wakeup_fd``: the C
    handler writes the signal's number into it whichever Python handler runs) records the
    signal; the yielded function reads it. Outside the main thread (where no signal handler runs)
    it always says 0 (SIGTERM: whose handler raises :class:`~raymlops.exceptions.Terminated`, which
    Ray Tune takes for a Ctrl-C).

    ``sigterm_as_ctrl_c``: in the block, SIGTERM runs the SIGINT handler installed at that moment
    (Ray Train's aborts its run: stops the workers and returns), and is still reported as SIGTERM.
    Raised in the middle of Ray Train's ``fit()``, raymlops' own exception left the controller and
    workers training while the process exited: its exit hung 60 s on a GCS Ray had shut down, then
    failed (exit 1)."""
    if threading.current_thread() is not threading.main_thread():
        yield lambda: 0
        return
    before = signal.getsignal(signal.SIGINT)
    term_before = signal.getsignal(signal.SIGTERM)
    if sigterm_as_ctrl_c:
        def as_ctrl_c(signum: int, frame: FrameType | None) -> None:
            if private_ray_lost(0.5):  # the SIGTERM reached Ray's processes too: nothing left to abort
                raise Terminated("terminated (SIGTERM), and the private Ray with it")
            handler = signal.getsignal(signal.SIGINT)
            if not callable(handler):
                raise KeyboardInterrupt
            handler(signal.SIGINT, frame)

        signal.signal(signal.SIGTERM, as_ctrl_c)
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    seen: list[int] = []
    closed: list[bool] = []

    def arrived() -> int:  # after the block: what it recorded (SIGTERM over SIGINT when both came)
        if not closed:
            with contextlib.suppress(BlockingIOError):
                while chunk := os.read(read_fd, 512):
                    seen.extend(s for s in (signal.SIGTERM, signal.SIGINT) if s in chunk)
        return max(seen, default=0)

    previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    try:
        yield arrived
    finally:
        arrived()
        signal.set_wakeup_fd(previous)
        closed.append(True)
        os.close(read_fd)
        os.close(write_fd)
        if before is not None:
            signal.signal(signal.SIGINT, before)
        if sigterm_as_ctrl_c and term_before is not None:
            signal.signal(signal.SIGTERM, term_before)
