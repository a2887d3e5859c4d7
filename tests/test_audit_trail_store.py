"""The audit trail stores each record once as an AuditEvent. A first delivery is stored
without looking for records stored before; a record that was (its message published again
as a new one) fails that delivery, and its redelivery stores nothing twice and sets
nothing aside."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.js.errors import NotFoundError

from services.consent.audit_trail import AuditTrail
from services.consent.resources import consent_definitions
from shared.access.audit import AuditBatch, AuditEntity, AuditRecord
from shared.config import Settings
from shared.fhir.service import FhirService
from shared.store.database import Database
from shared.store.schema import create_schema
from shared.transport.nats_connection import close, connect, ensure_event_stream
from tests.support import BACKENDS, backend_database, nats_url, wait_for

pytestmark = pytest.mark.services


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with backend_database(request.param, tmp_path, "audittrail") as db:
        await create_schema(db)
        yield db


@pytest.fixture
async def settings() -> AsyncIterator[Settings]:
    made = Settings(nats_url=nats_url(), nats_prefix=f"at{uuid.uuid4().hex[:8]}")
    yield made
    nc = await connect(made, "barnebro-test-cleanup")
    try:
        js = nc.jetstream()
        for stream in (made.stream_name, made.audit_stream_name, made.dead_letter_stream_name):
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(stream)
    finally:
        await close(nc)


def _batch(*records: AuditRecord) -> bytes:
    return AuditBatch(records=list(records)).model_dump_json().encode()


def _record(n: int) -> AuditRecord:
    entity = AuditEntity(
        reference=f"Task/t{n}", patient="p1", category="referral", permit=True, basis="party"
    )
    return AuditRecord(service="referral", interaction="read", purpose_of_use="TREAT",
                       orgnr="910000012", entities=[entity])  # fmt: skip


async def _stored_ids(db: Database) -> list[str]:
    async with db.reader() as conn:
        rows = await conn.fetch(
            "SELECT res_id FROM resources WHERE res_type = 'AuditEvent' ORDER BY res_id"
        )
    return [str(row[0]) for row in rows]


async def test_each_record_is_stored_once_also_when_its_message_comes_again(
    database: Database, settings: Settings
) -> None:
    nc = await connect(settings, "barnebro-test-audit-trail")
    await ensure_event_stream(nc, settings)
    fhir = FhirService("consent", consent_definitions(), database, prefix=settings.nats_prefix)
    trail = AuditTrail(fhir, nc, settings)
    await trail.start()
    try:
        js = nc.jetstream()
        subject = f"{settings.nats_prefix}.audit.referral.access"
        first, second, third = _record(1), _record(2), _record(3)
        await js.publish(subject, _batch(first, second))

        async def stored(expected: list[str]) -> bool:
            return await _stored_ids(database) == sorted(expected)

        await wait_for(lambda: stored([first.id, second.id]), 15)
        # The same records in a new message (as after a consumer made anew), with a new one.
        await js.publish(subject, _batch(second, third))
        await wait_for(lambda: stored([first.id, second.id, third.id]), 15)
        assert trail.consumer.set_aside == 0
        assert trail.consumer.handled == 2
    finally:
        await trail.stop()
        await close(nc)
