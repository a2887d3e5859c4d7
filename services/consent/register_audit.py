"""The audit trail of the facts access rests on: every change to the register of
organisations, to parental responsibility and to care orders becomes an AuditEvent.

The directory writes each change with its events in one transaction (the outbox), so
following its events loses none; the AuditEvent takes the event's id, so a redelivered
event is stored once. The agent is whoever made the change: the operator, the population
register, or the barnevernstjeneste holding a care order. Searchable by the operator like
every AuditEvent (`subtype`, `date`, `entity`); an organisation finds its own changes.
"""

from __future__ import annotations

from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from services.consent.audit_events import AUDIT_TYPE_SYSTEM, INTERACTION_SYSTEM, OBJECT_ROLE_SYSTEM
from services.consent.audit_trail import store_audit_events
from shared.config import Settings
from shared.events import DomainEvent, readable_events
from shared.fhir.service import FhirService
from shared.identifiers import ORGNR_SYSTEM
from shared.transport.consumer import DurableConsumer

AUDITED = {
    ("Organization", "created"): "create",
    ("Organization", "updated"): "update",
    ("Organization", "deleted"): "delete",
    ("RelatedPerson", "created"): "create",
    ("RelatedPerson", "updated"): "update",
    ("RelatedPerson", "deleted"): "delete",
    ("Patient", "care-order-started"): "update",
    ("Patient", "care-order-ended"): "update",
    ("Patient", "care-started"): "update",
}
"""(resource type, event) → interaction: the changes to what access rests on."""
ACTIONS = {"create": "C", "update": "U", "delete": "D"}
FACT = {
    "Organization": "the register of organisations",
    "RelatedPerson": "parental responsibility (population register)",
    "Patient": "a care order or who has the child in care",
}


def _agent(actor: dict[str, Any]) -> dict[str, Any]:
    agent: dict[str, Any] = {"requestor": True}
    credential = actor.get("credential", "organisation")
    if actor.get("orgnr") and credential == "organisation":
        agent["who"] = {"identifier": {"system": ORGNR_SYSTEM, "value": actor["orgnr"]}}
    else:
        agent["who"] = {"display": f"barnebro {credential}"}
    if actor.get("client_id"):
        agent["altId"] = str(actor["client_id"])
    return agent


def register_event(event: DomainEvent) -> dict[str, Any] | None:
    """The AuditEvent of one directory event, or None for what is not audited here.
    Always a valid AuditEvent (tests/test_audit_event_shape.py), so it is stored without
    being parsed against the FHIR model again."""
    interaction = AUDITED.get((event.resource_type, event.name))
    if interaction is None:
        return None
    what = f"{event.resource_type}/{event.resource_id}/_history/{event.version_id}"
    entities: list[dict[str, Any]] = [
        {"what": {"reference": what}, "role": {"system": OBJECT_ROLE_SYSTEM, "code": "4"}}
    ]
    if event.patient:
        entities.insert(
            0,
            {
                "what": {"reference": f"Patient/{event.patient}"},
                "role": {"system": OBJECT_ROLE_SYSTEM, "code": "1"},
            },
        )
    actor = event.data.get("actor") if isinstance(event.data.get("actor"), dict) else {}
    return {
        "resourceType": "AuditEvent",
        "id": event.id,
        "type": {"system": AUDIT_TYPE_SYSTEM, "code": "rest"},
        "subtype": [{"system": INTERACTION_SYSTEM, "code": interaction}],
        "action": ACTIONS[interaction],
        "recorded": event.time,
        "outcome": "0",
        "outcomeDesc": (
            f"Changed {FACT[event.resource_type]}: {event.name}"
            + (f" ({event.data['reason']})"[:900] if event.data.get("reason") else "")
        ),
        "agent": [_agent(actor or {})],
        "source": {"observer": {"display": "barnebro-directory"}},
        "entity": entities,
    }


def register_audit(fhir: FhirService, nc: NATS, settings: Settings) -> DurableConsumer:
    """The durable consumer that stores an AuditEvent for every audited directory change."""

    async def store(messages: list[Msg]) -> None:
        audits = (register_event(e) for e in readable_events(m.data for m in messages))
        await store_audit_events(
            fhir, [audit for audit in audits if audit is not None], validated=True
        )

    return DurableConsumer(
        nc,
        stream=settings.stream_name,
        durable="consent-register-audit",
        subject=f"{settings.nats_prefix}.events.directory.>",
        handler=store,
        dead_letters=settings.nats_prefix,
    )
