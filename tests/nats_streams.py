"""Settings with a NATS subject prefix of their own for tests that make the project's
streams (events, audit, dead letters) themselves, and the clean-up of those streams."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

from nats.js.errors import NotFoundError

from shared.access.audit import AuditEntity, AuditRecord
from shared.config import Settings
from shared.transport.nats_connection import close, connect
from tests.support import nats_url


@contextlib.asynccontextmanager
async def own_streams(tag: str) -> AsyncIterator[Settings]:
    """Settings under a prefix `<tag><random>`; the streams made under it are deleted
    afterwards (those never made are no matter)."""
    made = Settings(nats_url=nats_url(), nats_prefix=f"{tag}{uuid.uuid4().hex[:8]}")
    try:
        yield made
    finally:
        nc = await connect(made, "barnebro-test-cleanup")
        try:
            js = nc.jetstream()
            for stream in (made.stream_name, made.audit_stream_name, made.dead_letter_stream_name):
                with contextlib.suppress(NotFoundError):
                    await js.delete_stream(stream)
        finally:
            await close(nc)


def audit_record(n: int) -> AuditRecord:
    """A referral service's record of a read of `Task/t<n>`."""
    entity = AuditEntity(
        reference=f"Task/t{n}", patient="p1", category="referral", permit=True, basis="party"
    )
    return AuditRecord(service="referral", interaction="read", purpose_of_use="TREAT",
                       orgnr="910000012", entities=[entity])  # fmt: skip
