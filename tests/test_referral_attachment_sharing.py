"""A referral's attachments and who sees them: the attachments a referral transaction
creates are created shared with its requester and receiver (one version each, one
`created` event the receiver may see), an attachment outside a referral is shared with
nobody, and nobody the client names itself gains access."""

from __future__ import annotations

from typing import Any

from services.referral.domain.vocabulary import SHARED_WITH_EXT
from shared.events import DomainEvent
from shared.identifiers import ORGNR_SYSTEM
from tests.referral_world import (
    BUP,
    BUP2,
    BVT,
    GP,
    KOMMUNE,
    ReferralWorld,
    attachment,
    org_reference,
    referral_bundle,
)
from tests.support import Reply, stream_events, wait_for

MADE_UP = "0e0e0e0e-0000-4000-8000-000000000000"


def shared_with(resource: dict[str, Any]) -> set[str]:
    return {
        str(e["valueIdentifier"]["value"])
        for e in resource.get("extension") or []
        if e.get("url") == SHARED_WITH_EXT
    }


async def assert_as_missing(world: ReferralWorld, path: str, doc_id: str, by: str) -> None:
    """The attachment answers `by` exactly as one that does not exist."""
    hidden = await world.fhir("GET", path.format(doc_id), by=by)
    missing = await world.fhir("GET", path.format(MADE_UP), by=by)
    assert hidden.status == missing.status == 404, (hidden.body, missing.body)
    assert hidden.body.replace(doc_id.encode(), MADE_UP.encode()) == missing.body


async def attachment_events(world: ReferralWorld, ids: set[str]) -> list[DomainEvent]:
    events = await stream_events(world.stack)
    return [e for _, e in events if e.resource_type == "DocumentReference" and e.resource_id in ids]


def attachment_ids(reply: Reply) -> list[str]:
    return [
        e["resource"]["id"]
        for e in reply.json()["entry"]
        if e["resource"]["resourceType"] == "DocumentReference"
    ]


async def test_a_referrals_attachments_are_created_shared_with_its_receiver(
    referrals: ReferralWorld,
) -> None:
    child = await referrals.child()
    reply = await referrals.fhir("POST", "", referral_bundle(child, by=GP), by=GP)
    assert reply.status == 200, reply.body
    ids = attachment_ids(reply)
    assert len(ids) == 3
    for entry in reply.json()["entry"][:3]:
        assert entry["response"]["etag"] == 'W/"1"'
        assert shared_with(entry["resource"]) == {GP, BUP}
    for doc_id in ids:
        for reader in (GP, BUP):
            read = await referrals.fhir("GET", f"DocumentReference/{doc_id}", by=reader)
            assert read.status == 200, read.body
            assert read.json()["meta"]["versionId"] == "1"
            history = await referrals.fhir("GET", f"DocumentReference/{doc_id}/_history", by=reader)
            assert history.status == 200, history.body
            versions = [e["resource"]["meta"]["versionId"] for e in history.json()["entry"]]
            assert versions == ["1"]
        for outsider in (KOMMUNE, BUP2, BVT):
            await assert_as_missing(referrals, "DocumentReference/{}", doc_id, outsider)
            await assert_as_missing(referrals, "DocumentReference/{}/_history", doc_id, outsider)
    # The receiver finds them by the child, as before.
    found = await referrals.fhir("GET", f"DocumentReference?patient=Patient/{child.id}", by=BUP)
    assert {e["resource"]["id"] for e in found.json()["entry"]} == set(ids)

    # One event per attachment: its creation, which the receiver may see.
    async def published() -> bool:
        return len(await attachment_events(referrals, set(ids))) >= 3

    await wait_for(published)
    events = await attachment_events(referrals, set(ids))
    assert sorted(e.resource_id for e in events) == sorted(ids)
    for event in events:
        assert event.name == "created"
        assert event.version_id == "1"
        assert event.patient == child.id
        assert event.access is not None
        assert event.access.author == GP
        assert sorted(event.access.parties) == sorted([GP, BUP])


