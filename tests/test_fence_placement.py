"""Which requests bring the consent view up to date before anything is decided
(`AccessGuard.current`, called by `FhirRouter.handle` once the request is authorised):
every client request that a decision on the view may follow, and no other."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

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
