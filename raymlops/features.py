"""How a feature value becomes the number a model takes (a bottom module: standard library only).

Numbers are taken as they are. A string feature is a category, and every model takes it as its
:func:`category_code`: a number that depends on the value alone, not on a vocabulary, so the same
value has the same code in every table (:func:`raymlops.data.schema.category_codes`), snapshot,
request (:mod:`raymlops.serve.request`) and model version. The model's own pipeline one-hot encodes
those codes (:func:`raymlops.train.search.build_estimator`), so a category it never saw sets no
column; its signature lists the categories it was trained on.

Also :func:`delimiter_hint`: what to say when a CSV was read as one column (the schema step and
the offline check name the columns a config or a check asked for).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def category_code(value: str) -> float:
    """The first 52 bits of the value's BLAKE2b digest (UTF-8), exact in a double."""
    return float(int.from_bytes(hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest(), "big") >> 12)


def delimiter_hint(names: Sequence[str]) -> str:
    """A hint when a CSV was read as one column whose name holds another separator (a file saved
    with ';', as spreadsheets in many locales write it, or tabs); CSV sources are read with commas."""
    if len(names) == 1:
        found = next((d for d in (";", "\t", "|") if d in names[0]), None)
        if found is not None:
            return (f"; the file was read as one column: its values look separated by {found!r}, not commas "
                    "(save it as CSV with commas, or as Parquet)")
    return ""
