"""raymlops' own errors raised inside Ray Data tasks, given back to the caller as themselves.

A :class:`ValidationError` raised by a batch function on a Ray worker reaches the driver
wrapped (``RayTaskError(UserCodeException)``, its cause chain holding the original); the
functions of :mod:`raymlops.data` re-raise the original, so callers catch what was raised.
"""

from __future__ import annotations

import re
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


_RAY_CSV = re.compile(r"Failed to read CSV file: (.+?)\. Please check the CSV file")
_JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")


def read_error(exc: BaseException, source: str) -> RaymlopsError | None:
    """Ray Data's error reading the local CSV or JSON source ``source`` (a file or a folder), as a
    ValidationError naming the file and pyarrow's reason, or None for any other error. Ray drops the
    reason: its CSV error advises ``partition_filter`` (an option of ``ray.data.read_csv`` raymlops
    does not have), and for JSON it falls back to Python's ``json``, whose "Extra data: line 2" hid a
    field that changes type or a truncated line. So the file is parsed again here, streaming."""
    import json

    csv = next((m for e in exception_chain(exc) if (m := _RAY_CSV.search(str(e)))), None)
    if csv is not None:
        return _csv_reason(csv.group(1))
    if any(isinstance(e, json.JSONDecodeError) for e in exception_chain(exc)):
        return _json_reason(source)
    return None


def _csv_reason(path: str) -> RaymlopsError:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    reason = ("Ray Data's block-by-block reader failed where pyarrow reads it whole: a column whose values "
              "change type after the first rows (numbers, then text) is the usual cause")
    try:
        with pcsv.open_csv(path) as reader:
            for _ in reader:
                pass
    except pa.ArrowInvalid as err:
        reason = str(err).splitlines()[0]
        if "Expected 1 columns, got" in reason:  # a one-column header, then commas: another separator
            reason += " (raymlops reads comma-separated CSV: a ';' or tab separated file needs converting)"
    except OSError:  # not a local file (s3://, hdfs://): Ray's words are all there is
        return exceptions.ValidationError(f"data.source: cannot read {path} as CSV (Ray Data gave no reason)")
    return exceptions.ValidationError(f"data.source: cannot read {path} as CSV: {reason}")


def _json_reason(source: str) -> RaymlopsError | None:
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.json as pjson

    root = Path(source)
    for path in sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]:
        if path.suffix.lower() not in _JSON_SUFFIXES:
            continue
        try:
            pjson.read_json(path)
        except pa.ArrowInvalid as err:
            return exceptions.ValidationError(f"data.source: cannot read {path} as JSON lines: "
                                              f"{str(err).splitlines()[0]}")
        except OSError:  # not a local file
            return None
    return None


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
