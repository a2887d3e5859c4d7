"""Domain events: the envelope every service publishes and the subjects they go to.

Subjects: `<prefix>.events.<service>.<ResourceType>.<event>.<partition>`, where the
partition is the id of the Patient the resource is about (or `_` when it is about no
patient). One patient's events therefore share a subject suffix and keep their order.
Payloads never carry personal identifiers in subjects.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Iterable, Iterator
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from shared import clock

log = logging.getLogger(__name__)

NO_PATIENT = "_"
_SUBJECT_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def subject_token(text: str) -> str:
    """`text` if it is safe as one NATS subject token, otherwise a digest of it: a subject
    must never contain `.`, `*`, `>` or white space, whatever a client put in a reference."""
    if _SUBJECT_TOKEN.fullmatch(text):
        return text
    return "h" + hashlib.sha256(text.encode()).hexdigest()[:32]


class EventAccess(BaseModel):
    """Who may learn of an event: the access columns of the version that raised it (its
    data category, the organisation that wrote it and those named on it). A consumer that
    passes events on (the subscriptions service) decides on these with the consent rules;
    an event about a patient without them is passed to no one."""

    category: str | None = None
    author: str | None = None
    parties: list[str] = Field(default_factory=list)


class DomainEvent(BaseModel):
    """The envelope of one domain event, as published to JetStream."""

    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    type: str
    source: str
    time: str = Field(default_factory=lambda: clock.now().isoformat())
    resource_type: str
    resource_id: str
    version_id: str
    patient: str | None = None
    trace_context: dict[str, str] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    access: EventAccess | None = None

    @property
    def name(self) -> str:
        """The last part of the type, e.g. `created` or `care-order-started`."""
        return self.type.rsplit(".", 1)[-1]

    def subject(self, prefix: str) -> str:
        return ".".join(
            (
                prefix,
                "events",
                subject_token(self.source),
                subject_token(self.resource_type),
                subject_token(self.name),
                subject_token(self.patient) if self.patient else NO_PATIENT,
            )
        )


def readable_events(payloads: Iterable[bytes]) -> Iterator[DomainEvent]:
    """The events among `payloads`, in order; one that is not a DomainEvent is logged and
    passed over (acknowledging it with its batch): it cannot become readable by retrying."""
    for payload in payloads:
        try:
            yield DomainEvent.model_validate_json(payload)
        except ValidationError:
            log.error("ignoring an unreadable event (%d bytes)", len(payload))


def events_subject_filter(prefix: str) -> str:
    """The subjects the event stream holds."""
    return f"{prefix}.events.>"


def audit_subject_filter(prefix: str) -> str:
    """The subjects the audit stream holds (`shared.access.audit`)."""
    return f"{prefix}.audit.>"
