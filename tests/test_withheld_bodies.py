"""A large resource is read without its body until the caller may see it: a withheld one
then costs what a missing one does (no body read, whatever its size), and a released one
is answered whole."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.fhir.service_data import INLINE_BODY_BYTES
from shared.store.stored import StoredResource
from tests.local_services import LocalServices, caller, local_services
from tests.referral_world import BVT, SKOLE


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[LocalServices]:
    async with local_services(tmp_path, "careplan") as services:
        await services.register(BVT, SKOLE)
        yield services


class WholeReads:
    """Counts the reads of a whole current version the directory makes."""

    def __init__(self, local: LocalServices, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        store = local.services["directory"].store
        read = store.read

        async def counted(conn: object, res_type: str, res_id: str) -> StoredResource | None:
            self.count += 1
            return await read(conn, res_type, res_id)  # type: ignore[arg-type]

        monkeypatch.setattr(store, "read", counted)


async def test_a_large_record_is_read_whole_only_for_a_caller_who_may_see_it(
    local: LocalServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    large = await local.child(address=[{"text": "Storgata " + "1" * (2 * INLINE_BODY_BYTES)}])
    small = await local.child(12)
    whole = WholeReads(local, monkeypatch)

    released = await local.call(caller(BVT), "read", "Patient", id=large["id"])
    assert released.status == 200
    assert released.body["address"] == large["address"], "answered whole"
    assert whole.count == 1

    withheld = await local.call(caller(SKOLE), "read", "Patient", id=large["id"])
    missing = await local.call(caller(SKOLE), "read", "Patient", id="not-there")
    assert (withheld.status, missing.status) == (404, 404)
    assert whole.count == 1, "a withheld large record's body is never read"

    assert (await local.call(caller(BVT), "read", "Patient", id=small["id"])).status == 200
    assert whole.count == 1, "a small record is read whole in the first statement"
    denials = [
        entity
        for record in local.audit.records
        for entity in record.entities
        if entity.reference == f"Patient/{large['id']}" and not entity.permit
    ]
    assert len(denials) == 1, "the withheld read is audited as any other"
