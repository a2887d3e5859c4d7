"""hpl §33 disclosures (opplysningsplikt to barnevern) through the public API, against the
running stack on both databases: only about a child under 18, reported by an identified
health person, releasing exactly the versions reported, listed per child to those who
take part in it and closed by its reporter or the operator.
"""

from __future__ import annotations

import uuid
from typing import Any

from shared.identifiers import HPR_SYSTEM, ORGNR_SYSTEM
from tests.consent_world import BUP, BVT, GP, Child, World
from tests.support import Reply, diagnostics, wait_for

HPR = "9144889"
UNSTABLE_HEADERS = frozenset({"date", "x-request-id", "traceparent", "content-length"})


def reporter(world: World) -> str:
    """The GP's token naming the health person who reports."""
    return world.token(GP, hpr=HPR)


def report(
    child: Child, *resources: str, reason: str = "Blåmerker som ikke er forklart"
) -> dict[str, Any]:
    return {"patient": child.ref, "recipient": BVT, "resources": list(resources), "reason": reason}


def answer(reply: Reply, *secrets: str) -> tuple[int, str, dict[str, str]]:
    """A reply as a caller sees it, with the ids it asked about masked."""
    text = reply.body.decode()
    for secret in secrets:
        text = text.replace(secret, "<id>")
    headers = {k.lower(): v for k, v in reply.headers.items() if k.lower() not in UNSTABLE_HEADERS}
    for key, value in headers.items():
        for secret in secrets:
            headers[key] = value = value.replace(secret, "<id>")
    return reply.status, text, headers


async def disclosed(world: World, child: Child, *resources: str) -> dict[str, Any]:
    reply = await world.api("POST", "disclosures", report(child, *resources), token=reporter(world))
    assert reply.status == 201, reply.body
    answered: dict[str, Any] = reply.json()
    return answered


async def until(world: World, path: str, status: int, by: str = BVT) -> None:
    """Wait until `by` reads `path` with `status` (the access state reaches services
    through a key-value watch)."""

    async def reached() -> bool:
        return (await world.fhir("GET", path, by=by)).status == status

    await wait_for(reached, 5)


async def rewritten(world: World, note: str, text: str) -> None:
    """The GP, which wrote the note, changes it: a new version."""
    current = await world.fhir("GET", note, by=GP)
    assert current.status == 200, current.body
    changed = await world.fhir("PUT", note, {**current.json(), "description": text}, by=GP)
    assert changed.status == 200, changed.body


# -- 1. a child under 18 --------------------------------------------------------------------


async def test_a_disclosure_about_a_person_of_18_is_refused(world: World) -> None:
    adult = await world.child(18)
    note = await world.note(adult, "Mistanke om vold i hjemmet", by=GP)
    refused = await world.api("POST", "disclosures", report(adult, note), token=reporter(world))
    assert refused.status == 422, refused.body
    assert "18" in diagnostics(refused) and "§33" in diagnostics(refused)
    assert refused.issues()[0]["code"] == "business-rule"
    listed = await world.api("GET", f"patients/{adult.id}/disclosures", token=reporter(world))
    assert listed.status == 200, listed.body
    assert listed.json()["disclosures"] == [], "nothing is stored"
    assert (await world.fhir("GET", note, by=BVT)).status == 404


async def test_a_disclosure_the_day_before_the_18th_birthday_is_accepted(world: World) -> None:
    youth = await world.child(18, days=1)  # 17, 18 tomorrow
    note = await world.note(youth, "Mistanke om vold i hjemmet", by=GP)
    await disclosed(world, youth, note)
    await until(world, note, 200)


async def test_without_a_confirmed_birth_date_a_disclosure_is_refused(world: World) -> None:
    """No age can be known: the rule that §33 is about children cannot be checked, so it
    is refused, as every rule here that depends on age refuses to guess it."""
    child = await world.child(10, birth_date=False)
    note = await world.note(child, "Mistanke om omsorgssvikt", by=GP)
    refused = await world.api("POST", "disclosures", report(child, note), token=reporter(world))
    assert refused.status == 422, refused.body
    assert "birth date" in diagnostics(refused)


# -- 2. exactly the versions reported -------------------------------------------------------


