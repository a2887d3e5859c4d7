"""What real clients ask of searches and reads beyond criteria: `_summary`, `_elements`,
`_count=0`, fhirpy's `_totalMethod`, and an emergency reason in Norwegian in a header;
through the HTTP API on both databases, within the access rules."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import quote

from shared.identifiers import FNR_SYSTEM, ORGNR_SYSTEM
from tests.consent_world import BUP, BVT, GP, LEGEVAKT, SKOLE, World
from tests.journal_service import note
from tests.referral_world import ReferralWorld
from tests.support import Reply, Stack, diagnostics, wait_for

SUBSETTED = "SUBSETTED"
NARRATIVE = {
    "status": "generated",
    "div": '<div xmlns="http://www.w3.org/1999/xhtml">Lege Subsett</div>',
}


def practitioner(family: str) -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "text": NARRATIVE,
        "name": [{"family": family}],
        "gender": "female",
        "communication": [{"text": "norsk"}],
        "qualification": [{"code": {"text": "Lege"}}],
    }


def tagged(resource: dict[str, Any]) -> bool:
    return SUBSETTED in {t.get("code") for t in resource.get("meta", {}).get("tag", [])}


def matches(reply: Reply) -> list[dict[str, Any]]:
    assert reply.status == 200, reply.body
    return [e["resource"] for e in reply.json().get("entry", []) if e["search"]["mode"] == "match"]


async def test_summary_count_and_count_zero_answer_the_total_alone(stack: Stack) -> None:
    for _ in range(3):
        assert (await stack.call("POST", "Practitioner", practitioner("Telling"))).status == 201
    for asked in ("_summary=count", "_count=0", "_summary=count&_count=2"):
        reply = await stack.call("GET", f"Practitioner?family=Telling&{asked}")
        assert reply.status == 200, reply.body
        bundle = reply.json()
        assert (bundle["type"], bundle["total"]) == ("searchset", 3), asked
        assert not bundle.get("entry"), asked
        assert [link["relation"] for link in bundle["link"]] == ["self"], asked
    posted = await stack.call(
        "POST",
        "Practitioner/_search",
        raw=b"family=Telling&_summary=count",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert posted.status == 200 and posted.json()["total"] == 3, posted.body

    statement = (await stack.call("GET", "metadata", authenticated=False)).json()
    listed = {p["name"] for p in statement["rest"][0]["searchParam"]}
    assert {"_summary", "_elements"} <= listed

    counted = await stack.call("GET", "Practitioner?family=Telling&_totalMethod=count")
    assert counted.json()["total"] == 3 and len(matches(counted)) == 3
    for wrong in ("_totalMethod=estimate", "_summary=maybe", "_summary=", "_elements=nosuch"):
        refused = await stack.call("GET", f"Practitioner?family=Telling&{wrong}")
        assert refused.status == 400, (wrong, refused.body)
        assert refused.json()["resourceType"] == "OperationOutcome"
        assert wrong.split("=")[0] in diagnostics(refused) + str(refused.issues()), wrong


async def test_summary_and_elements_cut_searches_and_reads(stack: Stack) -> None:
    created = await stack.call("POST", "Practitioner", practitioner("Subsett"))
    assert created.status == 201, created.body
    whole = created.json()
    path = f"Practitioner/{whole['id']}"
    search = "Practitioner?family=Subsett"

    summary = matches(await stack.call("GET", f"{search}&_summary=true"))
    assert len(summary) == 1 and tagged(summary[0])
    assert set(summary[0]) == {"resourceType", "id", "meta", "name", "gender"}, summary[0]
    assert summary[0]["meta"]["versionId"] == "1"

    text = matches(await stack.call("GET", f"{search}&_summary=text"))[0]
    assert set(text) == {"resourceType", "id", "meta", "text"} and tagged(text)
    data = matches(await stack.call("GET", f"{search}&_summary=data"))[0]
    assert "text" not in data and data["qualification"] == whole["qualification"]
    assert tagged(data)
    full = matches(await stack.call("GET", f"{search}&_summary=false"))[0]
    assert full == whole and not tagged(full)
    elements = matches(await stack.call("GET", f"{search}&_elements=gender,Practitioner.name"))
    assert set(elements[0]) == {"resourceType", "id", "meta", "gender", "name"}
    assert tagged(elements[0])

    read = await stack.call("GET", f"{path}?_summary=true")
    assert read.status == 200 and read.json() == summary[0], read.body
    assert read.headers["ETag"] == 'W/"1"'
    picked = (await stack.call("GET", f"{path}?_elements=communication")).json()
    assert set(picked) == {"resourceType", "id", "meta", "communication"} and tagged(picked)
    version = (await stack.call("GET", f"{path}/_history/1?_summary=text")).json()
    assert set(version) == {"resourceType", "id", "meta", "text"}
    assert (await stack.call("GET", path)).json() == whole, "a plain read is whole"
    for wrong in ("_summary=count", "_summary=all", "_elements=name.family",
                  "_summary=true&_elements=name"):  # fmt: skip
        refused = await stack.call("GET", f"{path}?{wrong}")
        assert refused.status == 400, (wrong, refused.body)

    for _ in range(2):
        await stack.call("POST", "Practitioner", practitioner("Subsett"))
    first = await stack.call("GET", f"{search}&_elements=gender&_count=2")
    following = next(x["url"] for x in first.json()["link"] if x["relation"] == "next")
    assert "_elements=gender" in following
    rest = matches(await stack.call("GET", following))
    assert rest and all(set(r) == {"resourceType", "id", "meta", "gender"} for r in rest)


async def test_a_hidden_resource_is_neither_counted_nor_cut(world: World) -> None:
    child = await world.child(9)
    notes = f"DocumentReference?patient={child.ref}"

    async def count(by: str, asked: str = "_summary=count") -> int:
        reply = await world.fhir("GET", f"{notes}&{asked}", by=by)
        assert reply.status == 200, reply.body
        assert not reply.json().get("entry")
        total: int = reply.json()["total"]
        return total

    own = {**note(child.id, "Fastlegens notat"), "text": NARRATIVE}
    assert (await world.fhir("POST", "DocumentReference", own, by=GP)).status == 201
    assert await count(GP) == 1
    assert await count(SKOLE) == 0
    for written in ("Bekymring", "Samtale"):
        await world.note(child, written, by=BVT)
    # Without a consent, the fastlege's count is as if barnevern's notes did not exist.
    for asked in ("_summary=count", "_count=0", "_summary=count&_total=none"):
        assert await count(GP, asked) == 1, asked
    assert await count(SKOLE) == 0
    assert await count(BUP) == 0
    counted = await world.fhir("GET", f"{notes}&_totalMethod=count", by=GP)
    assert counted.json()["total"] == len(matches(counted)) == 1
    assert await count(BVT) == len(matches(await world.fhir("GET", notes, by=BVT)))

    summary = matches(await world.fhir("GET", f"{notes}&_summary=true", by=GP))
    assert len(summary) == 1 and "text" not in summary[0] and tagged(summary[0])
    assert summary[0]["description"] == "Fastlegens notat"
    text = matches(await world.fhir("GET", f"{notes}&_summary=text", by=GP))[0]
    assert set(text) == {"resourceType", "id", "meta", "text", "status", "content"}, text
    picked = matches(await world.fhir("GET", f"{notes}&_elements=description", by=GP))[0]
    assert set(picked) == {"resourceType", "id", "meta", "description", "status", "content"}
    hidden = next(
        e["resource"]["id"]
        for e in (await world.fhir("GET", notes, by=BVT)).json()["entry"]
        if e["resource"].get("description") == "Bekymring"
    )
    for asked in ("", "?_summary=true", "?_elements=status", "?_summary=text"):
        read = await world.fhir("GET", f"DocumentReference/{hidden}{asked}", by=GP)
        assert read.status == 404, (asked, read.body)

    # The count is audited as a search is: who asked for what, nothing released.
    operator = world.stack.operator_token()

    async def count_records() -> list[dict[str, Any]]:
        searches = f"AuditEvent?agent={ORGNR_SYSTEM}|{GP}&subtype=search&_count=200"
        events = matches(await world.fhir("GET", searches, by=GP, token=operator))
        return [
            event
            for event in events
            for entity in event["entity"]
            if "query" in entity
            and any(
                asked in base64.b64decode(entity["query"]).decode()
                for asked in ("_summary=count", "_count=0")
            )
        ]

    async def recorded() -> bool:
        return len(await count_records()) >= 4

    await wait_for(recorded, 5)
    for event in await count_records():
        assert not any("what" in entity for entity in event["entity"]), event


async def test_a_look_up_by_number_may_be_cut_but_not_counted(
    referrals: ReferralWorld,
) -> None:
    """An exact fødselsnummer finds the child itself (as a subset) for a caller without
    a relation; asked for the total alone, it is an ordinary search, which counts only
    the children the caller has a relation to: a count would tell that the child is
    registered without releasing, and so without auditing, the child."""
    child = await referrals.child()
    by_number = f"Patient?identifier={FNR_SYSTEM}|{child.fnr}"
    by = LEGEVAKT  # the same organisation in both worlds
    assert len(matches(await referrals.fhir("GET", by_number, by=by))) == 1
    for shaped in ("_format=json", "_pretty=true"):  # they shape the answer, not the look-up
        assert len(matches(await referrals.fhir("GET", f"{by_number}&{shaped}", by=by))) == 1
    named = matches(await referrals.fhir("GET", f"{by_number}&_elements=name", by=by))
    assert len(named) == 1 and set(named[0]) == {"resourceType", "id", "meta", "name"}
    assert [t["code"] for t in named[0]["meta"]["tag"]].count(SUBSETTED) == 1
    summary = matches(await referrals.fhir("GET", f"{by_number}&_summary=true", by=by))
    assert len(summary) == 1 and "contact" not in summary[0]
    for asked in ("_summary=count", "_count=0"):
        reply = await referrals.fhir("GET", f"{by_number}&{asked}", by=by)
        assert reply.status == 200 and reply.json()["total"] == 0, (asked, reply.body)


async def test_an_emergency_reason_in_norwegian_travels_encoded(world: World) -> None:
    child = await world.child(9)
    journal = await world.note(child, "Allergi", by=BVT)
    doctor = world.token(LEGEVAKT, hpr="9144889")
    reason = "Bevisstløs på gården, må se journalen (ærlig grunn)"
    encoded = "UTF-8''" + quote(reason, safe="")
    assert encoded.isascii()
    glass = {"Barnebro-Emergency-Patient": child.ref, "Barnebro-Emergency-Reason": encoded}
    read = await world.fhir("GET", journal, by=LEGEVAKT, token=doctor, headers=glass)
    assert read.status == 200, read.body

    plain = {**glass, "Barnebro-Emergency-Reason": "Bevisstlos, akutt"}
    assert (await world.fhir("GET", journal, by=LEGEVAKT, token=doctor, headers=plain)).status == (
        200
    )
    for malformed in ("UTF-8''%C3", "UTF-8''%ZZ%20grunn", "UTF-8''ikke kodet", "latin1''x",
                      "UTF-8''%0Alinje", "med\ttab", "UTF-8''abc%E2%80%AEdef",
                      "UTF-8''abc%E2%80%A8def", "x" * 1001):  # fmt: skip
        bad = {**glass, "Barnebro-Emergency-Reason": malformed}
        refused = await world.fhir("GET", journal, by=LEGEVAKT, token=doctor, headers=bad)
        assert refused.status == 400, (malformed, refused.body)
        assert "Barnebro-Emergency-Reason" in diagnostics(refused), malformed

    longest = "Bevisstløs, " + "ø" * 982 + " slutt"  # 1000 characters, stored whole
    whole = {**glass, "Barnebro-Emergency-Reason": "UTF-8''" + quote(longest, safe="")}
    assert (await world.fhir("GET", journal, by=LEGEVAKT, token=doctor, headers=whole)).status == (
        200
    )

    operator = world.stack.operator_token()
    pending = f"AuditEvent?patient={child.ref}&review=pending"

    async def reasons() -> set[str]:
        events = matches(await world.fhir("GET", pending, by=BVT, token=operator))
        return {e.get("outcomeDesc", "") for e in events}

    async def all_audited() -> bool:
        return len(await reasons()) >= 3

    await wait_for(all_audited, 5)
    assert await reasons() == {
        f"Emergency access: {reason}",
        "Emergency access: Bevisstlos, akutt",
        f"Emergency access: {longest}",
    }


async def test_a_purpose_of_use_is_a_code_a_reviewer_can_read(world: World) -> None:
    """The stated purpose is recorded with every access: only codes of HL7's
    GeneralPurposeOfUse value set are taken, and emergency treatment only as emergency
    access, with its reason."""
    child = await world.child(9)
    journal = await world.note(child, "Allergi", by=BVT)
    for purpose in ("TREAT", "HOPERAT", " PUBHLTH "):
        stated = {"Barnebro-Purpose-Of-Use": purpose}
        read = await world.fhir("GET", journal, by=BVT, headers=stated)
        assert read.status == 200, (purpose, read.body)
    for purpose in ("BOGUS", "treat", "TREATX", "ACT", "", "ETREAT"):
        stated = {"Barnebro-Purpose-Of-Use": purpose}
        refused = await world.fhir("GET", journal, by=BVT, headers=stated)
        assert refused.status == 400, (purpose, refused.body)
        assert "Barnebro-Purpose-Of-Use" in diagnostics(refused), purpose
    doctor = world.token(LEGEVAKT, hpr="9144889")
    glass = {
        "Barnebro-Emergency-Patient": child.ref,
        "Barnebro-Emergency-Reason": "Bevisstlos, akutt",
        "Barnebro-Purpose-Of-Use": "ETREAT",
    }
    read = await world.fhir("GET", journal, by=LEGEVAKT, token=doctor, headers=glass)
    assert read.status == 200, read.body
    for name, values in (("Barnebro-Purpose-Of-Use", ("TREAT", "ETREAT")),
                         ("Barnebro-Emergency-Reason", ("Akutt", "Noe annet"))):  # fmt: skip
        repeated = [("Authorization", f"Bearer {doctor}"), ("Accept", "application/fhir+json")]
        repeated += [(k, v) for k, v in glass.items() if k != name]
        repeated += [(name, value) for value in values]
        url = f"{world.stack.base}/{journal}"
        async with world.stack.session.get(url, headers=repeated) as answer:
            assert answer.status == 400, (name, await answer.text())
            assert f"The {name} header is sent once" in await answer.text()
