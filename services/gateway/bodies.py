"""Reading a request body at the gateway: the media types it takes, and its
`Content-Encoding` decoded here, so that a body that does not decode is the client's error
(400, as an OperationOutcome) rather than a dropped connection or a crash, and a
compressed body cannot grow past `BARNEBRO_MAX_BODY_BYTES` once decoded.

aiohttp's own decoding is switched off for the gateway (`services.gateway.server`): it
answers a broken `deflate` body by closing the connection and an unknown coding in plain
text.
"""

from __future__ import annotations

import zlib

from aiohttp import web

from shared.fhir.errors import error
from shared.fhir.resources import FHIR_JSON

JSON_TYPES = frozenset({"application/fhir+json", "application/json", "application/json+fhir"})
FORM = "application/x-www-form-urlencoded"
BODY_LIMIT: web.AppKey[int] = web.AppKey("body_limit", int)
"""The most bytes a body may have, as sent and once decoded (`BARNEBRO_MAX_BODY_BYTES`)."""
WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def decoded(body: bytes, encoding: str, limit: int) -> bytes:
    """`body` with its content codings undone (the last applied first)."""
    codings = [c.strip().lower() for c in encoding.split(",") if c.strip()]
    for coding in reversed(codings):
        if coding == "identity":
            continue
        if coding not in WBITS:
            raise error(
                415,
                "not-supported",
                f"Content-Encoding {coding!r} is not supported; use gzip or deflate",
            )
        body = _inflate(body, coding, limit)
    return body


def _inflate(body: bytes, coding: str, limit: int) -> bytes:
    # `deflate` is zlib-wrapped by the standard, raw in some clients: try both.
    for wbits in (WBITS[coding], -zlib.MAX_WBITS) if coding == "deflate" else (WBITS[coding],):
        inflater = zlib.decompressobj(wbits)
        try:
            out = inflater.decompress(body, limit + 1)
        except zlib.error:
            continue
        if len(out) > limit or inflater.unconsumed_tail:
            raise error(413, "too-costly", f"The decoded request body is over {limit} bytes")
        if inflater.eof and not inflater.unused_data:
            return out
    raise error(400, "invalid", f"The request body does not decode as Content-Encoding {coding}")


async def read_body(
    request: web.Request, types: frozenset[str] = JSON_TYPES, expected: str = FHIR_JSON
) -> bytes:
    content_type = request.content_type
    if request.can_read_body and content_type not in types:
        raise error(
            415, "not-supported", f"Content-Type {content_type} is not supported; use {expected}"
        )
    body = await request.read()
    encoding = request.headers.get("Content-Encoding", "")
    return decoded(body, encoding, request.app[BODY_LIMIT]) if encoding else body
