"""The audit trail of disclosures: one record per request that released or withheld
patient information, stored in JetStream before the answer leaves the service.

A record goes to the audit stream (`<prefix>.audit.<service>.<access|emergency>`) and the
service waits for JetStream's acknowledgement: if the trail cannot be written, nothing is
released (503). The consent service turns each record into a FHIR `AuditEvent`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from nats.aio.client import Client as NATS
from pydantic import BaseModel, Field

from shared.fhir.errors import FhirError, Issue
from shared.fhir.search_params import format_instant


class AuditEntity(BaseModel):
    """One resource released or withheld, with the basis of the decision."""

    reference: str
    patient: str | None
    category: str | None
    permit: bool
    basis: str
    consents: list[str] = Field(default_factory=list)
    reasons: list[str] = Field(default_factory=list)


class AuditRecord(BaseModel):
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    recorded: str = Field(default_factory=lambda: format_instant(datetime.now(UTC)))
    service: str
    interaction: str
    orgnr: str | None = None
    org_kind: str | None = None
    hpr: str | None = None
    fhir_user: str | None = None
    client_id: str | None = None
    purpose_of_use: str
    emergency_reason: str | None = None
    query: str | None = None
    entities: list[AuditEntity]

    @property
    def kind(self) -> str:
        return "emergency" if any(e.basis == "emergency" for e in self.entities) else "access"

    @property
    def outcome(self) -> str:
        return "permit" if any(e.permit for e in self.entities) else "deny"


class AuditPublisher:
    """Writes audit records to the audit stream and waits until they are stored."""

    def __init__(self, nc: NATS, prefix: str, timeout: float = 5.0) -> None:
        self._js = nc.jetstream()
        self._prefix = prefix
        self._timeout = timeout

    async def record(self, record: AuditRecord) -> None:
        subject = f"{self._prefix}.audit.{record.service}.{record.kind}"
        try:
            await self._js.publish(
                subject,
                record.model_dump_json().encode(),
                headers={"Nats-Msg-Id": record.id},
                timeout=self._timeout,
            )
        except Exception as exc:
            raise FhirError(
                503,
                [Issue("transient", f"The audit trail cannot be written; nothing released: {exc}")],
                headers={"Retry-After": "2"},
            ) from exc
