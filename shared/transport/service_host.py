"""Serving FHIR interactions from NATS: one queue group per service, many instances.

A `ServiceHost` subscribes to the request subjects of the resource types its service owns
and to the service's bundle subject, runs each request in its own task (bounded: clients'
requests and other barnebro services' requests each have places of their own), and
always answers: a `FhirError` becomes its OperationOutcome, anything unexpected a 500
OperationOutcome with the trace id. It also registers the service's capabilities in the
JetStream key-value registry, where the gateway finds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import KeyValueConfig
from nats.js.client import JetStreamContext
from nats.js.errors import BucketNotFoundError
from nats.js.kv import KeyValue
from opentelemetry import trace

from shared.fhir.errors import FhirError, Issue, operation_outcome_bytes
from shared.fhir.resources import FHIR_JSON
from shared.metrics import fhir_request_duration
from shared.telemetry import span
from shared.transport.places import Places, Refused
from shared.transport.wire import (
    REQUEST_HEADER,
    FhirRequest,
    FhirResponse,
    bundle_subject,
    encode_response,
    operation_subject,
    ready_subject,
    request_subject,
    status_subject,
)

log = logging.getLogger(__name__)
tracer = trace.get_tracer("barnebro.transport")

Handler = Callable[[FhirRequest, bytes], Awaitable[FhirResponse]]
SERVICE_PLACES = 32
"""Requests from other barnebro services served at once, beside the clients' places. A
client's request may wait for another service while it holds its place (the directory's
change of authority waits for the consent service, which reads the child from the
directory): that service's requests must never queue behind it."""
MAX_WAITING = 1024
"""Requests waiting for a place, at most, in each of the two queues: any more are answered
503 at once rather than queued for longer than anyone waits for them."""


def internal_error_issue(span: Any) -> Issue:
    """The issue of a 500: names the trace when there is one, to find the logs."""
    context = span.get_span_context()
    where = f"; trace id {context.trace_id:032x}" if context.is_valid else ""
    return Issue("exception", f"Internal error{where}")


def error_response(exc: FhirError) -> FhirResponse:
    headers = {"Content-Type": FHIR_JSON, **exc.headers}
    return FhirResponse(
        status=exc.status, headers=headers, body=operation_outcome_bytes(exc.issues)
    )


