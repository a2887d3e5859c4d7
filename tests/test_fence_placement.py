"""Which requests bring the consent view up to date before anything is decided
(`AccessGuard.current`, called by `FhirRouter.handle` once the request is authorised):
every client request that a decision on the view may follow, and no other."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.fhir.errors import FhirError, Issue
from shared.transport.wire import Caller
from tests.local_services import OPERATOR, LocalServices, caller, local_services
from tests.referral_world import BVT


@pytest.fixture
async def local(tmp_path: Path) -> AsyncIterator[LocalServices]:
    async with local_services(tmp_path, "careplan") as services:
        await services.register(BVT)
        yield services


async def asked(
    local: LocalServices, by: Caller, interaction: str, kind: str, **fields: object
) -> int:
    before = local.view.caught_up_asked
    await local.call(by, interaction, kind, **fields)
    return local.view.caught_up_asked - before


async def test_a_clients_request_about_patient_data_waits_for_the_view(
    local: LocalServices,
) -> None:
    child = await local.child()
    bvt = caller(BVT)
    assert await asked(local, bvt, "read", "Patient", id=child["id"]) == 1
    assert await asked(local, bvt, "search", "CarePlan", params=[("patient", child["id"])]) == 1
    assert await asked(local, bvt, "read", "CarePlan", id="missing") == 1


async def test_a_read_of_what_is_not_patient_data_does_not_wait(local: LocalServices) -> None:
    organisation = local.organisations[BVT]
    bvt = caller(BVT)
    assert await asked(local, bvt, "read", "Organization", id=organisation) == 0
    assert await asked(local, bvt, "search", "Organization", params=[("_id", organisation)]) == 0
    reaching = [("_id", organisation), ("_revinclude", "Patient:organization")]
    assert await asked(local, bvt, "search", "Organization", params=reaching) == 1


async def test_services_and_refused_callers_do_not_wait(local: LocalServices) -> None:
    child = await local.child()
    service = Caller(credential="service", client_id="careplan", scopes=["system/*.cruds"])
    assert await asked(local, service, "read", "Patient", id=child["id"]) == 0
    unscoped = caller(BVT).model_copy(update={"scopes": []})
    assert await asked(local, unscoped, "read", "Patient", id=child["id"]) == 0
    before = local.view.caught_up_asked
    refused = await local.call(OPERATOR, "read", "Patient", id=child["id"])
    assert refused.status == 403, "the table refuses the operator a child's record"
    assert local.view.caught_up_asked == before


async def test_a_read_is_decided_only_once_the_view_is_up_to_date(
    local: LocalServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read of one resource asks for the view's update while the store is read: the
    answer waits for the update, whatever the store gave."""
    child = await local.child()
    answered = asyncio.Event()
    asked_at: list[str] = []

    async def held() -> None:
        asked_at.append("asked")
        await answered.wait()

    monkeypatch.setattr(local.view, "caught_up", held)
    reading = asyncio.create_task(local.call(caller(BVT), "read", "Patient", id=child["id"]))
    await asyncio.sleep(0.2)
    assert asked_at == ["asked"] and not reading.done(), "decided before the view was current"
    assert not local.audit.records or all(
        r.entities[0].reference != f"Patient/{child['id']}" for r in local.audit.records
    ), "nothing is audited as released before the view is current"
    answered.set()
    assert (await reading).status == 200


async def test_a_view_that_cannot_be_brought_up_refuses_found_and_missing_alike(
    local: LocalServices, monkeypatch: pytest.MonkeyPatch
) -> None:
    child = await local.child()

    async def unreadable() -> None:
        await asyncio.sleep(0.05)  # the store read has answered by now
        raise FhirError(503, [Issue("transient", "Consent state is being brought up to date")])

    monkeypatch.setattr(local.view, "caught_up", unreadable)
    found = await local.call(caller(BVT), "read", "Patient", id=child["id"])
    missing = await local.call(caller(BVT), "read", "Patient", id="no-such-child")
    versioned = await local.call(caller(BVT), "vread", "Patient", id=child["id"], version="1")
    assert found.status == missing.status == versioned.status == 503
    assert found.body == missing.body == versioned.body
