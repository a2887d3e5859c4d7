"""HER-id addressing: organisations registered with their HER-id (NHN's address register)
are found by it, no two organisations hold the same one, and a referral may name its
receiver by HER-id, reaching the same receiver as by organisasjonsnummer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.operator.client import RegisterClient
from services.operator.organisations import RowError, organisation_row
from shared.fhir.migrations import migrate
from shared.identifiers import HERID_SYSTEM, ORGNR_SYSTEM
from tests.local_services import OPERATOR, local_services
from tests.referral_world import BUP, BUP2, GP, ReferralWorld, referral_bundle

BUP_HER = "8142519"
SECOND_HER = "8142520"


async def register_her_ids(world: ReferralWorld, orgnr: str, *her_ids: str) -> Any:
    """The operator imports the organisation again, now with HER-ids (as `barnebro org
    add --her-id` and `barnebro org import` do)."""
    client = RegisterClient(world.stack.session, world.stack.base, world.stack.operator_token())
    row = {"organisasjonsnummer": orgnr, "navn": f"bup {orgnr}", "kind": "bup",
           "kommunenummer": "0301", "herId": list(her_ids)}  # fmt: skip
    return await client.import_organisations([row])


async def submit_to(world: ReferralWorld, performer: dict[str, Any]) -> Any:
    child = await world.child()
    bundle = referral_bundle(child, by=GP, to=BUP)
    bundle["entry"][-1]["resource"]["performer"] = [performer]
    return await world.fhir("POST", "", bundle, by=GP)


async def test_an_organisation_is_found_by_its_her_ids_and_no_other_may_hold_them(
    referrals: ReferralWorld,
) -> None:
    report = await register_her_ids(referrals, BUP, BUP_HER, SECOND_HER)
    assert report.rows == [(BUP, "updated", "")], report.rows
    operator = referrals.stack.operator_token()
    for her_id in (BUP_HER, SECOND_HER):
        found = await referrals.stack.call(
            "GET", f"Organization?identifier={HERID_SYSTEM}|{her_id}", token=operator
        )
        assert found.status == 200, found.body
        matches = [e["resource"] for e in found.json()["entry"]]
        assert [m["id"] for m in matches] == [referrals.organisations[BUP]]
        assert {"system": ORGNR_SYSTEM, "value": BUP} in matches[0]["identifier"]

    report = await register_her_ids(referrals, BUP2, BUP_HER)
    assert report.rows[0][:2] == (BUP2, "failed"), report.rows
    assert f"her-id {BUP_HER} is already registered" in report.rows[0][2]
    stored = await referrals.stack.call(
        "GET", f"Organization/{referrals.organisations[BUP2]}", token=operator
    )
    assert {"system": HERID_SYSTEM, "value": BUP_HER} not in stored.json()["identifier"]


async def test_a_referral_addressed_by_her_id_reaches_the_same_receiver(
    referrals: ReferralWorld,
) -> None:
    await register_her_ids(referrals, BUP, BUP_HER)
    reply = await submit_to(
        referrals, {"identifier": {"system": HERID_SYSTEM, "value": BUP_HER}, "display": "BUP"}
    )
    assert reply.status == 200, reply.body
    service_request = reply.json()["entry"][-1]["resource"]
    assert service_request["performer"] == [
        {"identifier": {"system": ORGNR_SYSTEM, "value": BUP}, "display": "BUP",
         "type": "Organization"}
    ]  # fmt: skip
    # The receiver finds it exactly as one addressed by organisasjonsnummer.
    found = await referrals.fhir(
        "GET", f"Task?focus=ServiceRequest/{service_request['id']}", by=BUP
    )
    tasks = [e["resource"] for e in found.json()["entry"] if e["search"]["mode"] == "match"]
    assert len(tasks) == 1, found.body
    assert tasks[0]["owner"]["identifier"] == {"system": ORGNR_SYSTEM, "value": BUP}
    read = await referrals.fhir("GET", f"ServiceRequest/{service_request['id']}", by=BUP)
    assert read.status == 200, read.body

    # The referrer amends it, naming the receiver by HER-id as when it submitted it.
    mine = await referrals.fhir("GET", f"ServiceRequest/{service_request['id']}", by=GP)
    amended = {**mine.json(), "priority": "urgent", "performer": [
        {"identifier": {"system": HERID_SYSTEM, "value": BUP_HER}, "display": "BUP"}]}  # fmt: skip
    reply = await referrals.fhir(
        "PUT", f"ServiceRequest/{service_request['id']}", amended, by=GP,
        headers={"If-Match": mine.headers["ETag"]},
    )  # fmt: skip
    assert reply.status == 200, reply.body
    assert reply.json()["priority"] == "urgent"
    assert reply.json()["performer"] == service_request["performer"]

    # A literal reference beside the HER-id must name the same organisation.
    other = f"Organization/{referrals.organisations[BUP2]}"
    reply = await submit_to(
        referrals,
        {"reference": other, "identifier": {"system": HERID_SYSTEM, "value": BUP_HER}},
    )
    assert reply.status == 422, reply.body
    assert "names another organisation than its identifier" in str(reply.body)


async def test_unknown_and_invalid_her_ids_are_refused_clearly(referrals: ReferralWorld) -> None:
    reply = await submit_to(referrals, {"identifier": {"system": HERID_SYSTEM, "value": "999"}})
    assert reply.status == 422, reply.body
    assert "No organisation is registered in the directory with HER-id 999" in str(reply.body)

    reply = await submit_to(referrals, {"identifier": {"system": HERID_SYSTEM, "value": "12ab"}})
    assert reply.status == 422, reply.body
    assert "ServiceRequest.performer[0].identifier" in str(reply.body)
    # Nothing was written: the receiver has no referral.
    found = await referrals.fhir("GET", "ServiceRequest", by=BUP)
    assert found.status == 200
    assert not [e for e in found.json().get("entry", []) if e["search"]["mode"] == "match"]


def test_register_rows_carry_one_or_several_her_ids() -> None:
    base = {"organisasjonsnummer": BUP, "navn": "BUP", "kind": "bup"}
    several = organisation_row({**base, "herId": f"{BUP_HER}, {SECOND_HER}"})
    assert several.her_ids == (BUP_HER, SECOND_HER)
    identifiers = organisation_row({**base, "herId": [BUP_HER]}).resource()["identifier"]
    assert identifiers == [
        {"system": ORGNR_SYSTEM, "value": BUP},
        {"system": HERID_SYSTEM, "value": BUP_HER},
    ]
    assert organisation_row(base).her_ids is None  # says nothing: the stored ones stay
    assert organisation_row({**base, "herId": ""}).her_ids == ()
    with pytest.raises(RowError, match="1 to 9 digits"):
        organisation_row({**base, "herId": "1234567890"})


async def test_organisations_stored_before_her_ids_were_unique_get_their_keys(
    tmp_path: Path,
) -> None:
    """A HER-id registered before the directory held HER-ids unique is made unique by a
    migration at start, so no other organisation can take it afterwards."""
    async with local_services(tmp_path) as local:
        first = organisation_row({"organisasjonsnummer": BUP, "navn": "BUP", "kind": "bup",
                                  "herId": BUP_HER}).resource()  # fmt: skip
        await local.created(OPERATOR, first)
        directory = local.services["directory"]
        async with directory.db.transaction() as conn:  # as stored before the change
            await conn.execute("DELETE FROM unique_keys WHERE key_name = 'her-id'")
        ran = await migrate(directory)
        assert ran["unique-keys:Organization:her-id"] == 1
        assert (await migrate(directory)) == {}, "once"
        second = organisation_row({"organisasjonsnummer": BUP2, "navn": "BUP 2", "kind": "bup",
                                   "herId": BUP_HER}).resource()  # fmt: skip
        answer = await local.call(OPERATOR, "create", "Organization", second)
        assert answer.status == 409, answer.body
        assert f"her-id {BUP_HER} is already registered" in answer.diagnostics
