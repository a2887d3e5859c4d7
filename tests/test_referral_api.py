"""The referral service over HTTP: submission, who may refer, completeness, the state
machine and its preconditions, rejection and redirect rules, discharge, closure after
no-shows, re-referral, search and bad input."""

from __future__ import annotations

import asyncio
import random
from datetime import date, timedelta
from typing import Any

from services.referral import referral_spec
from services.referral.domain.vocabulary import (
    ANSIENNITETSDATO_EXT,
    APPEAL_EXT,
    ASSESSMENT_DEADLINE_EXT,
    ATTACHMENT_SYSTEM,
    COMPLETENESS_EXT,
    SHARED_WITH_EXT,
)
from services.referral.domain.working_days import add_working_days
from shared.clock import today
from shared.runtime import ServiceRuntime
from tests.referral_world import (
    BUP,
    BUP2,
    BVT,
    GP,
    INSTITUSJON,
    KOMMUNE,
    LEGEVAKT,
    SKOLE,
    VALID_JUSTIFICATION,
    Referral,
    ReferralWorld,
    attachment,
    closing,
    follow_up,
    frist,
    no_shows,
    output,
    referral_bundle,
    rejection,
    step,
)
from tests.support import diagnostics
from tests.test_bad_input_fuzz import VALUES


def ext(resource: dict[str, Any], url: str) -> list[Any]:
    return [e for e in resource.get("extension", []) if e["url"] == url]


async def test_a_referral_submitted_as_a_transaction_gets_its_task(
    referrals: ReferralWorld,
) -> None:
    child = await referrals.child()
    referral = await referrals.submit(child)
    service_request = referral.response["resource"]
    assert service_request["subject"]["reference"] == f"Patient/{child.id}"
    assert [e["valueCoding"]["code"] for e in ext(service_request, COMPLETENESS_EXT)] == [
        "komplett"
    ]
    assert "outcome" not in referral.response["response"]
    # The order of the entries does not matter: what is referred to is created first.
    bundle = referral_bundle(child, by=GP)
    bundle["entry"].reverse()
    reply = await referrals.fhir("POST", "", bundle, by=GP)
    assert reply.status == 200, reply.body
    assert reply.json()["entry"][0]["response"]["status"] == "201"
    task, etag = await referrals.task(referral)
    assert task["status"] == "requested"
    assert task["businessStatus"]["coding"][0]["code"] == "sendt"
    assert task["focus"]["reference"] == referral.ref
    assert task["for"]["reference"] == f"Patient/{child.id}"
    assert task["owner"]["identifier"]["value"] == BUP
    assert task["requester"]["identifier"]["value"] == GP
    assert etag == 'W/"1"'
    # The receiver sees the attachments; the referrer wrote them.
    for info in service_request["supportingInfo"]:
        reply = await referrals.fhir("GET", info["reference"], by=BUP)
        assert reply.status == 200, reply.body


async def test_an_incomplete_referral_to_bup_is_accepted_with_warnings(
    referrals: ReferralWorld,
) -> None:
    child = await referrals.child()
    referral = await referrals.submit(child, attachments=("ppt-vurdering",))
    markers = {
        e["valueCoding"]["code"] for e in ext(referral.response["resource"], COMPLETENESS_EXT)
    }
    assert markers == {
        "mangler-kommunal-kartlegging",
        "mangler-barnets-stemme",
        "mangler-somatisk-vurdering",
    }
    warnings = referral.response["response"]["outcome"]["issue"]
    assert len(warnings) == 3
    assert all(w["severity"] == "warning" for w in warnings)
    assert any("municipal assessment" in w["diagnostics"] for w in warnings)
    found = await referrals.fhir(
        "GET", "ServiceRequest?completeness=mangler-barnets-stemme", by=BUP
    )
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [referral.id]
    # A single create shows the warnings when asked for an OperationOutcome.
    bundle = referral_bundle(child, by=GP, attachments=())
    service_request = bundle["entry"][-1]["resource"]
    reply = await referrals.fhir(
        "POST",
        "ServiceRequest",
        service_request,
        by=GP,
        headers={"Prefer": "return=OperationOutcome"},
    )
    assert reply.status == 201, reply.body
    assert sum(i["severity"] == "warning" for i in reply.issues()) == 3