class ServiceHost:
    def __init__(
        self,
        nc: NATS,
        *,
        prefix: str,
        service: str,
        resource_types: list[str],
        handler: Handler,
        max_concurrency: int = 64,
        ready: Callable[[], bool] = lambda: True,
        status: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    ) -> None:
        """`ready`: whether the service can serve now (its consent mirror loaded); asked by
        the gateway's readiness check on `ready_subject` (one instance answers). `status`:
        how this instance stands, asked of every instance on `status_subject`."""
        self._nc = nc
        self._prefix = prefix
        self._service = service
        self._types = resource_types
        self._handler = handler
        self._ready = ready
        self._status = status
        self._places = Places(max_concurrency, MAX_WAITING)
        self._service_places = Places(SERVICE_PLACES, MAX_WAITING)
        self._tasks: set[asyncio.Task[None]] = set()
        self._subscriptions: list[Subscription] = []

    async def start(self) -> None:
        queue = f"{self._prefix}.{self._service}"
        subjects = [request_subject(self._prefix, t) for t in self._types]
        subjects.append(bundle_subject(self._prefix, self._service))
        subjects.append(operation_subject(self._prefix, self._service))
        for subject in subjects:
            self._subscriptions.append(
                await self._nc.subscribe(subject, queue=queue, cb=self._on_message)
            )
        self._subscriptions.append(
            await self._nc.subscribe(
                ready_subject(self._prefix, self._service), queue=queue, cb=self._on_ready
            )
        )
        self._subscriptions.append(
            await self._nc.subscribe(
                status_subject(self._prefix, self._service), cb=self._on_status
            )
        )
        await self._nc.flush()

    async def _on_status(self, msg: Msg) -> None:
        if not msg.reply:
            return
        answer: dict[str, Any] = {"service": self._service, "ready": self._ready()}
        if self._status is not None:
            with contextlib.suppress(Exception):
                answer.update(await self._status())
        with contextlib.suppress(Exception):
            await self._nc.publish(msg.reply, orjson.dumps(answer))

    async def _on_ready(self, msg: Msg) -> None:
        if msg.reply:
            answer = {"service": self._service, "ready": self._ready()}
            with contextlib.suppress(Exception):
                await self._nc.publish(msg.reply, orjson.dumps(answer))

    async def stop(self) -> None:
        """Stop taking requests, refuse those still waiting for a place (503), and finish
        those under way."""
        for subscription in self._subscriptions:
            await subscription.unsubscribe()
        self._subscriptions.clear()
        self._places.refuse_waiting()
        self._service_places.refuse_waiting()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _on_message(self, msg: Msg) -> None:
        """Never waits (`shared.transport.places`)."""
        request = _request_of(msg)
        places: Places | None = None
        place: asyncio.Future[None] | None = None
        if isinstance(request, FhirRequest):
            from_service = request.caller.credential == "service"
            places = self._service_places if from_service else self._places
            place = places.take()
            if place is None:
                request, places = busy(), None
        task = asyncio.create_task(self._serve(msg, request, places, place))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(
        self,
        msg: Msg,
        request: FhirRequest | FhirError,
        places: Places | None,
        place: asyncio.Future[None] | None,
    ) -> None:
        if places is None or place is None:
            await self._answer(msg, request)
            return
        try:
            await place
        except Refused:
            await self._answer(msg, busy())
            return
        except asyncio.CancelledError:
            if place.done() and not place.cancelled():
                places.give_back()  # handed over as this request was cancelled
            raise
        try:
            await self._answer(msg, request)
        finally:
            places.give_back()

    async def _answer(self, msg: Msg, request: FhirRequest | FhirError) -> None:
        try:
            headers = msg.headers or {}
            with span(
                tracer,
                f"{self._service} handle",
                kind=trace.SpanKind.SERVER,
                parent=headers,
                attributes={"messaging.destination.name": msg.subject},
            ) as current:
                response = await self._respond(request, msg.data, current)
            payload, reply_headers = encode_response(response)
            if len(payload) + 4096 > self._nc.max_payload:
                log.error("reply of %d bytes exceeds the NATS max_payload", len(payload))
                payload, reply_headers = encode_response(
                    error_response(
                        FhirError(500, [Issue("too-costly", "The reply is too large to send")])
                    )
                )
            if msg.reply:
                await self._nc.publish(msg.reply, payload, headers=reply_headers)
        except Exception:
            log.exception("could not answer a request on %s", msg.subject)

    async def _respond(
        self, request: FhirRequest | FhirError, body: bytes, span: Any
    ) -> FhirResponse:
        if isinstance(request, FhirError):
            return error_response(request)
        span.set_attribute("fhir.interaction", request.interaction)
        began = time.perf_counter()
        try:
            response = await self._handler(request, body)
        except FhirError as exc:
            response = error_response(exc)
        except Exception:
            log.exception("internal error serving %s", request.interaction)
            response = error_response(FhirError(500, [internal_error_issue(span)]))
        fhir_request_duration.record(
            time.perf_counter() - began,
            {"barnebro.service": self._service, "fhir.interaction": request.interaction,
             "fhir.resource_type": request.resource_type or "",
             "http.response.status_code": response.status},
        )  # fmt: skip
        return response


def busy() -> FhirError:
    return FhirError(
        503, [Issue("transient", "The service is busy; try again")], headers={"Retry-After": "1"}
    )


def _request_of(msg: Msg) -> FhirRequest | FhirError:
    try:
        return FhirRequest.model_validate_json((msg.headers or {})[REQUEST_HEADER])
    except (KeyError, ValueError):
        return FhirError(400, [Issue("structure", "Malformed request")])


async def register_capabilities(
    nc: NATS, bucket: str, service: str, capability: dict[str, Any], replicas: int = 1
) -> None:
    """Publish this service's capabilities into the registry bucket."""
    js = nc.jetstream()
    kv = await ensure_bucket(js, bucket, replicas)
    await kv.put(service, orjson.dumps(capability))


async def ensure_bucket(js: JetStreamContext, bucket: str, replicas: int = 1) -> KeyValue:
    """The registry bucket, created on first use."""
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        return await js.create_key_value(KeyValueConfig(bucket=bucket, replicas=replicas))
