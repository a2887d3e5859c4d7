"""The referral clock over HTTP: the ansiennitetsdato is the referral's arrival at the
receiver (its submission here, or an earlier arrival the receiver records once), the
assessment deadline runs from it whatever the Task's status, and a referral nobody
touches is overdue exactly once."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

from services.referral.domain.vocabulary import (
    ANSIENNITETSDATO_EXT,
    ARRIVAL_EXT,
    ARRIVAL_SOURCE_SYSTEM,
    ASSESSMENT_DEADLINE_EXT,
    BREACH_EXT,
)
from services.referral.domain.working_days import add_working_days
from shared.clock import NORWAY, today
from tests.referral_world import BUP, GP, Referral, ReferralWorld
from tests.support import diagnostics, wait_for
from tests.test_referral_scenarios import monitor_of, overdue_once, referral_events

NHN_MESSAGE = {
    "system": "urn:ietf:rfc:3986",
    "value": "urn:uuid:6f1c8d3e-2b7a-4c55-9e0f-0d1a2b3c4d5e",
}


def ext(resource: dict[str, Any], url: str) -> list[Any]:
    return [e for e in resource.get("extension", []) if e["url"] == url]


def dates(task: dict[str, Any]) -> tuple[str, str]:
    """The Task's ansiennitetsdato and assessment deadline."""
    return (
        ext(task, ANSIENNITETSDATO_EXT)[0]["valueDate"],
        ext(task, ASSESSMENT_DEADLINE_EXT)[0]["valueDate"],
    )


def breaches(task: dict[str, Any]) -> list[str]:
    return [e["valueCoding"]["code"] for e in ext(task, BREACH_EXT)]


def parts(task: dict[str, Any]) -> dict[str, Any]:
    """The parts of the Task's arrival, by name."""
    (arrival,) = ext(task, ARRIVAL_EXT)
    return {part["url"]: part for part in arrival["extension"]}


def arrival(at: str, source: str = "nhn-melding", identifier: Any = None) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        {"url": "at", "valueDateTime": at},
        {"url": "source", "valueCoding": {"system": ARRIVAL_SOURCE_SYSTEM, "code": source}},
    ]
    if identifier is not None:
        found.append({"url": "identifier", "valueIdentifier": identifier})
    return {"url": ARRIVAL_EXT, "extension": found}


async def record(
    referrals: ReferralWorld, referral: Referral, value: dict[str, Any] | None, by: str = BUP
) -> Any:
    """PUT the Task back unchanged but for its arrival (`None`: left out)."""
    task, etag = await referrals.task(referral, by=by)
    task["extension"] = [e for e in task.get("extension", []) if e["url"] != ARRIVAL_EXT]
    if value is not None:
        task["extension"].append(value)
    return await referrals.fhir(
        "PUT", f"Task/{referral.task_id}", task, by=by, headers={"If-Match": etag}
    )


async def test_a_referral_submitted_here_is_on_the_clock_from_its_submission(
    referrals: ReferralWorld,
) -> None:
    referral = await referrals.submit(await referrals.child())
    task, _ = await referrals.task(referral)
    assert task["status"] == "requested"
    day = today()
    expected = (day.isoformat(), add_working_days(day, 10).isoformat())
    assert dates(task) == expected
    arrived = parts(task)
    assert arrived["at"]["valueDateTime"] == task["authoredOn"]
    assert arrived["source"]["valueCoding"]["code"] == "barnebro"
    found = await referrals.fhir(
        "GET", f"Task?status=requested&ansiennitetsdato={day}&assessment-deadline={expected[1]}"
        f"&focus={referral.ref}", by=BUP,
    )  # fmt: skip
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [referral.task_id]
    # Receiving it, even days later, changes none of its dates.
    reply = await referrals.move(referral, "received")
    assert reply.status == 200, reply.body
    assert dates(reply.json()) == expected
    assert (await referrals.move(referral, "on-hold")).status == 200
    reply = await referrals.move(referral, "received")
    assert reply.status == 200, reply.body
    assert dates(reply.json()) == expected
    assert parts(reply.json())["source"]["valueCoding"]["code"] == "barnebro"


async def test_an_untouched_referral_is_overdue_once_across_restarts_and_instances(
    referrals: ReferralWorld,
) -> None:
    referral = await referrals.submit(await referrals.child())
    task, _ = await referrals.task(referral)
    start, deadline_text = dates(task)
    deadline = date.fromisoformat(deadline_text)
    await overdue_once(referrals, deadline)
    found = await referrals.fhir(
        "GET", "Task?deadline-breach=assessment-overdue&status=requested", by=BUP
    )
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [referral.task_id]
    task, _ = await referrals.task(referral)
    assert task["status"] == "requested"
    assert breaches(task) == ["assessment-overdue"]
    # Received late: the dates stay, the breach stays raised once.
    reply = await referrals.move(referral, "received")
    assert reply.status == 200, reply.body
    assert dates(reply.json()) == (start, deadline_text)
    assert breaches(reply.json()) == ["assessment-overdue"]
    assert await monitor_of(referrals.referral).scan(deadline + timedelta(days=6)) == 0

    async def published() -> bool:
        names = [e.name for e in await referral_events(referrals, referral)]
        return "assessment-overdue" in names and "received" in names

    await wait_for(published)
    await asyncio.sleep(0.3)  # anything raised twice would have arrived by now
    events = await referral_events(referrals, referral)
    overdue = [e for e in events if e.name == "assessment-overdue"]
    assert len(overdue) == 1
    assert overdue[0].data["status"] == "requested"
    assert overdue[0].data["ansiennitetsdato"] == start


