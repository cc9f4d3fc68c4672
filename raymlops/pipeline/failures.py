"""What went wrong in a failed step, in the user's terms (pure: no Ray import).

Ray wraps the user's exception several times on its way back to the driver: a task's error
arrives as ``RayTaskError(ValueError)`` whose ``cause`` is the user's exception; a Ray Data UDF
error arrives as ``RayTaskError(UserCodeException)`` whose text holds the user's traceback but
whose objects lost it; a Tune trial's error only survives as text; a Serve replica that fails in
its constructor is reported as a ``RuntimeError`` naming the deployment, while the replica's
traceback sits in the deployment's status message. :func:`describe` finds the user's exception
in all of these (objects first, then the remote traceback text) and returns a
:class:`Failure`; :func:`explain` turns it into the one paragraph the CLI prints.
"""

from __future__ import annotations

import os
import sysconfig
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from raymlops.exceptions import RaymlopsError
from raymlops.ray_session import (
    FRAME_LINE,
    clean_text,
    exception_chain,
    is_wrapper_type,
    parse_remote,
    type_name,
    unwrap,
)

_SKIP_PATHS = tuple(
    os.path.realpath(p) + os.sep
    for p in {sysconfig.get_paths().get("stdlib", ""), sysconfig.get_paths().get("purelib", ""),
              sysconfig.get_paths().get("platlib", "")} if p
)
_RAYMLOPS_DIR = os.path.dirname(os.path.dirname(os.path.realpath(__file__))) + os.sep
MAX_TRACEBACK_CHARS = 20_000


@dataclass(frozen=True)
class Frame:
    file: str
    line: int
    func: str

    def short(self) -> str:
        return f"{_shorten(self.file)}:{self.line} in {self.func}"


@dataclass
class Failure:
    """A failed step: the user's exception (``type``, ``message``), where it was raised, its
    traceback (the remote part when it failed inside a Ray task, actor or replica), what Ray or
    raymlops wrapped it in (``context``), and the last lines of the step's logs."""

    step: str | None
    type: str
    message: str
    traceback: str
    remote: bool = False
    where: str | None = None  # the innermost frame in the user's code (else of all), "file.py:12 in fn"
    in_user_code: bool = False  # ``where`` is the user's code (not Ray, the stdlib, site-packages, raymlops)
    context: str | None = None  # e.g. "every trial failed", "the Serve replica failed to start"
    wrapper: str | None = None  # the exception the driver saw, "RayTaskError(UserCodeException): …"
    exit_code: int = 1
    log_tail: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return f"{self.type}: {self.message}" if self.message else self.type

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Failure:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def describe(
    exc: BaseException,
    step: str | None = None,
    *,
    extra_texts: Sequence[str] = (),
    context: str | None = None,
) -> Failure:
    """A :class:`Failure` for ``exc`` raised in ``step``.

    ``extra_texts``: remote traceback text the caller found elsewhere (a Serve deployment's
    status message, Tune's ``error.txt``); searched first. Then an exception raised in this
    process keeps its own traceback, and one that came from another process (no local
    traceback, or a message that carries frames) is looked up in the text of every exception
    on the way down."""
    inner = unwrap(exc)
    exit_code = inner.exit_code if isinstance(inner, RaymlopsError) else 1
    seen_as = _one_line(f"{type_name(exc)}: {clean_text(str(exc))}")

    def remote(parsed: tuple[str, str, str]) -> Failure:
        etype, message, tb = parsed
        wrapper = None if etype == type_name(exc) else seen_as
        return Failure(step, etype, message, _cap(tb), True, _where(tb), _in_user_code(tb), context, wrapper,
                       exit_code)

    for text in extra_texts:
        parsed = parse_remote(text) if text else None
        if parsed is not None:
            return remote(parsed)
    local_tb = clean_text("".join(traceback.format_exception(type(inner), inner, inner.__traceback__)))
    own = clean_text(str(inner))
    is_local = inner.__traceback__ is not None and not is_wrapper_type(type_name(inner)) and not _has_frames(own)
    if not is_local:
        for e in exception_chain(exc):
            parsed = parse_remote(str(e))
            if parsed is not None:
                return remote(parsed)
    wrapper = None if inner is exc else seen_as
    return Failure(step, type_name(inner), own, _cap(local_tb), False, _where(local_tb), _in_user_code(local_tb),
                   context, wrapper, exit_code)


def _has_frames(text: str) -> bool:
    return any(FRAME_LINE.match(line) for line in text.splitlines())


def frames(tb: str) -> list[Frame]:
    """The ``File "…", line N, in f`` frames of a traceback text, outermost first."""
    out = []
    for line in clean_text(tb).splitlines():
        m = FRAME_LINE.match(line)
        if m:
            out.append(Frame(m["file"], int(m["line"]), m["func"]))
    return out


