"""One exception hierarchy for raymlops.

Every class also subclasses the nearest builtin, so callers that catch ``ValueError`` or
``KeyError`` keep working. The CLI prints the message of a :class:`RaymlopsError` as one line
and exits 2 for user errors (:attr:`RaymlopsError.exit_code`), 1 for failures.
"""

from __future__ import annotations


class RaymlopsError(Exception):
    """Root of every error raymlops raises on purpose."""

    #: exit code the CLI uses for this error: 2 = the user's input is wrong, 1 = a failure
    exit_code: int = 1


class ConfigError(RaymlopsError, ValueError):
    """A pipeline config is missing, unreadable or invalid."""

    exit_code = 2


class ValidationError(RaymlopsError, ValueError):
    """Data or a request does not match the schema or the rules."""

    exit_code = 2


class NotFound(RaymlopsError, KeyError):
    """A snapshot, model version, run or alias does not exist."""

    exit_code = 2

    def __str__(self) -> str:  # KeyError quotes its message; we do not
        return str(self.args[0]) if self.args else ""


class IntegrityError(RaymlopsError):
    """Stored content does not match its recorded hash, or the store is inconsistent."""


class NotFittedError(RaymlopsError, ValueError):
    """A learned object was used before ``fit``."""


class StepFailed(RaymlopsError):
    """A pipeline step failed; ``step`` names it and ``__cause__`` is the user's exception."""

    def __init__(self, step: str, message: str) -> None:
        super().__init__(f"step '{step}' failed: {message}")
        self.step = step


class ServeError(RaymlopsError):
    """The model could not be deployed or did not answer."""


class Terminated(KeyboardInterrupt):
    """The process was asked to stop (SIGTERM: ``docker stop``, a Kubernetes eviction, ``timeout``):
    an interruption like Ctrl-C, which the CLI ends with exit 143 (128 + 15)."""


def raise_terminated(signum: int, frame: object) -> None:
    """A SIGTERM handler: raise :class:`Terminated` where the main thread is."""
    raise Terminated("terminated (SIGTERM)")