async def test_who_may_refer(referrals: ReferralWorld) -> None:
    child = await referrals.child()
    reply = await referrals.fhir("POST", "", referral_bundle(child, by=INSTITUSJON), by=INSTITUSJON)
    assert reply.status == 403, reply.body
    assert "barnevernstjeneste" in diagnostics(reply)
    assert "cannot refer directly" in diagnostics(reply)
    reply = await referrals.fhir("POST", "", referral_bundle(child, by=SKOLE), by=SKOLE)
    assert reply.status == 403, reply.body
    # Refers in its own name only.
    reply = await referrals.fhir("POST", "", referral_bundle(child, by=GP), by=BVT)
    assert reply.status == 403, reply.body
    # Nothing was stored by the refused transactions.
    found = await referrals.fhir("GET", f"DocumentReference?patient=Patient/{child.id}", by=GP)
    assert found.json()["entry"] == []
    for referrer in (BVT, KOMMUNE):
        referral = await referrals.submit(child, by=referrer)
        assert referral.id


async def test_the_patient_must_be_registered_with_a_valid_identifier(
    referrals: ReferralWorld,
) -> None:
    child = await referrals.child()
    unknown = type(child)(child.id, "01010150074")
    reply = await referrals.fhir("POST", "", referral_bundle(unknown, by=GP), by=GP)
    assert reply.status == 422, reply.body
    assert "No patient is registered" in diagnostics(reply)
    invalid = type(child)(child.id, "12345678901")
    reply = await referrals.fhir("POST", "", referral_bundle(invalid, by=GP), by=GP)
    assert reply.status == 422, reply.body
    bundle = referral_bundle(child, by=GP, attachments=())
    bundle["entry"][-1]["resource"]["subject"] = {"reference": f"Patient/{child.id}"}
    reply = await referrals.fhir("POST", "", bundle, by=GP)
    assert reply.status == 422, reply.body
    assert "by identifier" in diagnostics(reply)
    bundle = referral_bundle(child, by=GP, to=SKOLE, attachments=())
    reply = await referrals.fhir("POST", "", bundle, by=GP)
    assert reply.status == 422, reply.body
    assert "does not receive referrals" in diagnostics(reply)


async def test_receipt_keeps_the_dates_and_a_client_cannot_move_them(
    referrals: ReferralWorld,
) -> None:
    referral = await referrals.submit(await referrals.child())
    reply = await referrals.move(referral, "received")
    assert reply.status == 200, reply.body
    task = reply.json()
    day = today()
    assert ext(task, ANSIENNITETSDATO_EXT)[0]["valueDate"] == day.isoformat()
    deadline = add_working_days(day, 10).isoformat()
    assert ext(task, ASSESSMENT_DEADLINE_EXT)[0]["valueDate"] == deadline
    assert task["businessStatus"]["coding"][0]["code"] == "mottatt"
    # A client cannot move the deadline: the server keeps its own extensions.
    task["extension"] = [{"url": ASSESSMENT_DEADLINE_EXT, "valueDate": "2099-01-01"}]
    reply = await referrals.fhir(
        "PUT",
        f"Task/{referral.task_id}",
        task,
        by=BUP,
        headers={"If-Match": reply.headers["ETag"]},
    )
    assert reply.status == 200, reply.body
    assert ext(reply.json(), ASSESSMENT_DEADLINE_EXT)[0]["valueDate"] == deadline
    found = await referrals.fhir(
        "GET", f"Task?owner:identifier=urn:oid:2.16.578.1.12.4.1.4.101|{BUP}"
        f"&assessment-deadline={deadline}", by=BUP
    )  # fmt: skip
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [referral.task_id]


async def test_acceptance_needs_a_frist_and_illegal_transitions_are_refused(
    referrals: ReferralWorld,
) -> None:
    referral = await referrals.submit(await referrals.child())
    reply = await referrals.move(referral, "accepted")
    assert reply.status == 409, reply.body  # not received yet
    assert (await referrals.move(referral, "received")).status == 200
    reply = await referrals.move(referral, "accepted")
    assert reply.status == 422, reply.body
    assert "frist" in diagnostics(reply)
    reply = await referrals.move(referral, "received", by=GP)
    assert reply.status == 403, reply.body
    reply = await referrals.move(referral, "accepted", by=GP, extension=[frist(date.today())])
    assert reply.status == 403, reply.body
    reply = await referrals.move(
        referral, "accepted", by=BVT, read_by=BUP, extension=[frist(date.today())]
    )
    assert reply.status == 412, reply.body  # for BVT, the Task does not exist
    reply = await referrals.accept(referral)
    assert reply.status == 200, reply.body
    assert reply.json()["businessStatus"]["coding"][0]["code"] == "rett-til-helsehjelp"
    reply = await referrals.move(referral, "cancelled", by=GP)  # withdrawn by the referrer
    assert reply.status == 200, reply.body
    assert reply.json()["businessStatus"]["coding"][0]["code"] == "trukket"
    reply = await referrals.move(referral, "accepted", extension=[frist(date.today())])
    assert reply.status == 409, reply.body
    assert "not reopened" in diagnostics(reply)
    service_request = await referrals.fhir("GET", referral.ref, by=GP)
    assert service_request.json()["status"] == "revoked"


