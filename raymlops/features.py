"""How a feature value becomes the number a model takes (a bottom module: standard library only).

Numbers are taken as they are. A string feature is a category, and every model takes it as its
:func:`category_code`: a number that depends on the value alone, not on a vocabulary, so the same
value has the same code in every table (:func:`raymlops.data.schema.category_codes`), snapshot,
request (:mod:`raymlops.serve.request`) and model version. The model's own pipeline one-hot encodes
those codes (:func:`raymlops.train.search.build_estimator`), so a category it never saw sets no
column; its signature lists the categories it was trained on.
"""

from __future__ import annotations

import hashlib


def category_code(value: str) -> float:
    """The first 52 bits of the value's BLAKE2b digest (UTF-8), exact in a double."""
    return float(int.from_bytes(hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest(), "big") >> 12)
