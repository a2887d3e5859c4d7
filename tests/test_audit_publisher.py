"""Audit records are stored before `record` returns, each once, concurrent requests
sharing messages; a trail that cannot be written refuses the release."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import pytest

from shared.access.audit import MAX_BATCH_BYTES, AuditPublisher, AuditRecord
from shared.access.audit import _batches as batches
from shared.config import Settings
from shared.fhir.errors import FhirError
from shared.transport.nats_connection import close, connect, ensure_event_stream
from tests.nats_streams import audit_record, own_streams

pytestmark = pytest.mark.services


@pytest.fixture
async def settings() -> AsyncIterator[Settings]:
    async with own_streams("ap") as made:
        yield made


async def _stored(settings: Settings) -> list[list[str]]:
    """The record ids of each message on the audit stream, in order."""
    nc = await connect(settings, "barnebro-test-audit-reader")
    try:
        js = nc.jetstream()
        info = await js.stream_info(settings.audit_stream_name)
        messages = []
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            stored = await js.get_msg(settings.audit_stream_name, seq)
            assert stored.data is not None
            messages.append([r["id"] for r in orjson.loads(stored.data)["records"]])
        return messages
    finally:
        await close(nc)


async def test_concurrent_records_are_stored_once_each_before_they_return(
    settings: Settings,
) -> None:
    nc = await connect(settings, "barnebro-test-audit")
    try:
        await ensure_event_stream(nc, settings)
        publisher = AuditPublisher(nc, settings.nats_prefix)
        records = [audit_record(n) for n in range(40)]
        missing_when_returned: list[str] = []

        async def request(record: AuditRecord) -> None:
            await publisher.record(record)
            if not any(record.id in message for message in await _stored(settings)):
                missing_when_returned.append(record.id)

        await asyncio.gather(*(request(r) for r in records[:20]))
        await asyncio.gather(*(request(r) for r in records[20:]))
        messages = await _stored(settings)
        ids = [record_id for message in messages for record_id in message]
        assert sorted(ids) == sorted(r.id for r in records), "each record once"
        assert len(messages) < len(records), "concurrent records share messages"
        assert publisher.records == 40 and publisher.published == len(messages)
        assert missing_when_returned == [], "on the stream before record returned"
    finally:
        await close(nc)


async def test_a_trail_that_cannot_be_written_releases_nothing(settings: Settings) -> None:
    nc = await connect(settings, "barnebro-test-audit")  # no audit stream made
    try:
        publisher = AuditPublisher(nc, settings.nats_prefix, timeout=1.0)
        with pytest.raises(FhirError) as refused:
            await publisher.record(audit_record(1))
        assert refused.value.status == 503
        told = refused.value.issues[0].diagnostics or ""
        assert told == "The audit trail cannot be written; nothing released", told
    finally:
        await close(nc)


def test_batches_keep_order_and_stay_under_the_message_size() -> None:
    sizes = [100, MAX_BATCH_BYTES // 2, MAX_BATCH_BYTES // 2, MAX_BATCH_BYTES + 5, 10, 10]
    pending = [(audit_record(n), b"x" * size) for n, size in enumerate(sizes)]
    cut = batches(pending)
    assert [entry for batch in cut for entry in batch] == pending, "all, in order"
    assert [[len(entry[1]) for entry in batch] for batch in cut] == [
        [100, MAX_BATCH_BYTES // 2],
        [MAX_BATCH_BYTES // 2],
        [MAX_BATCH_BYTES + 5],
        [10, 10],
    ]
    assert batches([]) == []


async def test_a_batch_stopped_while_gathering_answers_its_requests(settings: Settings) -> None:
    """Its task cancelled (the service stopping): the request waiting on it is refused, not
    left waiting nor answered as stored, and the next record is stored as usual."""
    nc = await connect(settings, "barnebro-test-audit")
    try:
        await ensure_event_stream(nc, settings)
        publisher = AuditPublisher(nc, settings.nats_prefix, linger=0.5)
        waiting = asyncio.create_task(publisher.record(audit_record(1)))
        await asyncio.sleep(0.05)
        for flushing in list(publisher.gathered.flushing):
            flushing.cancel()
        with pytest.raises(FhirError) as refused:
            await waiting
        assert refused.value.status == 503
        later = audit_record(2)
        await publisher.record(later)
        assert await _stored(settings) == [[later.id]]
    finally:
        await close(nc)
