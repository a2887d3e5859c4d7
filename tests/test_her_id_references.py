"""An organisation named by HER-id is the same organisation as by organisasjonsnummer,
everywhere one is named: found through the directory, held to the same rules (registered,
in use, of the right kind and type) and stored by organisasjonsnummer."""

from __future__ import annotations

from typing import Any

from services.operator.client import RegisterClient
from shared.identifiers import HERID_SYSTEM, ORGNR_SYSTEM
from tests.referral_world import BUP, BUP2, BVT, GP, KINDS, ReferralWorld, referral_bundle

GP_HER, BUP_HER, BUP2_HER = "8142501", "8142519", "8142527"


def her(value: str, **more: Any) -> dict[str, Any]:
    return {"identifier": {"system": HERID_SYSTEM, "value": value}, **more}


def orgnr(value: str, **more: Any) -> dict[str, Any]:
    return {"identifier": {"system": ORGNR_SYSTEM, "value": value}, **more}


async def register(
    world: ReferralWorld, number: str, *her_ids: str, active: bool = True, **row: Any
) -> Any:
    """The operator imports the organisation again, with HER-ids (and `aktiv`)."""
    client = RegisterClient(world.stack.session, world.stack.base, world.stack.operator_token())
    row = {"organisasjonsnummer": number, "navn": f"{KINDS[number]} {number}",
           "kind": KINDS[number], "kommunenummer": "0301", "herId": list(her_ids),
           "aktiv": active, **row}  # fmt: skip
    return await client.import_organisations([row])


async def her_ids_of(world: ReferralWorld, number: str) -> list[str]:
    found = await world.stack.call(
        "GET", f"Organization?identifier={ORGNR_SYSTEM}|{number}",
        token=world.stack.operator_token(),
    )  # fmt: skip
    (organisation,) = [e["resource"] for e in found.json()["entry"]]
    return [i["value"] for i in organisation["identifier"] if i["system"] == HERID_SYSTEM]


async def submit_to(world: ReferralWorld, performer: dict[str, Any]) -> Any:
    child = await world.child()
    bundle = referral_bundle(child, by=GP, to=BUP)
    bundle["entry"][-1]["resource"]["performer"] = [performer]
    return await world.fhir("POST", "", bundle, by=GP)


async def name_gp(world: ReferralWorld, child_id: str, named: dict[str, Any]) -> Any:
    """The barnevernstjeneste names the child's GP on the child's record."""
    seen = await world.fhir("GET", f"Patient/{child_id}", by=BVT)
    assert seen.status == 200, seen.body
    return await world.fhir(
        "PUT",
        f"Patient/{child_id}",
        {**seen.json(), "generalPractitioner": [named]},
        by=BVT,
        headers={"If-Match": seen.headers["ETag"]},
    )


async def test_a_gp_named_by_her_id_is_checked_and_stored_by_orgnr(
    referrals: ReferralWorld,
) -> None:
    for number, her_id in ((GP, GP_HER), (BUP, BUP_HER)):
        report = await register(referrals, number, her_id)
        assert report.rows == [(number, "updated", "")], report.rows
    child = await referrals.child()
    refusals = {
        BUP_HER: "names a registered fastlege office",  # registered, but not a GP
        "999": "names a registered fastlege office",  # not registered
        "08142501": "without leading zeros",
        "0": "without leading zeros",
    }
    for her_id, message in refusals.items():
        reply = await name_gp(referrals, child.id, her(her_id))
        assert reply.status == 422, (her_id, reply.body)
        assert message in str(reply.body), reply.body

    reply = await name_gp(referrals, child.id, her(GP_HER, type="Patient"))
    assert reply.status == 422, reply.body
    assert "Patient.generalPractitioner[0].type" in str(reply.body)

    reply = await name_gp(referrals, child.id, her(GP_HER, display="Legekontoret"))
    assert reply.status == 200, reply.body
    stored = await referrals.stack.call("GET", f"Patient/{child.id}")
    assert stored.json()["generalPractitioner"] == [
        {"identifier": {"system": ORGNR_SYSTEM, "value": GP}, "display": "Legekontoret",
         "type": "Organization"}
    ]  # fmt: skip

    # An office the register has taken out of use is no longer named as a GP.
    await register(referrals, GP, GP_HER, active=False)
    for named in (her(GP_HER), orgnr(GP)):
        reply = await name_gp(referrals, child.id, named)
        assert reply.status == 422, reply.body
        assert "names a registered fastlege office in use" in str(reply.body)


async def test_a_referral_to_an_organisation_out_of_use_is_refused(
    referrals: ReferralWorld,
) -> None:
    await register(referrals, BUP2, BUP2_HER, active=False)
    for performer in (orgnr(BUP2), her(BUP2_HER)):
        reply = await submit_to(referrals, performer)
        assert reply.status == 422, reply.body
        assert f"The receiving organisation {BUP2} is not registered in the directory" in str(
            reply.body
        )
        assert "out of use" in str(reply.body)
    found = await referrals.fhir("GET", "ServiceRequest", by=GP)
    assert not [e for e in found.json().get("entry", []) if e["search"]["mode"] == "match"]


async def test_her_ids_have_one_spelling(referrals: ReferralWorld) -> None:
    await register(referrals, BUP, BUP_HER)
    for spelling in ("0" + BUP_HER, "000000000"):
        report = await register(referrals, BUP2, spelling)
        assert report.rows[0][1] == "failed", report.rows
        assert "without leading zeros" in report.rows[0][2]
        reply = await submit_to(referrals, her(spelling))
        assert reply.status == 422, reply.body
        assert "ServiceRequest.performer[0].identifier" in str(reply.body)
        assert "without leading zeros" in str(reply.body)


async def test_an_organisation_is_named_as_an_organization(referrals: ReferralWorld) -> None:
    await register(referrals, BUP, BUP_HER)
    for performer in (orgnr(BUP, type="Patient"), her(BUP_HER, type="Patient")):
        reply = await submit_to(referrals, performer)
        assert reply.status == 422, reply.body
        assert "ServiceRequest.performer[0].type" in str(reply.body)
    reply = await submit_to(referrals, orgnr(BUP, type="Organization"))
    assert reply.status == 200, reply.body


async def test_a_register_row_without_her_ids_keeps_the_stored_ones(
    referrals: ReferralWorld,
) -> None:
    await register(referrals, BUP, BUP_HER)
    client = RegisterClient(
        referrals.stack.session, referrals.stack.base, referrals.stack.operator_token()
    )
    renamed = {"organisasjonsnummer": BUP, "navn": "BUP Oslo", "kind": "bup",
               "kommunenummer": "0301"}  # fmt: skip
    report = await client.import_organisations([renamed])
    assert report.rows == [(BUP, "updated", "")], report.rows
    assert await her_ids_of(referrals, BUP) == [BUP_HER]
    # Still held: no other organisation may take it.
    report = await register(referrals, BUP2, BUP_HER)
    assert report.rows[0][:2] == (BUP2, "failed"), report.rows

    # An explicit empty value removes them, and frees them for another.
    report = await client.import_organisations([{**renamed, "herId": []}])
    assert report.rows == [(BUP, "updated", "")], report.rows
    assert await her_ids_of(referrals, BUP) == []
    report = await register(referrals, BUP2, BUP_HER)
    assert report.rows == [(BUP2, "updated", "")], report.rows
