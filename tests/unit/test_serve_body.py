"""Request bodies in a Content-Encoding (raymlops.serve.body): gzip and deflate decompressed within
the body limit, anything else named; pure, no Serve."""

from __future__ import annotations

import asyncio
import gzip
import zlib
from typing import Any

import pytest

from raymlops.serve.body import decode_content, read_body
from raymlops.serve.request import RequestError

BODY = b'{"inputs": [[1, 2, 3]]}'


# mtime=0 and ids: a gzip member records its time, so ids made of the bytes differed between the two
# test processes when they collected in different seconds (xdist then refuses the run)
@pytest.mark.parametrize(("encoding", "packed"), [
    (None, BODY), ("identity", BODY), ("gzip", gzip.compress(BODY, mtime=0)), ("GZIP ", gzip.compress(BODY, mtime=0)),
    ("deflate", zlib.compress(BODY)),
], ids=["none", "identity", "gzip", "gzip-upper-spaced", "deflate"])
def test_decoded(encoding: str | None, packed: bytes) -> None:
    assert decode_content(packed, encoding, 1000) == BODY


def _error(raw: bytes, encoding: str, limit: int = 1000) -> RequestError:
    with pytest.raises(RequestError) as info:
        decode_content(raw, encoding, limit)
    return info.value


def test_refused_named_and_bounded() -> None:
    err = _error(BODY, "br")
    assert err.status == 415 and "Content-Encoding 'br' is not supported" in err.message and "gzip" in err.message
    assert _error(b"\x1f\x8bnot gzip", "gzip").status == 400
    assert _error(gzip.compress(BODY)[:-12], "gzip").error == "malformed_body"  # cut short
    bomb = gzip.compress(b" " * 1_000_000)  # 1 MB of spaces in about 1 KB
    err = _error(bomb, "gzip", limit=10_000)
    assert err.status == 413 and "inflates past the limit of 10000 bytes" in err.message


class _Request:
    def __init__(self, body: bytes, headers: dict[str, str]) -> None:
        self.headers, self._body = headers, body

    async def stream(self) -> Any:
        for i in range(0, len(self._body), 7):
            yield self._body[i:i + 7]


def test_read_body_limits_the_bytes_sent_then_decodes() -> None:
    packed = gzip.compress(BODY)
    got = asyncio.run(read_body(_Request(packed, {"content-encoding": "gzip"}), 1000))
    assert got == BODY
    with pytest.raises(RequestError) as info:
        asyncio.run(read_body(_Request(BODY, {"content-length": "5000"}), 1000))
    assert info.value.status == 413
    with pytest.raises(RequestError) as info:
        asyncio.run(read_body(_Request(b"x" * 2000, {}), 1000))
    assert info.value.status == 413
