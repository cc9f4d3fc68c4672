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


def csv_read_error(exc: BaseException) -> RaymlopsError | None:
    """Ray Data's "Failed to read CSV file" error in ``exc``'s chain, as a ValidationError naming the
    file and pyarrow's reason: Ray drops the reason (its advice names ``partition_filter``, an
    option of ``ray.data.read_csv`` raymlops does not have), so the file is parsed again here,
    streaming, to find it (local files only)."""
    found = next((m for e in exception_chain(exc) if (m := _RAY_CSV.search(str(e)))), None)
    if found is None:
        return None
    path = found.group(1)
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


def json_read_error(exc: BaseException, source: str) -> RaymlopsError | None:
    """A JSON decoding error from Ray Data's reader of the local JSON source ``source`` (a file or a
    folder), as a ValidationError naming the file and pyarrow's reason: Ray falls back to Python's
    ``json`` when pyarrow refuses a file, and that one's "Extra data: line 2" hid the reason (a
    field that is a number in one row and text in another, a truncated line)."""
    import json
    from pathlib import Path

    if not any(isinstance(e, json.JSONDecodeError) for e in exception_chain(exc)):
        return None
    import pyarrow as pa
    import pyarrow.json as pjson

    root = Path(source)
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    for path in files:
        if path.suffix.lower() not in (".json", ".jsonl", ".ndjson") or not path.is_file():
            continue
        try:
            pjson.read_json(path)
        except pa.ArrowInvalid as err:
            return exceptions.ValidationError(f"data.source: cannot read {path} as JSON lines: "
                                              f"{str(err).splitlines()[0]}")
        except OSError:
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
        inner = inner_error(exc) or csv_read_error(exc)
        if inner is None:
            raise
        raise inner.with_traceback(None) from None
