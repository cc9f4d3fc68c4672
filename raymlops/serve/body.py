"""A request's body: read up to the configured limit and decompressed as its Content-Encoding says
(pure: no Ray; the Starlette request is duck-typed)."""

from __future__ import annotations

import zlib
from typing import Any

from raymlops.serve.request import RequestError

__all__ = ["CONTENT_ENCODINGS", "decode_content", "read_body"]

#: Content-Encoding values a request body may come in (Triton's HTTP server takes the same two)
CONTENT_ENCODINGS = ("gzip", "deflate")


def decode_content(raw: bytes, encoding: str | None, max_bytes: int) -> bytes:
    """``raw`` decompressed as its Content-Encoding says (gzip, deflate; none or ``identity``: as it
    is), to at most ``max_bytes`` (a small body that inflates past the limit is a 413, not a
    memory spike). Another encoding is a 415 naming it; a body that does not decompress, a 400."""
    name = (encoding or "").strip().lower()
    if name in ("", "identity"):
        return raw
    if name not in CONTENT_ENCODINGS:
        raise RequestError(415, "unsupported_media_type", f"Content-Encoding {name[:40]!r} is not supported; "
                           f"send the body uncompressed or as {' or '.join(CONTENT_ENCODINGS)}")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if name == "gzip" else zlib.MAX_WBITS)
    try:
        out = inflater.decompress(raw, max_bytes + 1)
    except zlib.error as exc:
        raise RequestError(400, "malformed_body", f"the body is not valid {name} data ({exc})") from None
    if len(out) > max_bytes:
        raise RequestError(413, "payload_too_large", f"the {name} body inflates past the limit of {max_bytes} bytes")
    if not inflater.eof:
        raise RequestError(400, "malformed_body", f"the {name} body ends before its compressed stream does")
    return out


async def read_body(request: Any, max_bytes: int) -> bytes:
    """The body of a Starlette ``request``, at most ``max_bytes`` (413 as soon as the declared
    Content-Length or the bytes received say more), decompressed as its Content-Encoding says
    (:func:`decode_content`)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise RequestError(400, "bad_request", f"Content-Length {declared[:32]!r} is not a number") from None
        if size > max_bytes:
            raise RequestError(413, "payload_too_large", f"body of {size} bytes exceeds the limit of {max_bytes}")
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > max_bytes:
            raise RequestError(413, "payload_too_large", f"body exceeds the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return decode_content(b"".join(chunks), request.headers.get("content-encoding"), max_bytes)
