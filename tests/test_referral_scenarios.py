"""Referral scenarios end to end: the events of a whole lifecycle, deadline breaches
raised exactly once across restarts and instances, and the Gutt 11 case (DOMAIN §9)."""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

from services.referral import referral_spec
from services.referral.deadline_monitor import DeadlineMonitor
from services.referral.domain.vocabulary import APPEAL_EXT, ASSESSMENT_DEADLINE_EXT, BREACH_EXT
from services.referral.records import set_extension
from shared.events import DomainEvent
from shared.runtime import ServiceRuntime
from shared.transport.wire import Caller, FhirRequest
from tests.referral_world import (
    BUP,
    BVT,
    GP,
    KOMMUNE,
    VALID_JUSTIFICATION,
    Referral,
    ReferralWorld,
    closing,
    follow_up,
    frist,
    no_shows,
    rejection,
    step,
)
from tests.support import stream_events, wait_for


async def referral_events(referrals: ReferralWorld, referral: Referral) -> list[DomainEvent]:
    """The referral service's events about one referral (its ServiceRequest or Task)."""
    events = await stream_events(referrals.stack)
    ids = {referral.id, referral.task_id}
    return [e for _, e in events if e.source == "referral" and e.resource_id in ids]


def monitor_of(service: ServiceRuntime) -> DeadlineMonitor:
    return next(c for c in service.components if isinstance(c, DeadlineMonitor))


async def overdue_once(referrals: ReferralWorld, deadline: date) -> None:
    """The monitor marks a referral overdue once: not on its deadline day, once the day
    after with two instances scanning at the same time, and not again after a restart."""
    monitor = monitor_of(referrals.referral)
    assert await monitor.scan(deadline) == 0  # the deadline day itself is still in time
    second = ServiceRuntime(referral_spec(referrals.stack.settings), referrals.stack.settings)
    await second.start()
    try:
        day = deadline + timedelta(days=1)
        marked = await asyncio.gather(monitor.scan(day), monitor_of(second).scan(day))
        assert sorted(marked) == [0, 1]
    finally:
        await second.stop()
    await referrals.referral.stop()  # a restart of the only instance
    restarted = ServiceRuntime(referral_spec(referrals.stack.settings), referrals.stack.settings)
    await restarted.start()
    referrals.referral = restarted
    assert await monitor_of(referrals.referral).scan(deadline + timedelta(days=5)) == 0


async def test_every_state_change_raises_an_event_with_its_parties(
    referrals: ReferralWorld,
) -> None:
    child = await referrals.child()
    referral = await referrals.submit(child)
    assert (await referrals.accept(referral)).status == 200
    assert (await referrals.move(referral, "in-progress")).status == 200
    assert (await referrals.move(referral, "on-hold")).status == 200
    assert (await referrals.move(referral, "in-progress")).status == 200
    reply = await referrals.move(
        referral, "in-progress", extension=[no_shows(3)], businessStatus=step("avslutning-varslet")
    )
    assert reply.status == 200, reply.body
    reply = await referrals.move(referral, "cancelled", **closing("gjentatte-uteblivelser"))
    assert reply.status == 200, reply.body
    expected = ["ServiceRequest.submitted", "Task.received", "Task.accepted", "Task.started",
                "Task.on-hold", "Task.resumed", "Task.closure-warning", "Task.no-show-recorded",
                "Task.closed", "ServiceRequest.updated"]  # fmt: skip

    async def all_published() -> bool:
        return len(await referral_events(referrals, referral)) >= len(expected)

    await wait_for(all_published)
    events = await referral_events(referrals, referral)
    assert [f"{e.resource_type}.{e.name}" for e in events] == expected
    for event in events:
        assert event.patient == child.id
        assert event.data["parties"] == sorted([GP, BUP])
        assert event.subject("p").endswith(f".{child.id}")
    accepted = next(e for e in events if e.name == "accepted")
    assert accepted.data["frist"] == (date.today() + timedelta(days=30)).isoformat()
    assert accepted.data["actor"]["orgnr"] == BUP
    closed = next(e for e in events if e.name == "closed")
    assert closed.data["reason"] == "gjentatte-uteblivelser"
    submitted = events[0]
    assert submitted.data["completeness"] == ["komplett"]
    assert submitted.data["actor"]["orgnr"] == GP