async def test_task_updates_need_if_match_and_a_stale_one_loses(
    referrals: ReferralWorld,
) -> None:
    referral = await referrals.submit(await referrals.child())
    task, etag = await referrals.task(referral)
    task["status"] = "received"
    del task["businessStatus"]
    reply = await referrals.fhir("PUT", f"Task/{referral.task_id}", task, by=BUP)
    assert reply.status == 428, reply.body
    reply = await referrals.fhir(
        "PUT", f"Task/{referral.task_id}", task, by=BUP, headers={"If-Match": etag}
    )
    assert reply.status == 200, reply.body
    reply = await referrals.fhir(
        "PUT", f"Task/{referral.task_id}", task, by=BUP, headers={"If-Match": etag}
    )
    assert reply.status == 412, reply.body
    created = await referrals.fhir("POST", "Task", task, by=BUP)
    assert created.status == 405, created.body
    deleted = await referrals.fhir("DELETE", f"Task/{referral.task_id}", by=BUP)
    assert deleted.status == 405, deleted.body


async def test_concurrent_decisions_one_wins(referrals: ReferralWorld) -> None:
    referral = await referrals.submit(await referrals.child())
    assert (await referrals.move(referral, "received")).status == 200
    task, etag = await referrals.task(referral)
    accept = {**task, "status": "accepted", "extension": [
        *task["extension"], frist(date.today() + timedelta(days=20))]}  # fmt: skip
    reject = {
        **task,
        "status": "rejected",
        **rejection("ingen-rett", VALID_JUSTIFICATION, "nyttekriteriet"),
        "output": [follow_up(KOMMUNE)],
    }
    reject["extension"] = [*task["extension"], *reject["extension"]]
    for body in (accept, reject):
        body.pop("businessStatus")
    replies = await asyncio.gather(
        *(
            referrals.fhir(
                "PUT", f"Task/{referral.task_id}", body, by=BUP, headers={"If-Match": etag}
            )
            for body in (accept, reject, accept, reject)
        )
    )
    statuses = sorted(r.status for r in replies)
    assert statuses == [200, 412, 412, 412], [r.body for r in replies]
    history = await referrals.fhir("GET", f"Task/{referral.task_id}/_history", by=BUP)
    assert len(history.json()["entry"]) == 3


async def test_a_rejection_for_the_care_situation_alone_is_refused(
    referrals: ReferralWorld,
) -> None:
    referral = await referrals.submit(await referrals.child())
    assert (await referrals.move(referral, "received")).status == 200
    reply = await referrals.move(
        referral,
        "rejected",
        output=[follow_up(KOMMUNE)],
        **rejection(
            "annet", "Uavklart omsorgssituasjon, anbefaler barnevernstiltak.", "nyttekriteriet"
        ),
    )
    assert reply.status == 422, reply.body
    assert "000:l.4770" in diagnostics(reply)
    reply = await referrals.move(referral, "rejected", **rejection("ingen-rett", "Ikke behov"))
    assert reply.status == 422, reply.body
    text = diagnostics(reply)
    assert "legal criteria" in text and "responsible" in text
    reply = await referrals.move(
        referral,
        "rejected",
        output=[follow_up(SKOLE)],
        **rejection("ingen-rett", VALID_JUSTIFICATION, "nyttekriteriet"),
    )
    assert reply.status == 422, reply.body
    assert "municipal" in diagnostics(reply)
    reply = await referrals.move(
        referral,
        "rejected",
        output=[follow_up(KOMMUNE)],
        **rejection("ingen-rett", VALID_JUSTIFICATION, "nyttekriteriet", "prioriteringsveilederen"),
    )
    assert reply.status == 200, reply.body
    task = reply.json()
    assert "Statsforvalteren" in ext(task, APPEAL_EXT)[0]["valueString"]
    assert task["businessStatus"]["coding"][0]["code"] == "avslatt"