async def test_the_receiver_records_an_earlier_arrival_once(referrals: ReferralWorld) -> None:
    referral = await referrals.submit(await referrals.child())
    task, _ = await referrals.task(referral)
    submitted = datetime.fromisoformat(task["authoredOn"])
    arrived = (datetime.now(NORWAY) - timedelta(days=30)).replace(microsecond=0)
    earlier = arrival(arrived.isoformat(), identifier=NHN_MESSAGE)

    # Only the receiver records it, with what documents it, never after the submission.
    reply = await record(referrals, referral, earlier, by=GP)
    assert reply.status == 403, reply.body
    reply = await record(referrals, referral, arrival(arrived.isoformat()))
    assert reply.status == 422, reply.body
    assert "message id" in diagnostics(reply)
    later = (submitted + timedelta(seconds=1)).isoformat()
    reply = await record(referrals, referral, arrival(later, identifier=NHN_MESSAGE))
    assert reply.status == 422, reply.body
    assert "submitted here" in diagnostics(reply)
    tomorrow = (today() + timedelta(days=1)).isoformat()
    reply = await record(referrals, referral, arrival(tomorrow, "papir"))
    assert reply.status == 422, reply.body
    reply = await record(referrals, referral, arrival("2026-02-20T10:00:00", "papir"))
    assert reply.status == 422, reply.body  # a time needs its zone
    reply = await record(referrals, referral, arrival(arrived.isoformat(), "barnebro"))
    assert reply.status == 422, reply.body
    reply = await record(referrals, referral, arrival(arrived.isoformat(), "telefon"))
    assert reply.status == 422, reply.body
    task, _ = await referrals.task(referral)
    assert parts(task)["source"]["valueCoding"]["code"] == "barnebro"  # nothing changed

    # The receiver records the NHN message that brought the referral a month ago: the
    # clock runs from then, and the deadline it has passed is marked by the same write.
    reply = await record(referrals, referral, earlier)
    assert reply.status == 200, reply.body
    task = reply.json()
    day = arrived.date()
    expected = (day.isoformat(), add_working_days(day, 10).isoformat())
    assert dates(task) == expected
    assert breaches(task) == ["assessment-overdue"]
    stored = parts(task)
    assert stored["at"]["valueDateTime"] == arrived.isoformat()
    assert stored["source"]["valueCoding"]["code"] == "nhn-melding"
    assert stored["identifier"]["valueIdentifier"] == NHN_MESSAGE
    assert stored["by"]["valueIdentifier"]["value"] == BUP
    assert "recorded" in stored

    # The same arrival again, in another zone or left out, is no change.
    same = arrival(arrived.astimezone(UTC).isoformat(), identifier=NHN_MESSAGE)
    for value in (earlier, same, None):
        reply = await record(referrals, referral, value)
        assert reply.status == 200, reply.body
        assert dates(reply.json()) == expected
        assert parts(reply.json()) == stored
    # Another arrival is refused: the ansiennitetsdato does not move.
    for value in (
        arrival((arrived - timedelta(days=3)).isoformat(), identifier=NHN_MESSAGE),
        arrival(arrived.isoformat(), "papir"),
        arrival(task["authoredOn"], "barnebro"),
    ):
        reply = await record(referrals, referral, value)
        assert reply.status == 409, reply.body
        assert reply.json()["resourceType"] == "OperationOutcome"
        assert "does not move" in diagnostics(reply)

    # Receiving and assessing it change none of its dates; the breach was raised once.
    reply = await referrals.move(referral, "received")
    assert reply.status == 200, reply.body
    assert dates(reply.json()) == expected
    assert (await referrals.accept(referral)).status == 200
    task, _ = await referrals.task(referral)
    assert dates(task) == expected
    assert breaches(task) == ["assessment-overdue"]
    assert await monitor_of(referrals.referral).scan(today() + timedelta(days=1)) == 0
    found = await referrals.fhir("GET", f"Task?ansiennitetsdato={day}&owner:identifier="
                                 f"urn:oid:2.16.578.1.12.4.1.4.101|{BUP}", by=BUP)  # fmt: skip
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [referral.task_id]

    async def published() -> bool:
        names = [e.name for e in await referral_events(referrals, referral)]
        return "accepted" in names and "assessment-overdue" in names

    await wait_for(published)
    names = [e.name for e in await referral_events(referrals, referral)]
    assert names.count("assessment-overdue") == 1


async def test_an_arrival_on_paper_is_a_day(referrals: ReferralWorld) -> None:
    """A paper stamped mottatt gives the day only; the day of the submission will do."""
    referral = await referrals.submit(await referrals.child())
    day = today()
    reply = await record(referrals, referral, arrival(day.isoformat(), "papir"))
    assert reply.status == 200, reply.body
    assert dates(reply.json()) == (day.isoformat(), add_working_days(day, 10).isoformat())
    assert parts(reply.json())["source"]["valueCoding"]["code"] == "papir"
    reply = await record(referrals, referral, arrival(day.isoformat(), "papir"))
    assert reply.status == 200, reply.body  # the same again
    # A closed referral's dates no longer change.
    assert (await referrals.move(referral, "cancelled", by=GP)).status == 200
    reply = await record(referrals, referral, arrival(day.isoformat(), "papir", NHN_MESSAGE))
    assert reply.status == 409, reply.body
