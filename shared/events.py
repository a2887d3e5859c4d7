"""Domain events: the envelope every service publishes and the subjects they go to.

Subjects: `<prefix>.events.<service>.<ResourceType>.<event>.<partition>`, where the
partition is the id of the Patient the resource is about (or `_` when it is about no
patient). One patient's events therefore share a subject suffix and keep their order.
Payloads never carry personal identifiers in subjects.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field

NO_PATIENT = "_"


class DomainEvent(BaseModel):
    """The envelope of one domain event, as published to JetStream."""

    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    type: str
    source: str
    time: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())
    resource_type: str
    resource_id: str
    version_id: str
    patient: str | None = None
    trace_context: dict[str, str] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)

    @property
    def name(self) -> str:
        """The last part of the type, e.g. `created` or `care-order-started`."""
        return self.type.rsplit(".", 1)[-1]

    def subject(self, prefix: str) -> str:
        return ".".join(
            (
                prefix,
                "events",
                self.source,
                self.resource_type,
                self.name,
                self.patient or NO_PATIENT,
            )
        )


def events_subject_filter(prefix: str) -> str:
    """The subjects the event stream holds."""
    return f"{prefix}.events.>"
