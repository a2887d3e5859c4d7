"""Answering a complaint: who could see what, when, on which basis (DOMAIN §4).

The consent administration API answers as the directory and the consent records stood at
an earlier instant (`as_of`), and a consent's history says who changed each version; on
the running stack (gateway, directory, consent and the journal test service), real NATS
and both databases."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from shared.fhir.search_params import format_instant
from shared.identifiers import ORGNR_SYSTEM
from tests.consent_world import BUP, BVT, GP, HEARD, SKOLE, World, sharing, signature
from tests.support import wait_for

AUDITOR = "system/*.cruds system/AuditEvent.rs"


def instant() -> str:
    return format_instant(datetime.now(UTC))


async def moment_passes() -> str:
    """An instant strictly between what was written before and what is written after."""
    await asyncio.sleep(0.01)
    now = instant()
    await asyncio.sleep(0.01)
    return now


def bup_reads_journal(child_ref: str, as_of: str | None = None) -> dict[str, Any]:
    question: dict[str, Any] = {
        "actor": {"orgnr": BUP, "kind": "bup"},
        "patient": child_ref,
        "category": "journal",
    }
    if as_of is not None:
        question["as_of"] = as_of
    return question


async def test_a_decision_as_of_an_earlier_instant_follows_the_consent_then(world: World) -> None:
    """BUP read the journal under a consent the parents later withdrew: asked about the
    day it read, the answer is the consent (and its version) in force then."""
    child = await world.child(13)
    before = await moment_passes()
    both = sharing(child, signature(child.mother), signature(child.father), child_view=HEARD)
    granted = await world.api("POST", "consents", both)
    assert granted.json()["status"] == "active", granted.body
    consent = granted.json()["id"]
    while_active = await moment_passes()
    withdrawn = await world.api("POST", f"consents/{consent}/withdrawal", {"by": child.father})
    assert withdrawn.status == 200, withdrawn.body
    auditor = world.token(BVT, scope=AUDITOR)

    then = await world.api("POST", "decisions", bup_reads_journal(child.ref, while_active),
                           token=auditor)  # fmt: skip
    assert then.status == 200, then.body
    answer = then.json()
    assert (answer["permit"], answer["basis"]) == (True, "consent"), answer
    assert answer["consents"] == [f"Consent/{consent}"]
    assert answer["consent_versions"] == [f"Consent/{consent}/_history/1"]
    assert answer["as_of"] == while_active

    async def denied_now() -> bool:
        now = await world.api("POST", "decisions", bup_reads_journal(child.ref), token=auditor)
        return now.json()["permit"] is False

    await wait_for(denied_now, 5)  # once the withdrawal has reached the mirrored state
    earlier = await world.api(
        "POST", "decisions", bup_reads_journal(child.ref, before), token=auditor
    )
    assert earlier.json()["permit"] is False, "no consent had been recorded yet"
    assert earlier.json()["consent_versions"] == []


async def test_authority_as_of_follows_the_directory_then(world: World) -> None:
    """A care order recorded later moves who may consent; asked as of before it, the
    parents were the ones."""
    child = await world.child(14)
    before = await moment_passes()
    patient = (await world.fhir("GET", child.ref, by=BVT)).json()
    patient["contact"] = [world.care_order()]
    assert (await world.fhir("PUT", child.ref, patient, by=BVT)).status == 200
    query = f"authority?patient={child.ref}&purpose=informasjonsdeling"

    now = await world.api("GET", query)
    assert now.status == 200, now.body
    assert now.json()["rule"] == "care-order"
    then = await world.api("GET", f"{query}&as_of={quote(before)}")
    assert then.status == 200, then.body
    answer = then.json()
    assert answer["rule"] == "parents", answer
    assert answer["grantors"][0]["members"] == sorted([child.mother, child.father])
    assert (answer["age"], answer["as_of"]) == (14, before)
    with_offset = quote(datetime.fromisoformat(before).astimezone().isoformat())
    same = await world.api("GET", f"{query}&as_of={with_offset}")
    assert same.status == 200 and same.json()["rule"] == "parents", same.body


async def test_as_of_refuses_bad_input_and_hides_children_without_a_relation(
    world: World,
) -> None:
    child = await world.child(12)
    query = f"authority?patient={child.ref}&purpose=helsehjelp"
    future = format_instant(datetime.now(UTC) + timedelta(days=1))
    for bad in ("yesterday", "2026-02-30T10:00:00Z", "2025-01-01T10:00:00", "2025-01-01", future,
                "0001-01-01T00:00:00+14:00"):  # fmt: skip
        reply = await world.api("GET", f"{query}&as_of={quote(bad)}")
        assert reply.status == 400, (bad, reply.body)
        issue = reply.issues()[0]
        assert issue["diagnostics"].startswith("as_of"), issue
        assert issue["expression"] == ["as_of"], issue
        decided = await world.api(
            "POST",
            "decisions",
            bup_reads_journal(child.ref, bad),
            token=world.token(BVT, scope=AUDITOR),
        )
        assert decided.status == 400, (bad, decided.body)
        assert "as_of" in decided.issues()[0]["diagnostics"]
    unregistered_then = await world.api("GET", f"{query}&as_of=2000-01-01T00:00:00Z")
    assert unregistered_then.status == 422, unregistered_then.body
    past = quote(instant())
    stranger = await world.api("GET", f"{query}&as_of={past}", by=GP)
    missing = await world.api(
        "GET", f"authority?patient=Patient/made-up&purpose=helsehjelp&as_of={past}", by=GP
    )
    assert (stranger.status, missing.status) == (404, 404)
    assert stranger.body.replace(child.id.encode(), b"made-up") == missing.body


def changed_by(version: dict[str, Any]) -> dict[str, Any]:
    (extension,) = [
        e for e in version["meta"].get("extension", [])
        if e["url"] == "https://fhir.barnebro.no/StructureDefinition/changed-by"
    ]  # fmt: skip
    return {part["url"]: next(v for k, v in part.items() if k.startswith("value"))
            for part in extension["extension"]}  # fmt: skip


async def test_a_consents_history_says_who_changed_each_version(world: World) -> None:
    """Recorded by the barnevernstjeneste, answered by the father logged in as himself,
    withdrawn on the mother's behalf: each version names who did it; the care team and
    the parents read the history, anyone else gets the answer of a missing consent."""
    child = await world.child(13)
    first = await world.api(
        "POST", "consents", sharing(child, signature(child.mother), child_view=HEARD)
    )
    assert first.json()["status"] == "proposed", first.body
    consent = first.json()["id"]
    father = world.token(SKOLE, fhir_user=child.father)

    async def father_sees_it() -> bool:
        reply = await world.fhir("GET", f"Consent/{consent}", by=SKOLE, token=father)
        return reply.status == 200

    await wait_for(father_sees_it, 5)  # once the child's state has reached every service
    signed = await world.api(
        "POST", f"consents/{consent}/signatures", signature(child.father), token=father
    )
    assert signed.status == 200 and signed.json()["status"] == "active", signed.body
    withdrawn = await world.api("POST", f"consents/{consent}/withdrawal", {"by": child.mother})
    assert withdrawn.status == 200, withdrawn.body

    history = await world.fhir("GET", f"Consent/{consent}/_history", by=BVT)
    assert history.status == 200, history.body
    versions = [e["resource"] for e in history.json()["entry"]]
    assert [v["meta"]["versionId"] for v in versions] == ["3", "2", "1"]
    assert [changed_by(v) for v in reversed(versions)] == [
        {"change": "recorded", "organization": {"system": ORGNR_SYSTEM, "value": BVT}},
        {"change": "answered", "person": {"reference": child.father},
         "organization": {"system": ORGNR_SYSTEM, "value": SKOLE}},
        {"change": "withdrawn", "organization": {"system": ORGNR_SYSTEM, "value": BVT}},
    ]  # fmt: skip
    assert [v["status"] for v in versions] == ["inactive", "active", "proposed"]

    mother = world.token(SKOLE, fhir_user=child.mother)
    for reader in (world.token(BVT), world.token(BUP), mother, father):
        seen = await world.fhir("GET", f"Consent/{consent}/_history", by=BVT, token=reader)
        assert seen.status == 200, seen.body
        assert len(seen.json()["entry"]) == 3
        first_version = await world.fhir(
            "GET", f"Consent/{consent}/_history/1", by=BVT, token=reader
        )
        assert first_version.status == 200, first_version.body
        assert changed_by(first_version.json())["change"] == "recorded"

    stranger = world.token(SKOLE, fhir_user="RelatedPerson/not-a-parent")
    for reader in (world.token(GP), stranger):
        for path in (f"Consent/{consent}/_history", f"Consent/{consent}/_history/2"):
            hidden = await world.fhir("GET", path, by=GP, token=reader)
            missing = await world.fhir("GET", path.replace(consent, "made-up"), by=GP, token=reader)
            assert (hidden.status, missing.status) == (404, 404), path
            assert hidden.body.replace(consent.encode(), b"made-up") == missing.body
            assert hidden.headers.get("Content-Type") == missing.headers.get("Content-Type")