async def test_a_redirect_needs_consent_to_pass_contact_details_on(
    referrals: ReferralWorld,
) -> None:
    child = await referrals.child()
    referral = await referrals.submit(child)
    assert (await referrals.move(referral, "received")).status == 200
    redirect = {
        "output": [follow_up(KOMMUNE)],
        "businessStatus": step("videresendt"),
        **rejection("feil-mottaker", VALID_JUSTIFICATION, "nyttekriteriet"),
    }
    reply = await referrals.move(referral, "rejected", **redirect)
    assert reply.status == 422, reply.body
    assert "kontaktinfo-videreformidling" in diagnostics(reply)
    assert (await referrals.fhir("GET", referral.ref, by=KOMMUNE)).status == 404
    await referrals.consent(child, "kontaktinfo-videreformidling", KOMMUNE)
    reply = await referrals.move(referral, "rejected", **redirect)
    assert reply.status == 200, reply.body
    assert reply.json()["businessStatus"]["coding"][0]["code"] == "videresendt"
    # The municipal service that takes over now sees the referral and its Task.
    assert (await referrals.fhir("GET", referral.ref, by=KOMMUNE)).status == 200
    assert (await referrals.fhir("GET", f"Task/{referral.task_id}", by=KOMMUNE)).status == 200


async def test_discharge_needs_a_plan_and_tells_the_gp(referrals: ReferralWorld) -> None:
    child = await referrals.child()
    referral = await referrals.submit(child, by=BVT)
    assert (await referrals.accept(referral)).status == 200
    assert (await referrals.move(referral, "in-progress")).status == 200
    reply = await referrals.move(referral, "completed")
    assert reply.status == 422, reply.body
    assert "oppfolgingsplan" in diagnostics(reply)
    assert (await referrals.fhir("GET", referral.ref, by=GP)).status == 404
    plan = output("oppfolgingsplan", {"valueString": "Kommunepsykolog hver 14. dag"})
    reply = await referrals.move(referral, "completed", output=[plan, follow_up(KOMMUNE)])
    assert reply.status == 200, reply.body
    task = reply.json()
    assert task["businessStatus"]["coding"][0]["code"] == "utskrevet"
    assert "end" in task["executionPeriod"] and "start" in task["executionPeriod"]
    shared = {e["valueIdentifier"]["value"] for e in ext(task, SHARED_WITH_EXT)}
    assert shared == {GP, KOMMUNE}
    for orgnr in (GP, KOMMUNE):
        assert (await referrals.fhir("GET", referral.ref, by=orgnr)).status == 200
    service_request = await referrals.fhir("GET", referral.ref, by=BUP)
    assert service_request.json()["status"] == "completed"


async def test_closure_after_no_shows_is_warned_first(referrals: ReferralWorld) -> None:
    referral = await referrals.submit(await referrals.child())
    assert (await referrals.accept(referral)).status == 200
    assert (await referrals.move(referral, "in-progress")).status == 200
    reply = await referrals.move(
        referral, "cancelled", extension=[no_shows(3)], **closing("gjentatte-uteblivelser")
    )
    assert reply.status == 409, reply.body
    assert "Warn before closing" in diagnostics(reply)
    reply = await referrals.move(
        referral, "in-progress", extension=[no_shows(3)], businessStatus=step("avslutning-varslet")
    )
    assert reply.status == 200, reply.body
    reply = await referrals.move(referral, "in-progress", extension=[no_shows(2)])
    assert reply.status == 409, reply.body  # the count only grows
    reply = await referrals.move(referral, "cancelled", **closing("gjentatte-uteblivelser"))
    assert reply.status == 200, reply.body
    assert reply.json()["businessStatus"]["coding"][0]["code"] == "avsluttet"


async def close_after(referrals: ReferralWorld, count: int) -> tuple[Referral, Any]:
    """A referral in care, warned after `count` no-shows, and the answer to closing it."""
    referral = await referrals.submit(await referrals.child())
    assert (await referrals.accept(referral)).status == 200
    assert (await referrals.move(referral, "in-progress")).status == 200
    reply = await referrals.move(
        referral,
        "in-progress",
        extension=[no_shows(count)],
        businessStatus=step("avslutning-varslet"),
    )
    assert reply.status == 200, reply.body
    return referral, await referrals.move(
        referral, "cancelled", **closing("gjentatte-uteblivelser")
    )


