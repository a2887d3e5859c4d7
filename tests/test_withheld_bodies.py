"""A large resource is read without its body until the caller may see it: a withheld one
then costs what a missing one does (no body read, whatever its size), and a released one
is answered whole."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

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
    """Counts the reads of a whole version with a large body the directory makes."""

    def __init__(self, local: LocalServices, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        store = local.services["directory"].store
        read, vread, current = store.read, store.vread, store.read_current

        async def counted_read(conn: Any, res_type: str, res_id: str) -> StoredResource | None:
            return self.counted(await read(conn, res_type, res_id))

        async def counted_vread(conn: Any, *args: Any, **options: Any) -> StoredResource | None:
            return self.counted(await vread(conn, *args, **options))

        async def counted_current(conn: Any, *args: Any, **options: Any) -> list[Any]:
            return [self.counted(found) for found in await current(conn, *args, **options)]

        monkeypatch.setattr(store, "read", counted_read)
        monkeypatch.setattr(store, "read_current", counted_current)
        monkeypatch.setattr(store, "vread", counted_vread)

    def counted(self, stored: StoredResource | None) -> StoredResource | None:
        if stored is not None and len(stored.body or b"") > INLINE_BODY_BYTES:
            self.count += 1
        return stored


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


async def test_a_large_versions_body_is_not_read_for_a_caller_who_may_not_see_it(
    local: LocalServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    large = await local.child(address=[{"text": "Storgata " + "2" * (2 * INLINE_BODY_BYTES)}])
    whole = WholeReads(local, monkeypatch)
    skole, bvt = caller(SKOLE), caller(BVT)

    for interaction, fields in [
        ("vread", {"id": large["id"], "version": "1"}),
        ("history-instance", {"id": large["id"]}),
    ]:
        withheld = await local.call(skole, interaction, "Patient", **fields)
        missing = await local.call(skole, interaction, "Patient", **{**fields, "id": "not-there"})
        assert (withheld.status, missing.status) == (404, 404), interaction
        told = withheld.diagnostics.replace(large["id"], "ID")
        assert told == missing.diagnostics.replace("not-there", "ID"), interaction
    assert whole.count == 0, "a withheld large version's body is never read"

    released = await local.call(bvt, "vread", "Patient", id=large["id"], version="1")
    assert released.status == 200 and released.body["address"] == large["address"]
    assert whole.count == 1
    history = await local.call(bvt, "history-instance", "Patient", id=large["id"])
    assert history.status == 200 and len(history.body["entry"]) == 1