def _one_line(text: str, limit: int = 300) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= limit else first[: limit - 1] + "…"


def _cap(text: str) -> str:
    return text if len(text) <= MAX_TRACEBACK_CHARS else "…" + text[-MAX_TRACEBACK_CHARS:]


def _is_user_file(path: str) -> bool:
    real = os.path.realpath(path)
    if path.startswith("<") or real.startswith(_RAYMLOPS_DIR):
        return False
    return not any(real.startswith(p) for p in _SKIP_PATHS)


def _where(tb: str) -> str | None:
    """The innermost frame in the user's code (not Ray, the stdlib, site-packages or raymlops);
    else the innermost frame of all."""
    found = frames(tb)
    users = [f for f in found if _is_user_file(f.file)]
    chosen = users[-1] if users else (found[-1] if found else None)
    return chosen.short() if chosen else None


def _in_user_code(tb: str) -> bool:
    return any(_is_user_file(f.file) for f in frames(tb))


def _shorten(path: str) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return path
    return rel if not rel.startswith("..") else path


# -- the paragraph -----------------------------------------------------------------------------
GENERIC_HINT = "Fix the cause and run again."


def hint(f: Failure) -> str:
    """What to do, for the causes we know (bad config key, unreadable source, validation rule
    failed, port in use, Ray not reachable, token missing, …); :data:`GENERIC_HINT` otherwise."""
    text = f"{f.type}: {f.message} {f.context or ''} {f.wrapper or ''}".lower()
    base = f.type.rsplit(".", 1)[-1]
    if any(k in text for k in ("authentication token", "invalidauthtoken", "auth_token", "unauthenticated")):
        return ("The Ray cluster uses token authentication and no valid token was found: set RAY_AUTH_MODE=token "
                "and provide the token (~/.ray/auth_token, RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN).")
    if "cannot reach the ray cluster" in text or (f.step is None and base in ("ConnectionError", "TimeoutError")):
        return ("Start the cluster (`ray start --head`) or point RAY_ADDRESS at a running one (`ray status` "
                "checks it), then run again.")
    if ("port" in text and "in use" in text) or "failed to bind" in text or "address already in use" in text:
        return ("Set serve.port in the config to a free port, or stop the program that holds this one "
                "(`ss -ltnp` shows it), then run again.")
    reaching = any(w in text for w in ("not found", "cannot reach", "cannot read", "format", "permission"))
    if ("data.source" in text and base in ("ConfigError", "ValidationError") and reaching) or (
        f.step == "ingest" and base in ("FileNotFoundError", "PermissionError", "IsADirectoryError")
    ):
        return ("Check that data.source exists and is readable by this user (and by the Ray workers on a "
                "cluster), and that data.format matches the file.")
    if base == "ConfigError" and "data.transforms" in text:
        return ("Fix that entry of data.transforms: its module must be importable here and on the Ray workers "
                "(PYTHONPATH, or the job's working_dir) and define the function.")
    if base == "ConfigError":
        return "Fix that key in the config and run again."
    if base == "ValidationError":
        return ("The data did not pass validation: fix the data, or the data.target / data.features settings, "
                "then run again.")
    if base == "IntegrityError":
        return "Stored content changed after it was recorded: run `raymlops doctor` to see what."
    context = (f.context or "").lower()
    if "trial" in context:
        return ("Fix the estimator or its parameters in train.candidates (train.params with strategy: distributed; "
                "the traceback shows where it raised), then run again.")
    if "replica" in context:
        return ("The model could not be loaded in the Serve replica: check that the estimator's module is "
                "importable on every node and that the model unpickles there, then run again.")
    if context.startswith("steps["):
        return ("Fix that function of the config's steps (the traceback shows where it raised), or the step's "
                "`with` arguments, then run again.")
    if "data.transforms" in context:
        return "Fix that function of data.transforms (it runs on the Ray Data workers), then run again."
    return GENERIC_HINT


def explain(f: Failure, run_id: str, resumable: bool = False) -> str:
    """One paragraph: which step, what went wrong in the user's terms, what to do, then where the
    details are. ``resumable``: some steps succeeded, and the next run reuses them."""
    where = f"step '{f.step}'" if f.step else "its start, before the first step"
    what = f.summary
    if f.context:
        what = f"{f.context}: {what}"
    if f.where and f.in_user_code:
        what += f" (raised at {f.where})"
    advice = hint(f)
    if resumable:
        advice += " Steps that succeeded are reused from the cache on the next run."
    return f"error: run {run_id} failed at {where}: {_one_line(what, 600).rstrip('.')}. {advice}\n" \
           f"Details: raymlops runs show {run_id}"


__all__ = ["GENERIC_HINT", "Failure", "Frame", "describe", "explain", "frames", "hint", "parse_remote", "unwrap"]
