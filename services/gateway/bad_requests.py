"""Malformed HTTP logged as the client's mistake, not as a failure of the gateway.

aiohttp answers a request it cannot parse (a repeated `Host` header, a header line over
8190 bytes, a broken request line) with 400 itself, before any handler runs, and logs it
through the server's logger as ERROR with a full traceback, as if the gateway had failed.
On a public port such requests are ordinary noise that must not drown real errors or fill
the log: the gateway gives aiohttp its own logger, whose filter turns these records into one
WARNING line without traceback. Every other record passes as it is.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import BadHttpMessage

MAX_DETAIL = 300
"""aiohttp's description may quote the offending bytes: enough to recognise them."""


class BadRequestFilter(logging.Filter):
    """Rewrites aiohttp's record of an unparseable request as a one-line warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, BadHttpMessage):
            detail = " ".join(str(exc.message).split())[:MAX_DETAIL]
            said = record.getMessage().replace("Error handling request", "Malformed request")
            record.msg, record.args = "%s answered 400: %s", (said, detail)
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


def http_logger() -> logging.Logger:
    """The logger the gateway's HTTP server (aiohttp's request handler) writes to."""
    logger = logging.getLogger("services.gateway.http")
    if not any(isinstance(f, BadRequestFilter) for f in logger.filters):
        logger.addFilter(BadRequestFilter())
    return logger
