"""Sending a FHIR request to its service over NATS request/reply (the gateway's
forwarding, and one service asking another, e.g. consent reading the directory).

A service that is not running answers "no responders" at once (503); one that does not
answer in time gives 504. Both come back as OperationOutcomes, never as a hang.
"""

from __future__ import annotations

import time
from typing import Protocol

import nats.errors
from nats.aio.client import Client as NATS
from opentelemetry import trace

from shared.fhir.errors import FhirError, error
from shared.metrics import nats_request_duration
from shared.telemetry import span, trace_context
from shared.transport.wire import REQUEST_HEADER, FhirRequest, FhirResponse, decode_response

tracer = trace.get_tracer("barnebro.transport")


class Sender(Protocol):
    """Sends one request to the service that owns its subject and returns its answer
    (`Forwarder` over NATS; a test may answer in-process)."""

    async def send(self, subject: str, request: FhirRequest, body: bytes) -> FhirResponse: ...


class Forwarder:
    def __init__(self, nc: NATS, timeout: float) -> None:
        self._nc = nc
        self._timeout = timeout

    async def send(self, subject: str, request: FhirRequest, body: bytes) -> FhirResponse:
        with span(
            tracer,
            f"send {request.interaction}",
            kind=trace.SpanKind.CLIENT,
            attributes={"messaging.destination.name": subject},
        ):
            headers = {
                REQUEST_HEADER: request.model_dump_json(exclude_defaults=True),
                **trace_context(),
            }
            began = time.perf_counter()
            outcome = "ok"
            try:
                reply = await self._nc.request(
                    subject, body, timeout=self._timeout, headers=headers
                )
            except nats.errors.NoRespondersError as exc:
                outcome = "no-responders"
                raise _unavailable(503, "is not running (no instance answered)", subject) from exc
            except nats.errors.TimeoutError as exc:
                outcome = "timeout"
                raise _unavailable(504, f"did not answer within {self._timeout}s", subject) from exc
            except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError,
                    nats.errors.OutboundBufferLimitError) as exc:  # fmt: skip
                outcome = "unavailable"
                raise _unavailable(503, "cannot be reached (NATS unavailable)", subject) from exc
            finally:
                nats_request_duration.record(
                    time.perf_counter() - began,
                    {"messaging.destination.name": subject, "outcome": outcome},
                )
            return decode_response(reply.data, reply.headers)


def _unavailable(status: int, what: str, subject: str) -> FhirError:
    exc = error(status, "transient", f"The service for {subject.rsplit('.', 1)[-1]} {what}")
    exc.headers["Retry-After"] = "1"
    return exc
