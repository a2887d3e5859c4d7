"""Malformed HTTP answered as an OperationOutcome and logged as the client's mistake.

aiohttp answers a request it cannot parse (a repeated `Host` header, a header line over
8190 bytes, a broken request line, an unknown method) itself, before any handler or
middleware runs. Left to itself it answers `text/plain` quoting the client's own bytes
as a Python repr, names its version in `Server`, and logs the request as ERROR with a
full traceback, as if the gateway had failed. The gateway listens with
`OutcomeRequestHandler` instead, which answers these as every other error is answered
(an OperationOutcome, `application/fhir+json`, in the gateway's words, never the
request's), as does the application for the few errors aiohttp answers before its
middlewares (`as_the_gateway`), and gives aiohttp its own logger, whose filter turns
these records into one WARNING line without traceback. On a public port such requests
are ordinary noise that must not drown real errors or fill the log. Every other record
passes as it is.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from aiohttp.web_request import BaseRequest

from shared.fhir.errors import Issue, operation_outcome_bytes
from shared.fhir.resources import FHIR_JSON

MAX_DETAIL = 300
"""aiohttp's description may quote the offending bytes: enough to recognise them."""
SERVER_NAME = "barnebro"
"""The `Server` header of every answer: the software, not its version or its libraries'."""


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


def protocol_issue(status: int) -> Issue:
    """What an answer aiohttp gives itself says: by its status only, because the
    description it has may quote the request."""
    if status == HTTPStatus.GATEWAY_TIMEOUT:
        return Issue("timeout", "The request was not answered in time")
    if status >= 500:
        return Issue("exception", "The request could not be answered")
    if status == HTTPStatus.NOT_IMPLEMENTED:
        return Issue("not-supported", "The request's method is not supported")
    return Issue("structure", "The request is not well-formed HTTP/1.1")


class OutcomeRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, with the answers it gives itself as OperationOutcomes."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # aiohttp's own: logs, and refuses when part of an answer is already sent
        super().handle_error(request, status, exc, message)
        response = web.Response(
            status=status,
            body=operation_outcome_bytes([protocol_issue(status)]),
            headers={"Content-Type": FHIR_JSON, "Server": SERVER_NAME},
        )
        response.force_close()
        return response


async def as_the_gateway(request: web.Request, response: web.StreamResponse) -> None:
    """`on_response_prepare`: every answer the application gives names only barnebro, and
    an error aiohttp made before the middlewares ran (a 417 for an `Expect` other than
    `100-continue`, in plain text quoting the header) is an OperationOutcome instead."""
    response.headers["Server"] = SERVER_NAME
    if isinstance(response, web.HTTPException) and response.status >= 400:
        if response.status == HTTPStatus.EXPECTATION_FAILED:
            issue = Issue("not-supported", "The only expectation supported is 100-continue")
        else:
            issue = protocol_issue(response.status)
        response.headers.pop("Content-Length", None)
        response.headers["Content-Type"] = FHIR_JSON
        response.body = operation_outcome_bytes([issue])