async def test_what_the_client_says_is_shared_is_not(referrals: ReferralWorld) -> None:
    """A shared-with extension the client sends on an attachment is dropped: only the
    referral's parties see it."""
    child = await referrals.child()
    bundle = referral_bundle(child, by=GP)
    bundle["entry"][0]["resource"]["extension"] = [
        {"url": SHARED_WITH_EXT, "valueIdentifier": {"system": ORGNR_SYSTEM, "value": BVT}}
    ]
    reply = await referrals.fhir("POST", "", bundle, by=GP)
    assert reply.status == 200, reply.body
    doc_id = attachment_ids(reply)[0]
    assert shared_with(reply.json()["entry"][0]["resource"]) == {GP, BUP}
    await assert_as_missing(referrals, "DocumentReference/{}", doc_id, BVT)


async def test_an_attachment_outside_a_referral_is_not_shared(referrals: ReferralWorld) -> None:
    child = await referrals.child()
    # Alone, and in a transaction without a referral.
    alone = await referrals.fhir("POST", "DocumentReference", attachment(child, "annet"), by=GP)
    assert alone.status == 201, alone.body
    bundle = referral_bundle(child, by=GP)
    bundle["entry"] = bundle["entry"][:1]
    reply = await referrals.fhir("POST", "", bundle, by=GP)
    assert reply.status == 200, reply.body
    for doc_id in (alone.json()["id"], attachment_ids(reply)[0]):
        read = await referrals.fhir("GET", f"DocumentReference/{doc_id}", by=GP)
        assert read.status == 200, read.body
        assert shared_with(read.json()) == set()
        for outsider in (BUP, KOMMUNE):
            await assert_as_missing(referrals, "DocumentReference/{}", doc_id, outsider)

    # A referral submitted later shares it with its receiver from then on, history included.
    doc_id = alone.json()["id"]
    bundle = referral_bundle(child, by=GP, attachments=())
    bundle["entry"][-1]["resource"]["supportingInfo"] = [
        {"reference": f"DocumentReference/{doc_id}"}
    ]
    reply = await referrals.fhir("POST", "", bundle, by=GP)
    assert reply.status == 200, reply.body
    history = await referrals.fhir("GET", f"DocumentReference/{doc_id}/_history", by=BUP)
    assert history.status == 200, history.body
    assert len(history.json()["entry"]) == 2
    await assert_as_missing(referrals, "DocumentReference/{}", doc_id, KOMMUNE)


async def test_a_refused_referral_shares_nothing(referrals: ReferralWorld) -> None:
    """The attachments are created shared only because the referral is stored with them:
    a transaction whose referral is refused stores neither."""
    child = await referrals.child()
    bundle = referral_bundle(child, by=GP)
    bundle["entry"][-1]["resource"]["reasonCode"] = []
    reply = await referrals.fhir("POST", "", bundle, by=GP)
    assert reply.status == 422, reply.body
    found = await referrals.fhir("GET", f"DocumentReference?patient=Patient/{child.id}", by=GP)
    assert found.json()["entry"] == []


async def test_an_attachment_two_referrals_cite_is_shared_with_both(
    referrals: ReferralWorld,
) -> None:
    child = await referrals.child()
    bundle = referral_bundle(child, by=GP)
    second = {**bundle["entry"][-1], "fullUrl": "urn:uuid:00000000-0000-4000-8000-888888888888"}
    second["resource"] = {**second["resource"], "performer": [org_reference(BUP2)]}
    bundle["entry"].append(second)
    reply = await referrals.fhir("POST", "", bundle, by=GP)
    assert reply.status == 200, reply.body
    for doc_id in attachment_ids(reply):
        read = await referrals.fhir("GET", f"DocumentReference/{doc_id}", by=GP)
        assert shared_with(read.json()) == {GP, BUP, BUP2}
        for receiver in (BUP, BUP2):
            seen = await referrals.fhir("GET", f"DocumentReference/{doc_id}", by=receiver)
            assert seen.status == 200, seen.body
        await assert_as_missing(referrals, "DocumentReference/{}", doc_id, KOMMUNE)