async def test_deadline_breaches_are_raised_exactly_once_across_restarts_and_instances(
    referrals: ReferralWorld,
) -> None:
    referral = await referrals.submit(await referrals.child())
    reply = await referrals.move(referral, "received")
    assert reply.status == 200, reply.body
    deadline = date.fromisoformat(
        next(
            e["valueDate"] for e in reply.json()["extension"] if e["url"] == ASSESSMENT_DEADLINE_EXT
        )
    )
    await overdue_once(referrals, deadline)
    found = await referrals.fhir(
        "GET", "Task?deadline-breach=assessment-overdue&status=received", by=BUP
    )
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [referral.task_id]
    task, _ = await referrals.task(referral)
    assert [e["valueCoding"]["code"] for e in task["extension"] if e["url"] == BREACH_EXT] == [
        "assessment-overdue"
    ]
    # The frist: accepted late, then care does not start in time.
    reply = await referrals.move(
        referral, "accepted", extension=[frist(date.today() + timedelta(days=3))]
    )
    assert reply.status == 200, reply.body
    late = date.today() + timedelta(days=4)
    assert await monitor_of(referrals.referral).scan(late) == 1
    assert await monitor_of(referrals.referral).scan(late) == 0

    async def published() -> bool:
        names = [e.name for e in await referral_events(referrals, referral)]
        return "frist-breached" in names and "assessment-overdue" in names

    await wait_for(published)
    await asyncio.sleep(0.3)  # anything raised twice would have arrived by now
    names = [e.name for e in await referral_events(referrals, referral)]
    assert names.count("assessment-overdue") == 1
    assert names.count("frist-breached") == 1


async def test_gutt_11(referrals: ReferralWorld) -> None:
    """GP refers to BUP with the parents' consent; BUP rejects with "unresolved care
    situation, recommend barnevern measures". That reason alone is refused; a valid
    rejection names the criteria, the responsible municipal service and the right to
    appeal; the GP and (with consent) barnevern are told."""
    child = await referrals.child(age=11)
    referral = await referrals.submit(child, by=GP, to=BUP)
    assert (await referrals.move(referral, "received")).status == 200

    reply = await referrals.move(
        referral,
        "rejected",
        output=[follow_up(BVT)],
        **rejection(
            "annet", "Uavklart omsorgssituasjon, anbefaler barnevernstiltak.", "nyttekriteriet"
        ),
    )
    assert reply.status == 422, reply.body
    assert any("000:l.4770" in i["diagnostics"] for i in reply.issues())
    task, _ = await referrals.task(referral)
    assert task["status"] == "received"  # nothing changed

    reply = await referrals.move(
        referral,
        "rejected",
        output=[follow_up(KOMMUNE)],
        **rejection("ingen-rett", VALID_JUSTIFICATION, "nyttekriteriet", "prioriteringsveilederen"),
    )
    assert reply.status == 200, reply.body

    # The GP, as referrer, sees the answer with its reasons and the right to appeal.
    seen, _ = await referrals.task(referral, by=GP)
    assert seen["status"] == "rejected"
    assert seen["statusReason"]["text"] == VALID_JUSTIFICATION
    assert "Statsforvalteren" in next(
        e["valueString"] for e in seen["extension"] if e["url"] == APPEAL_EXT
    )
    follow = [o for o in seen["output"] if o["valueReference"]["identifier"]["value"] == KOMMUNE]
    assert follow, seen["output"]

    # The event names the GP among the parties and the municipal service to follow up.
    async def rejected() -> bool:
        return any(e.name == "rejected" for e in await referral_events(referrals, referral))

    await wait_for(rejected)
    event = next(e for e in await referral_events(referrals, referral) if e.name == "rejected")
    assert GP in event.data["parties"]
    assert event.data["followUp"] == KOMMUNE
    assert event.data["reason"] == "ingen-rett"

    # Barnevern sees the referral only once the parents consent to it.
    assert (await referrals.fhir("GET", f"Task/{referral.task_id}", by=BVT)).status == 404
    consent = await referrals.consent(child, "informasjonsdeling", BVT)
    reply = await referrals.fhir("GET", f"Task/{referral.task_id}", by=BVT)
    assert reply.status == 200, reply.body
    assert reply.json()["status"] == "rejected"

    # Every release is audited, the barnevernstjeneste's under the consent (the operator
    # reads every organisation's records).
    audit_token = referrals.stack.operator_token()

    async def audited() -> bool:
        found = await referrals.stack.call(
            "GET",
            f"AuditEvent?patient=Patient/{child.id}&agent={BVT}&basis=consent",
            token=audit_token,
        )
        return found.status == 200 and bool(found.json()["entry"])

    await wait_for(audited)
    found = await referrals.stack.call(
        "GET", f"AuditEvent?patient=Patient/{child.id}&agent={BVT}", token=audit_token
    )
    bodies = [e["resource"] for e in found.json()["entry"]]
    assert any(consent in str(body) for body in bodies)
    refused = await referrals.stack.call(
        "GET", f"AuditEvent?withheld-patient=Patient/{child.id}&agent={BVT}", token=audit_token
    )
    # the read before the consent
    assert any(e["resource"]["outcome"] == "4" for e in refused.json()["entry"])