async def test_closure_after_no_shows_needs_three(referrals: ReferralWorld) -> None:
    referral, reply = await close_after(referrals, 2)
    assert reply.status == 422, reply.body
    assert "at least 3" in diagnostics(reply)
    assert (await referrals.move(referral, "in-progress", extension=[no_shows(3)])).status == 200
    reply = await referrals.move(referral, "cancelled", **closing("gjentatte-uteblivelser"))
    assert reply.status == 200, reply.body
    assert reply.json()["businessStatus"]["coding"][0]["code"] == "avsluttet"


async def test_the_no_show_threshold_is_a_setting(referrals: ReferralWorld) -> None:
    settings = referrals.stack.settings.model_copy(update={"referral_no_show_closure": 5})
    await referrals.referral.stop()
    referrals.referral = ServiceRuntime(referral_spec(settings), settings)
    await referrals.referral.start()
    referral, reply = await close_after(referrals, 4)
    assert reply.status == 422, reply.body
    assert "at least 5" in diagnostics(reply)
    assert (await referrals.move(referral, "in-progress", extension=[no_shows(5)])).status == 200
    reply = await referrals.move(referral, "cancelled", **closing("gjentatte-uteblivelser"))
    assert reply.status == 200, reply.body


async def test_a_re_referral_inherits_the_history_for_its_receiver(
    referrals: ReferralWorld,
) -> None:
    child = await referrals.child()
    first = await referrals.submit(child)
    assert (await referrals.fhir("GET", first.ref, by=BUP2)).status == 404
    second_bundle = referral_bundle(child, by=GP, to=BUP2, replaces=[{"reference": first.ref}])
    reply = await referrals.fhir("POST", "", second_bundle, by=GP)
    assert reply.status == 409, reply.body  # the first one is still open
    assert (await referrals.move(first, "cancelled", by=GP)).status == 200
    second = await referrals.submit(child, by=GP, to=BUP2, replaces=[{"reference": first.ref}])
    for path in (first.ref, f"Task/{first.task_id}"):
        reply = await referrals.fhir("GET", path, by=BUP2)
        assert reply.status == 200, (path, reply.body)
    history = await referrals.fhir("GET", f"Task/{first.task_id}/_history", by=BUP2)
    known = await referrals.fhir("GET", f"Task/{first.task_id}/_history", by=BUP)
    assert len(history.json()["entry"]) == len(known.json()["entry"]) >= 3
    found = await referrals.fhir("GET", f"ServiceRequest?replaces={first.ref}", by=BUP2)
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [second.id]


async def test_the_barnevernstjeneste_sees_a_referral_only_under_consent(
    referrals: ReferralWorld,
) -> None:
    child = await referrals.child()
    referral = await referrals.submit(child)
    assert (await referrals.fhir("GET", referral.ref, by=BVT)).status == 404
    found = await referrals.fhir("GET", f"Task?patient=Patient/{child.id}", by=BVT)
    assert found.json()["entry"] == []
    own = await referrals.submit(child, by=BVT)
    found = await referrals.fhir("GET", f"ServiceRequest?patient=Patient/{child.id}", by=BVT)
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [own.id]
    found = await referrals.fhir(
        "GET",
        f"ServiceRequest?patient:identifier=urn:oid:2.16.578.1.12.4.1.4.1|{child.fnr}",
        by=BUP,
    )
    assert {e["resource"]["id"] for e in found.json()["entry"]} == {own.id, referral.id}


async def test_bad_input_is_refused_and_stores_nothing(referrals: ReferralWorld) -> None:
    child = await referrals.child()
    cases: list[tuple[str, dict[str, Any], int]] = []
    bundle = referral_bundle(child, by=GP)
    bundle["entry"][-1]["resource"]["priority"] = "asap-ish"
    cases.append(("priority", bundle, 422))
    bundle = referral_bundle(child, by=GP)
    bundle["entry"][-1]["resource"]["performer"] = []
    cases.append(("performer", bundle, 422))
    bundle = referral_bundle(child, by=GP)
    del bundle["entry"][-1]["resource"]["reasonCode"]
    cases.append(("reason", bundle, 422))
    bundle = referral_bundle(child, by=GP)
    bundle["entry"][0]["resource"]["type"] = {"text": "no code"}
    cases.append(("attachment type", bundle, 422))
    bundle = referral_bundle(child, by=GP)
    bundle["entry"][-1]["resource"]["supportingInfo"] = [
        {"reference": "DocumentReference/does-not-exist"}
    ]
    cases.append(("unknown attachment", bundle, 422))
    for name, body, status in cases:
        reply = await referrals.fhir("POST", "", body, by=GP)
        assert reply.status == status, (name, reply.body)
        assert reply.json()["resourceType"] == "OperationOutcome", name
    for resource_type in ("ServiceRequest", "DocumentReference", "Task"):
        found = await referrals.fhir("GET", f"{resource_type}?patient=Patient/{child.id}", by=GP)
        assert found.json()["entry"] == [], (resource_type, found.body)