async def test_a_disclosure_releases_the_reported_version_and_nothing_later(
    world: World,
) -> None:
    child = await world.child(9)
    note = await world.note(child, "Mistanke om mishandling", by=GP)
    answered = await disclosed(world, child, note)
    await until(world, note, 200)
    assert (await world.fhir("GET", f"{note}/_history/1", by=BVT)).status == 200
    search = await world.fhir(
        "GET", f"DocumentReference?patient={child.ref}&_total=accurate", by=BVT
    )
    assert search.json()["total"] == 1, "still at the version reported"

    await rewritten(world, note, "Ny opplysning etter meldingen")
    await until(world, note, 404)
    missing = f"DocumentReference/{uuid.uuid4()}"
    note_id, missing_id = note.split("/")[1], missing.split("/")[1]
    for path, unknown in (
        (note, missing),
        (f"{note}/_history/2", f"{missing}/_history/2"),
        (f"{note}/_history", f"{missing}/_history"),
    ):
        hidden = await world.fhir("GET", path, by=BVT)
        absent = await world.fhir("GET", unknown, by=BVT)
        assert hidden.status == 404, (path, hidden.body)
        assert answer(hidden, note_id) == answer(absent, missing_id), path
    vread = await world.fhir("GET", f"{note}/_history/1", by=BVT)
    assert vread.status == 200, vread.body
    assert vread.json()["description"] == "Mistanke om mishandling"
    assert vread.json()["meta"]["versionId"] == "1"
    search = await world.fhir(
        "GET", f"DocumentReference?patient={child.ref}&_total=accurate", by=BVT
    )
    assert search.json()["total"] == 0 and not search.json().get("entry")
    history = await world.fhir("GET", "DocumentReference/_history", by=BVT)
    assert history.status == 200, history.body
    versions = [e["resource"]["meta"]["versionId"] for e in history.json().get("entry", [])
                if e.get("resource", {}).get("id") == note_id]  # fmt: skip
    assert versions == ["1"], "the type's history holds the version reported, no other"
    assert (await world.fhir("GET", note, by=GP)).status == 200, "the writer reads it still"
    assert answered["disclosure"]["resources"] == [f"{note}/_history/1"]


async def test_a_resource_of_a_type_no_service_holds_is_not_disclosed(world: World) -> None:
    """Beside a note the reporter holds, a reference of a type no service serves: nothing
    of it is held, so the disclosure is refused, and none is stored."""
    child = await world.child(9)
    note = await world.note(child, "Mistanke om mishandling", by=GP)
    body = report(child, note, "Unknowntype/x1")
    refused = await world.api("POST", "disclosures", body, token=reporter(world))
    assert refused.status == 422, refused.body
    assert "Unknowntype/x1" in diagnostics(refused)
    listed = await world.api("GET", f"patients/{child.id}/disclosures", token=reporter(world))
    assert listed.json()["disclosures"] == [], "nothing is stored"


# -- 3. listed per child, closed -----------------------------------------------------------


async def test_a_disclosure_is_listed_to_its_parties_and_closed_by_its_reporter(
    world: World,
) -> None:
    child = await world.child(12)
    note = await world.note(child, "Alvorlige atferdsvansker", by=GP)
    disclosure_id = (await disclosed(world, child, note))["audit_event"]["id"]
    await until(world, note, 200)
    operator = world.stack.operator_token()
    for token in (reporter(world), world.token(BVT), operator):
        listed = await world.api("GET", f"patients/{child.id}/disclosures", token=token)
        assert listed.status == 200, listed.body
        [entry] = listed.json()["disclosures"]
        assert (entry["id"], entry["status"]) == (disclosure_id, "open")
        assert entry["resources"] == [f"{note}/_history/1"]
        assert entry["recipients"] == [BVT]
        assert entry["reporter"] == {"orgnr": GP, "hpr": HPR}

    # Without a relation to the child: exactly the answer for a child that is not there.
    stranger = await world.api("GET", f"patients/{child.id}/disclosures", by=BUP)
    nobody = str(uuid.uuid4())
    unknown = await world.api("GET", f"patients/{nobody}/disclosures", by=BUP)
    assert stranger.status == 404, stranger.body
    assert answer(stranger, child.id) == answer(unknown, nobody)
    # With a relation but no part in it: the child is there, its disclosure is not listed.
    await world.start_care(child, BUP)
    taking_part = await world.api("GET", f"patients/{child.id}/disclosures", by=BUP)
    assert taking_part.status == 200 and taking_part.json()["disclosures"] == []

    closing = {"reason": "Meldt ved en feil"}
    as_recipient = await world.api("POST", f"disclosures/{disclosure_id}/closure", closing, by=BVT)
    assert as_recipient.status == 403, as_recipient.body
    by_stranger = await world.api("POST", f"disclosures/{disclosure_id}/closure", closing, by=BUP)
    made_up = str(uuid.uuid4())
    of_nothing = await world.api("POST", f"disclosures/{made_up}/closure", closing, by=BUP)
    assert by_stranger.status == 404, by_stranger.body
    assert answer(by_stranger, disclosure_id) == answer(of_nothing, made_up)
    bad = await world.api(
        "POST", f"disclosures/{disclosure_id}/closure", {"why": "x"}, token=reporter(world)
    )
    assert bad.status == 400, bad.body

    nobody_named = await world.api("POST", f"disclosures/{disclosure_id}/closure", closing, by=GP)
    assert nobody_named.status == 403, "a health person of the reporter closes it"
    closed = await world.api(
        "POST", f"disclosures/{disclosure_id}/closure", closing, token=reporter(world)
    )
    assert closed.status == 200, closed.body
    assert closed.json()["status"] == "closed"
    assert closed.json()["closed"]["reason"] == "Meldt ved en feil"
    await until(world, note, 404)
    assert (await world.fhir("GET", f"{note}/_history/1", by=BVT)).status == 404
    again = await world.api(
        "POST", f"disclosures/{disclosure_id}/closure", closing, token=reporter(world)
    )
    assert again.status == 409, again.body
    listed = await world.api("GET", f"patients/{child.id}/disclosures", token=operator)
    [entry] = listed.json()["disclosures"]
    assert entry["status"] == "closed" and entry["closed"]["practitioner"] == HPR
    record = await world.fhir("GET", f"AuditEvent/{disclosure_id}", by=GP, token=operator)
    assert record.status == 200, "the record is kept"