async def test_a_deadline_passed_between_scans_is_marked_by_the_next_change(
    referrals: ReferralWorld,
) -> None:
    referral = await referrals.submit(await referrals.child())
    assert (await referrals.move(referral, "received")).status == 200
    # As if the receipt were 15 days ago: the deadline passed, and no scan has run since.
    fhir = referrals.referral.fhir
    assert fhir is not None
    request = FhirRequest(
        interaction="update", base_url="http://test", caller=Caller(client_id="test")
    )
    async with fhir.unit_of_work(request) as uow:
        stored = await uow.read_for_update("Task", referral.task_id)
        assert stored is not None
        task = stored.json()
        set_extension(task, ASSESSMENT_DEADLINE_EXT, "valueDate",
                      (date.today() - timedelta(days=1)).isoformat())  # fmt: skip
        await uow.save(task, previous=stored)
    reply = await referrals.accept(referral)
    assert reply.status == 200, reply.body
    marks = [e["valueCoding"]["code"] for e in reply.json()["extension"] if e["url"] == BREACH_EXT]
    assert marks == ["assessment-overdue"]
    assert await monitor_of(referrals.referral).scan(date.today() + timedelta(days=1)) == 0

    async def published() -> bool:
        events = await referral_events(referrals, referral)
        return any(e.name == "assessment-overdue" for e in events)

    await wait_for(published)
    names = [e.name for e in await referral_events(referrals, referral)]
    assert names.count("assessment-overdue") == 1
    assert names.count("accepted") == 1


async def test_task_writes_and_the_deadline_monitor_do_not_deadlock(
    referrals: ReferralWorld,
) -> None:
    """A Task update that leaves out `for` still locks the patient before the row, as the
    monitor does: both always finish, neither with a collision (503)."""
    monitor = monitor_of(referrals.referral)
    for _ in range(6):
        referral = await referrals.submit(await referrals.child())
        reply = await referrals.move(referral, "received")
        assert reply.status == 200, reply.body
        task = reply.json()
        deadline = next(
            e["valueDate"] for e in task["extension"] if e["url"] == ASSESSMENT_DEADLINE_EXT
        )
        del task["for"]
        task.update(status="on-hold")
        task.pop("businessStatus")
        put = referrals.fhir(
            "PUT", f"Task/{referral.task_id}", task, by=BUP,
            headers={"If-Match": reply.headers["ETag"]},
        )  # fmt: skip
        answer, marked = await asyncio.gather(
            put, monitor.scan(date.fromisoformat(deadline) + timedelta(days=1))
        )
        assert answer.status in (200, 412), answer.body  # 412: the monitor's write was first
        assert marked == 1
