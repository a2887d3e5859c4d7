"""The audit trail stores each record once as an AuditEvent. A first delivery is stored
without looking for records stored before; a record that was (its message published again
as a new one) fails that delivery, and its redelivery stores nothing twice and sets
nothing aside."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.consent.audit_trail import AuditTrail
from services.consent.resources import consent_definitions
from shared.access.audit import AuditBatch, AuditRecord
from shared.config import Settings
from shared.fhir.service import FhirService
from shared.store.database import Database
from shared.transport.nats_connection import close, connect, ensure_event_stream
from tests.nats_streams import audit_record, own_streams
from tests.support import BACKENDS, store_database, wait_for

pytestmark = pytest.mark.services


@pytest.fixture(params=BACKENDS)
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    async with store_database(request.param, tmp_path, "audittrail") as db:
        yield db


@pytest.fixture
async def settings() -> AsyncIterator[Settings]:
    async with own_streams("at") as made:
        yield made


def _batch(*records: AuditRecord) -> bytes:
    return AuditBatch(records=list(records)).model_dump_json().encode()


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
        first, second, third = audit_record(1), audit_record(2), audit_record(3)
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