async def test_the_operator_closes_a_disclosure(world: World) -> None:
    child = await world.child(6)
    note = await world.note(child, "Mistanke om omsorgssvikt", by=GP)
    disclosure_id = (await disclosed(world, child, note))["audit_event"]["id"]
    await until(world, note, 200)
    operator = world.stack.operator_token()
    closed = await world.api(
        "POST", f"disclosures/{disclosure_id}/closure", {"reason": "Feil barn"}, token=operator
    )
    assert closed.status == 200, closed.body
    await until(world, note, 404)


# -- 4. the audit record -------------------------------------------------------------------


async def test_the_record_names_the_versions_and_the_health_person(world: World) -> None:
    child = await world.child(11)
    first = await world.note(child, "Funn ved undersøkelse", by=GP)
    second = await world.note(child, "Samtale med barnet", by=GP)
    await rewritten(world, second, "Samtale med barnet, utfyllende")
    event = (await disclosed(world, child, first, second))["audit_event"]
    released = sorted(e["what"]["reference"] for e in event["entity"]
                      if e["what"]["reference"] != child.ref)  # fmt: skip
    assert released == sorted([f"{first}/_history/1", f"{second}/_history/2"])
    identifiers = [
        (
            agent["requestor"],
            agent["who"]["identifier"]["system"],
            agent["who"]["identifier"]["value"],
        )
        for agent in event["agent"]
    ]
    assert (True, HPR_SYSTEM, HPR) in identifiers, "the health person who reported"
    assert (True, ORGNR_SYSTEM, GP) in identifiers, "the organisation reporting"
    assert (False, ORGNR_SYSTEM, BVT) in identifiers, "the recipient"


async def test_a_token_without_a_health_person_cannot_report(world: World) -> None:
    child = await world.child(8)
    note = await world.note(child, "Mistanke om mishandling", by=GP)
    refused = await world.api("POST", "disclosures", report(child, note), by=GP)
    assert refused.status == 403, refused.body
    assert "HPR" in diagnostics(refused)
    listed = await world.api("GET", f"patients/{child.id}/disclosures", token=reporter(world))
    assert listed.json()["disclosures"] == [], "nothing is stored"


# -- bad input -----------------------------------------------------------------------------


async def test_bad_input_is_a_400(world: World) -> None:
    token = reporter(world)
    for method, path, body in (
        ("GET", "patients/bad%20id/disclosures", None),
        ("POST", "disclosures/bad%20id/closure", {"reason": "x"}),
        ("POST", f"disclosures/{uuid.uuid4()}/closure", {"reason": ""}),
        ("POST", f"disclosures/{uuid.uuid4()}/closure", None),
    ):
        reply = await world.api(method, path, body, token=token)
        assert reply.status == 400, (path, reply.body)
        assert reply.json()["resourceType"] == "OperationOutcome"
