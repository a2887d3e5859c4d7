"""The audit trail of disclosures: one record per request that released or withheld
patient information, stored in JetStream before the answer leaves the service.

Records go to the audit stream (`<prefix>.audit.<service>.<access|emergency>`) and the
request waits for JetStream's acknowledgement: if the trail cannot be written, nothing is
released (503). Records of concurrent requests share one message (`AuditBatch`): the first
record of a batch waits a millisecond for others, so under load a service pays one
acknowledged publish per batch rather than per request. A few batches may be in flight at
once, so that the requests whose records gather meanwhile do not wait for the batch ahead
of theirs to be acknowledged first. The consent service turns each record into a FHIR
`AuditEvent`.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import time

from nats.aio.client import Client as NATS
from pydantic import BaseModel, Field

from shared import clock
from shared.fhir.errors import FhirError, Issue
from shared.gathered import Gathered
from shared.metrics import audit_publish_duration

log = logging.getLogger(__name__)

_KEY = os.urandom(32)
_SEQUENCE = itertools.count(1)


def audit_id() -> str:
    """A unique id (a FHIR id: it becomes the AuditEvent's) without a system call per
    record: a counter, hashed under this process's random key, so that ids reveal neither
    how many accesses were audited between two of them nor which process wrote them."""
    counter = next(_SEQUENCE).to_bytes(8, "big")
    return hashlib.blake2b(counter, key=_KEY, digest_size=16).hexdigest()


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
    id: str = Field(default_factory=audit_id)
    recorded: str = Field(default_factory=clock.now_instant)
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
        """`deny` when something was withheld and nothing released; a search that found
        nothing the caller may see is not a denial of anything named."""
        withheld = any(not e.permit for e in self.entities)
        return "deny" if withheld and not any(e.permit for e in self.entities) else "permit"


class AuditBatch(BaseModel):
    """One message on the audit stream: the records of requests that ended together."""

    id: str = Field(default_factory=audit_id)
    records: list[AuditRecord]


MAX_BATCH_BYTES = 400_000
"""Well below the NATS message limit (1 MB by default)."""
LINGER_SECONDS = 0.001
"""How long the first record of a batch waits for others: a millisecond of latency for
far fewer acknowledged publishes under load."""
IN_FLIGHT = 4
"""Batches published and not yet acknowledged, at most: the records that come while all
are in flight gather for the next."""


Encoded = tuple[AuditRecord, bytes]
"""A record and its JSON."""


def _batches(records: list[Encoded]) -> list[list[Encoded]]:
    """`records` in order, cut into messages of at most `MAX_BATCH_BYTES` (a record larger
    than that goes alone)."""
    batches: list[list[Encoded]] = []
    size = 0
    for entry in records:
        if not batches or size + len(entry[1]) >= MAX_BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(entry)
        size += len(entry[1])
    return batches


def _unavailable(reason: str) -> FhirError:
    """The answer to a request whose record could not be stored. Why is logged for the
    operator, not told to the client (it names the broker's internals)."""
    log.warning("the audit trail cannot be written; nothing released: %s", reason)
    message = "The audit trail cannot be written; nothing released"
    return FhirError(503, [Issue("transient", message)], headers={"Retry-After": "2"})


class AuditPublisher:
    """Writes audit records to the audit stream; `record` returns once they are stored."""

    def __init__(
        self,
        nc: NATS,
        prefix: str,
        timeout: float = 5.0,
        linger: float = LINGER_SECONDS,
        in_flight: int = IN_FLIGHT,
    ) -> None:
        self._js = nc.jetstream()
        self._prefix = prefix
        self._timeout = timeout
        self.gathered: Gathered[Encoded, None] = Gathered(
            self._publish,
            in_flight=in_flight,
            linger=linger,
            cut=_batches,
            stopping=lambda: _unavailable("the service is stopping"),
        )
        self.published = 0
        """Messages (batches) acknowledged."""
        self.records = 0
        """Records acknowledged."""

    async def record(self, record: AuditRecord) -> None:
        await self.gathered((record, record.model_dump_json().encode()))

    async def _publish(self, batch: list[Encoded]) -> list[None]:
        """Stores one message of records; raises the 503 that refuses them all when it
        cannot."""
        records = [record for record, _ in batch]
        kind = "emergency" if any(r.kind == "emergency" for r in records) else "access"
        batch_id = audit_id()
        # The records are already JSON: the batch is assembled, not serialised again.
        payload = b'{"id":"%s","records":[%s]}' % (
            batch_id.encode(),
            b",".join(encoded for _, encoded in batch),
        )
        began = time.perf_counter()
        try:
            await self._js.publish(
                f"{self._prefix}.audit.{records[0].service}.{kind}",
                payload,
                headers={"Nats-Msg-Id": batch_id},
                timeout=self._timeout,
            )
        except Exception as exc:
            audit_publish_duration.record(time.perf_counter() - began, {"outcome": "failed"})
            raise _unavailable(str(exc)) from exc
        audit_publish_duration.record(time.perf_counter() - began, {"outcome": "stored"})
        self.published += 1
        self.records += len(batch)
        return [None] * len(batch)