async def test_bad_task_updates_are_refused_and_change_nothing(
    referrals: ReferralWorld,
) -> None:
    referral = await referrals.submit(await referrals.child())
    assert (await referrals.move(referral, "received")).status == 200
    task, etag = await referrals.task(referral)
    other = await referrals.child()
    bad: list[tuple[str, dict[str, Any], int]] = [
        ("unknown status", {**task, "status": "approved"}, 400),
        ("another patient", {**task, "for": {"reference": f"Patient/{other.id}"}}, 422),
        ("another owner", {**task, "owner": {"identifier": {"value": BUP2}}}, 422),
        ("another focus", {**task, "focus": {"reference": "ServiceRequest/x"}}, 422),
        ("frist as text", {**task, "status": "accepted", "businessStatus": step(
            "rett-til-helsehjelp"), "extension": [*task["extension"], {
                "url": frist(date.today())["url"], "valueString": "snart"}]}, 422),
        ("step of another status", {**task, "businessStatus": step("utskrevet")}, 422),
        ("not JSON", {}, 400),
    ]  # fmt: skip
    for name, body, status in bad:
        if name == "not JSON":
            reply = await referrals.stack.call(
                "PUT",
                f"Task/{referral.task_id}",
                raw=b"{not json",
                token=referrals.token(BUP),
                headers={"If-Match": etag},
            )
        else:
            reply = await referrals.fhir(
                "PUT", f"Task/{referral.task_id}", body, by=BUP, headers={"If-Match": etag}
            )
        assert reply.status == status, (name, reply.body)
        assert reply.json()["resourceType"] == "OperationOutcome", name
    after, after_etag = await referrals.task(referral)
    assert after_etag == etag
    assert after["status"] == "received"


async def test_random_bad_referral_input_never_gets_a_500(referrals: ReferralWorld) -> None:
    """Seeded random damage to a referral, an attachment and a Task update: always a 2xx
    or a 4xx with an OperationOutcome, never a 500."""
    rng = random.Random(15)
    child = await referrals.child()
    referral = await referrals.submit(child)
    bundle = referral_bundle(child, by=GP)
    seeds = {
        "ServiceRequest": {**bundle["entry"][-1]["resource"], "supportingInfo": []},
        "DocumentReference": bundle["entry"][0]["resource"],
    }
    keys = ["subject", "requester", "performer", "priority", "intent", "status", "reasonCode",
            "supportingInfo", "replaces", "basedOn", "type", "extension", "output", "for",
            "owner", "focus", "businessStatus", "statusReason", "executionPeriod"]  # fmt: skip
    for _ in range(60):
        resource_type = rng.choice([*seeds, "Task"])
        if resource_type == "Task":
            task, etag = await referrals.task(referral)
            body = damaged(rng, {**task, "status": rng.choice(["received", "accepted"])}, keys)
            reply = await referrals.fhir(
                "PUT", f"Task/{referral.task_id}", body, by=BUP, headers={"If-Match": etag}
            )
        else:
            body = damaged(rng, seeds[resource_type], keys)
            reply = await referrals.fhir("POST", resource_type, body, by=GP)
        assert reply.status < 500, (resource_type, body, reply.body)
        if reply.status >= 400:
            assert reply.json()["resourceType"] == "OperationOutcome", reply.body


