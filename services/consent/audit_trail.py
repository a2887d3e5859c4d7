"""Storing the audit trail: every audit record a service wrote becomes an AuditEvent.

Services put an audit record on the audit stream before they release patient
information. This consumer stores each record as a FHIR AuditEvent with the record's id,
so a redelivered record is stored once, searchable by patient, agent, date, outcome and
basis. An emergency access also raises an `emergency-access` event for after-the-fact
review (the AuditEvent definition's events).
"""

from __future__ import annotations

import logging
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from pydantic import ValidationError

from services.consent.audit_events import audit_event
from services.consent.handlers import service_update
from shared.access.audit import AuditBatch, AuditRecord
from shared.config import Settings
from shared.events import audit_subject_filter
from shared.fhir.errors import FhirError
from shared.fhir.resources import validate_resource
from shared.fhir.service import FhirService
from shared.transport.consumer import DurableConsumer

log = logging.getLogger(__name__)


class AuditTrail:
    def __init__(self, fhir: FhirService, nc: NATS, settings: Settings) -> None:
        self._fhir = fhir
        self.consumer = DurableConsumer(
            nc,
            stream=settings.audit_stream_name,
            durable="consent-audit-trail",
            subject=audit_subject_filter(settings.nats_prefix),
            handler=self.store,
            dead_letters=settings.nats_prefix,
        )

    async def start(self) -> None:
        await self.consumer.start()

    async def stop(self) -> None:
        await self.consumer.stop()

    async def store(self, messages: list[Msg]) -> None:
        records: list[AuditRecord] = []
        for message in messages:
            try:
                records += AuditBatch.model_validate_json(message.data).records
            except ValidationError:
                # Only barnebro services publish here; an unreadable message stays on the
                # stream for inspection rather than blocking the trail.
                continue
        # `audit_event` makes only valid AuditEvents (tests/test_audit_event_shape.py)
        events = [audit_event(record) for record in records]
        # A batch delivered for the first time was never stored: it is not looked for. (A
        # record stored all the same, by a message republished, fails the batch; its
        # redelivery looks.)
        again = any((message.metadata.num_delivered or 1) > 1 for message in messages)
        await store_audit_events(self._fhir, events, validated=True, maybe_stored=again)


async def store_audit_events(
    fhir: FhirService,
    events: list[dict[str, Any]],
    *,
    validated: bool = False,
    maybe_stored: bool = True,
) -> None:
    """Store AuditEvents under their own ids, in one transaction: one already stored (a
    redelivery) is left as it is. One that cannot be stored must not hold back the trail:
    it stays on its stream, and the error is logged for an operator. `validated`: made by
    code that makes only valid ones, so not parsed against the FHIR model again.
    `maybe_stored`: False when none can have been stored before, so none is looked for (one
    that was after all makes the transaction fail, and nothing is stored)."""
    if not events:
        return
    async with fhir.unit_of_work(service_update("AuditEvent", events[0]["id"])) as uow:
        new = events
        if maybe_stored:
            stored = await uow.existing("AuditEvent", [event["id"] for event in events])
            new = [event for event in events if event["id"] not in stored]
        if not validated:
            new = [event for event in new if _valid(event)]
        await uow.save_new(new, validated=True)


def _valid(event: dict[str, Any]) -> bool:
    try:
        validate_resource(event, "AuditEvent")
    except FhirError as exc:
        log.error("AuditEvent %s cannot be stored: %s", event["id"], exc.issues)
        return False
    return True
