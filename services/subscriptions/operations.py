"""`$status` and `$events` on a Subscription (R5 Backport operations), for its owner.

`GET /fhir/Subscription/{id}/$status`: a Bundle with the SubscriptionStatus: status, how
many events have been numbered, what is still queued, and, while failing, since when,
why, and when the next attempt is.

`GET /fhir/Subscription/{id}/$events?eventsSinceNumber=&eventsUntilNumber=&content=`:
the numbered events in that range (at most `MAX_EVENTS`) as a notification Bundle of
type `query-event`, so a partner that was down fills its gaps. Each event is decided
with the consent rules again, now: what the partner may no longer see is left out.
"""

from __future__ import annotations

import re

from services.subscriptions.content import ResourceReader, subscriber_caller
from services.subscriptions.domain.notification import (
    NotifiedEvent,
    notification_bundle,
    status_resource,
)
from services.subscriptions.domain.settings import SubscriptionSettings, read_settings
from services.subscriptions.domain.vocabulary import CONTENTS
from services.subscriptions.gate import ConsentGate, focus_of
from services.subscriptions.queue import Delivery, DeliveryQueue
from shared.events import DomainEvent
from shared.fhir.answers import json_response, not_found
from shared.fhir.errors import error
from shared.fhir.parameters import operation_parameters
from shared.fhir.service import FhirService
from shared.transport.wire import FhirRequest, FhirResponse

STATUS = "$status"
EVENTS = "$events"
MAX_EVENTS = 500
WHOLE_NUMBER = re.compile(r"[0-9]{1,15}")


STATUS_PARAMETERS: frozenset[str] = frozenset()
EVENTS_PARAMETERS = frozenset({"eventsSinceNumber", "eventsUntilNumber", "content"})
IGNORED_PARAMETERS = frozenset({"_format", "_pretty"})


def _arguments(request: FhirRequest, body: bytes, known: frozenset[str]) -> list[tuple[str, str]]:
    """The operation's parameters, from the URL and (POST) a Parameters body: a malformed
    body or a parameter the operation does not take is a 400, checked before the
    Subscription is looked up, so it answers alike for every id."""
    given = [(k, v) for k, v in request.params if k not in IGNORED_PARAMETERS]
    if body.strip():
        parameters = operation_parameters(body, request.operation or "", known)
        given += [(name, str(value)) for name, value in parameters.items()]
    unknown = sorted({name for name, _ in given} - known)
    if unknown:
        takes = ", ".join(sorted(known)) or "no parameters"
        raise error(400, "not-supported", f"{request.operation} takes {takes}; not {unknown}")
    return given


def _number(params: list[tuple[str, str]], name: str) -> int | None:
    values = [v for k, v in params if k == name]
    if not values:
        return None
    if len(values) > 1 or not WHOLE_NUMBER.fullmatch(values[0]):
        raise error(400, "invalid", f"{name} takes one whole number (at most 15 digits)", name)
    return int(values[0])


class SubscriptionOperations:
    def __init__(
        self, fhir: FhirService, queue: DeliveryQueue, gate: ConsentGate, reader: ResourceReader
    ) -> None:
        self._fhir = fhir
        self._queue = queue
        self._gate = gate
        self._reader = reader

    def register(self) -> None:
        self._fhir.operations.update({STATUS: self.status, EVENTS: self.events})

    async def _subscription(self, request: FhirRequest) -> tuple[Delivery, SubscriptionSettings]:
        """The Subscription the operation is on, once the caller may see it: its delivery
        row and settings."""
        if request.resource_type != "Subscription" or not request.id:
            raise error(
                404, "not-supported", f"{request.operation} is an operation on a Subscription"
            )
        stored = await self._fhir.repository(request).read("Subscription", request.id)
        if stored is None or stored.deleted:
            raise not_found("Subscription", request.id)
        async with self._queue.db.reader() as conn:
            row = await self._queue.load(conn, request.id)
        settings = read_settings(row.resource, allow_http=True)[0] if row else None
        if row is None or settings is None:
            raise not_found("Subscription", request.id)
        return row, settings

    async def status(self, request: FhirRequest, body: bytes) -> FhirResponse:
        _arguments(request, body, STATUS_PARAMETERS)
        row, settings = await self._subscription(request)
        errors = []
        if row.failing_since:
            errors.append(f"Failing since {row.failing_since}: {row.last_error}")
            errors.append(f"Attempts failed in a row: {row.failures}; next at {row.due_at}")
        backlog = await self._queue.backlog(row.subscription)
        if backlog:
            errors.append(f"Events numbered and waiting to be delivered: {backlog}")
        found = status_resource(
            subscription=row.subscription,
            topic=settings.topic.url,
            status=row.status,
            kind="query-status",
            events_since_start=row.events_since_start,
            events=[],
            content="empty",
            base_url=request.base_url,
            errors=tuple(errors),
        )
        bundle = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": 1,
            "entry": [{"resource": found, "search": {"mode": "match"}}],
        }
        return json_response(200, bundle)

    async def events(self, request: FhirRequest, body: bytes) -> FhirResponse:
        params = _arguments(request, body, EVENTS_PARAMETERS)
        first = _number(params, "eventsSinceNumber") or 1
        until = _number(params, "eventsUntilNumber")
        if until is not None and until < first:
            raise error(400, "invalid", "eventsUntilNumber is before eventsSinceNumber")
        asked = [v for k, v in params if k == "content"]
        if len(asked) > 1 or (asked and asked[0] not in CONTENTS):
            raise error(400, "invalid", f"content must be one of {list(CONTENTS)}", "content")
        row, settings = await self._subscription(request)
        last = min(until if until is not None else row.events_since_start, first + MAX_EVENTS - 1)
        content = asked[0] if asked else settings.content
        subscriber = subscriber_caller(row.owner, row.owner_kind)
        released = []
        notified = []
        for number, raw in await self._queue.numbered(row.subscription, first, last):
            event = DomainEvent.model_validate_json(raw)
            decision = self._gate.decide(subscriber, event)
            if not decision.permit:
                continue
            focus = focus_of(event)
            resource_now = (
                await self._reader.version(subscriber, focus)
                if content == "full-resource"
                else None
            )
            notified.append(NotifiedEvent(number, event.time, focus, resource_now))
            released.append((event, decision))
        await self._gate.record(subscriber, released, "replay", f"{first}-{last}")
        found = status_resource(
            subscription=row.subscription,
            topic=settings.topic.url,
            status=row.status,
            kind="query-event",
            events_since_start=row.events_since_start,
            events=notified,
            content=content,
            base_url=request.base_url,
        )
        bundle = notification_bundle(found, notified, content, request.base_url)
        return json_response(200, bundle)