def damaged(rng: random.Random, resource: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    body = dict(resource)
    for _ in range(rng.randint(1, 3)):
        body[rng.choice(keys)] = rng.choice(VALUES)
    return body


async def test_a_referral_passes_on_only_what_its_referrer_may_see(
    referrals: ReferralWorld,
) -> None:
    child = await referrals.child()
    # BUP's own note about the child: the GP may not see it, nor attach it.
    note = await referrals.fhir("POST", "DocumentReference", attachment(child, "annet"), by=BUP)
    assert note.status == 201, note.body
    note_ref = f"DocumentReference/{note.json()['id']}"
    bundle = referral_bundle(child, by=GP, attachments=())
    bundle["entry"][-1]["resource"]["supportingInfo"] = [{"reference": note_ref}]
    reply = await referrals.fhir("POST", "", bundle, by=GP)
    assert reply.status == 422, reply.body
    assert "not known" in diagnostics(reply)
    assert (await referrals.fhir("GET", note_ref, by=GP)).status == 404

    # A municipal service that took over after a redirect sees the referral, not its
    # attachments; its own re-referral passes on what it sees and nothing more.
    first = await referrals.submit(child)
    assert (await referrals.move(first, "received")).status == 200
    # A consent to pass contact details on, covering no referral information itself.
    await referrals.consent(child, "kontaktinfo-videreformidling", KOMMUNE, ("consent",))
    reply = await referrals.move(
        first,
        "rejected",
        output=[follow_up(KOMMUNE)],
        businessStatus=step("videresendt"),
        **rejection("feil-mottaker", VALID_JUSTIFICATION, "nyttekriteriet"),
    )
    assert reply.status == 200, reply.body
    attachments = [i["reference"] for i in first.response["resource"]["supportingInfo"]]
    for reference in attachments:
        assert (await referrals.fhir("GET", reference, by=KOMMUNE)).status == 404
    again = await referrals.submit(child, by=KOMMUNE, to=BUP2, replaces=[{"reference": first.ref}])
    assert again.id
    assert (await referrals.fhir("GET", first.ref, by=BUP2)).status == 200
    assert (await referrals.fhir("GET", f"Task/{first.task_id}", by=BUP2)).status == 200
    for reference in attachments:
        assert (await referrals.fhir("GET", reference, by=BUP2)).status == 404
        assert (await referrals.fhir("GET", reference, by=KOMMUNE)).status == 404


async def test_what_is_seen_only_under_consent_or_in_an_emergency_is_not_passed_on(
    referrals: ReferralWorld,
) -> None:
    child = await referrals.child()
    referral = await referrals.submit(child)
    documents = [i["reference"] for i in referral.response["resource"]["supportingInfo"]]
    emergency = {"Barnebro-Emergency-Patient": child.id, "Barnebro-Emergency-Reason": "Akutt"}
    doctor = referrals.token(LEGEVAKT, hpr="9144889")
    seen = await referrals.fhir("GET", documents[0], by=LEGEVAKT, headers=emergency, token=doctor)
    assert seen.status == 200, seen.body
    bundle = referral_bundle(child, by=LEGEVAKT, to=BUP2, attachments=())
    bundle["entry"][-1]["resource"]["supportingInfo"] = [{"reference": d} for d in documents]
    reply = await referrals.fhir("POST", "", bundle, by=LEGEVAKT, headers=emergency, token=doctor)
    assert reply.status == 422, reply.body
    bundle = referral_bundle(
        child, by=LEGEVAKT, to=BUP2, attachments=(), basedOn=[{"reference": referral.ref}]
    )
    reply = await referrals.fhir("POST", "", bundle, by=LEGEVAKT, headers=emergency, token=doctor)
    assert reply.status == 422, reply.body
    for orgnr in (LEGEVAKT, BUP2):
        for reference in (referral.ref, *documents):
            assert (await referrals.fhir("GET", reference, by=orgnr)).status == 404
    # Under a consent the barnevernstjeneste reads the referral, but does not pass it on.
    await referrals.consent(child, "informasjonsdeling", BVT)
    assert (await referrals.fhir("GET", documents[0], by=BVT)).status == 200
    bundle = referral_bundle(child, by=BVT, to=BUP2, attachments=())
    bundle["entry"][-1]["resource"]["supportingInfo"] = [{"reference": documents[0]}]
    reply = await referrals.fhir("POST", "", bundle, by=BVT)
    assert reply.status == 422, reply.body
    assert (await referrals.fhir("GET", documents[0], by=BUP2)).status == 404


async def test_only_the_author_changes_an_attachment_and_not_after_assessment(
    referrals: ReferralWorld,
) -> None:
    child = await referrals.child()
    referral = await referrals.submit(child)
    reference = referral.response["resource"]["supportingInfo"][1]["reference"]
    document = (await referrals.fhir("GET", reference, by=GP)).json()
    document["description"] = "Barnet sier noe annet nå"
    reply = await referrals.fhir("PUT", reference, document, by=BUP)
    assert reply.status == 403, reply.body
    reply = await referrals.fhir("PUT", reference, document, by=GP)
    assert reply.status == 200, reply.body
    changed_type = {**reply.json(), "type": {"coding": [{"system": ATTACHMENT_SYSTEM,
                                                          "code": "annet"}]}}  # fmt: skip
    reply = await referrals.fhir("PUT", reference, changed_type, by=GP)
    assert reply.status == 422, reply.body
    assert (await referrals.accept(referral)).status == 200
    document = (await referrals.fhir("GET", reference, by=GP)).json()
    document["description"] = "Endret etter vurdering"
    reply = await referrals.fhir("PUT", reference, document, by=GP)
    assert reply.status == 409, reply.body
    assert (await referrals.fhir("GET", reference, by=GP)).json()["description"] == (
        "Barnet sier noe annet nå"
    )


async def test_an_amendment_may_name_the_child_as_the_referral_did(
    referrals: ReferralWorld,
) -> None:
    """The child a referral and its attachments were submitted about, named again by
    identifier as in the submission, is the same child: the amendment is accepted (and
    the stored reference kept); another child is still refused."""
    child = await referrals.child()
    referral = await referrals.submit(child)
    reference = referral.response["resource"]["supportingInfo"][1]["reference"]
    document = (await referrals.fhir("GET", reference, by=GP)).json()
    as_submitted = {**document, "subject": {"identifier": child.identifier}}
    as_submitted["description"] = "Barnet sier noe annet nå"
    for _ in range(2):  # the same amendment again changes nothing but the version
        reply = await referrals.fhir("PUT", reference, as_submitted, by=GP)
        assert reply.status == 200, reply.body
        assert reply.json()["subject"] == document["subject"]
    service_request = (await referrals.fhir("GET", referral.ref, by=GP)).json()
    service_request["subject"] = {"identifier": child.identifier}
    service_request["note"] = [{"text": "Tillegg"}]
    reply = await referrals.fhir("PUT", referral.ref, service_request, by=GP)
    assert reply.status == 200, reply.body
    other = await referrals.child()
    service_request["subject"] = {"identifier": other.identifier}
    reply = await referrals.fhir("PUT", referral.ref, service_request, by=GP)
    assert reply.status == 422, reply.body


async def test_server_kept_workflow_facts_cannot_be_set_by_a_party(
    referrals: ReferralWorld,
) -> None:
    referral = await referrals.submit(await referrals.child())
    reply = await referrals.move(referral, "requested", extension=[frist(date.today())])
    assert reply.status == 422, reply.body  # a frist comes only with acceptance
    assert (await referrals.move(referral, "received")).status == 200
    reply = await referrals.move(referral, "received", extension=[frist(date(2000, 1, 1))])
    assert reply.status == 422, reply.body
    assert (await referrals.accept(referral, days=2)).status == 200
    reply = await referrals.move(referral, "accepted", executionPeriod={"start": "2020-01-01"})
    assert reply.status == 200, reply.body
    assert "executionPeriod" not in reply.json()  # care has not started: nothing to say
    reply = await referrals.move(referral, "cancelled", by=GP)
    assert reply.status == 200, reply.body  # so the referrer may still withdraw
    rewritten = closing("annet")
    rewritten["statusReason"]["text"] = "omskrevet"
    reply = await referrals.move(referral, "cancelled", **rewritten)
    assert reply.status == 409, reply.body  # a closed decision is not rewritten


async def test_organisation_numbers_are_checked_not_searched_loosely(
    referrals: ReferralWorld,
) -> None:
    child = await referrals.child()
    for performer in ("123,910000012", "910000012,", "91000001"):
        bundle = referral_bundle(child, by=GP, attachments=())
        bundle["entry"][-1]["resource"]["performer"] = [
            {"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": performer}}
        ]
        reply = await referrals.fhir("POST", "", bundle, by=GP)
        assert reply.status == 422, (performer, reply.body)
    referral = await referrals.submit(child)
    assert (await referrals.move(referral, "received")).status == 200
    loose = follow_up(KOMMUNE)
    loose["valueReference"]["identifier"]["value"] = f"000,{KOMMUNE}"
    reply = await referrals.move(
        referral,
        "rejected",
        output=[loose],
        **rejection("ingen-rett", VALID_JUSTIFICATION, "nyttekriteriet"),
    )
    assert reply.status == 422, reply.body
