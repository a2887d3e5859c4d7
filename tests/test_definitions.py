"""The rules of every service's resource definitions, tried in one process on SQLite.

Each test drives the real definitions through the engine (router, unit of work, store)
with the directory answering in-process (`tests.local_services`): who the child is, what
kind an organisation is. Nothing here needs NATS or PostgreSQL; what a caller may see is
the services tier's to test.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.careplan.domain.vocabulary import MISSING_POINT_EXT
from services.subscriptions.domain.topics import TOPIC_BASE
from services.subscriptions.queue import DeliveryQueue
from services.subscriptions.resources import subscription_definitions
from shared.access.state import PatientAccessState
from shared.codes import CARE_ORDER_CODE, CONTACT_RELATIONSHIP_SYSTEM
from shared.fhir.resources import validate_resource
from shared.identifiers import FNR_SYSTEM
from shared.outside_reads import OutsideReads
from shared.transport.egress import EgressPolicy
from tests.careplan_world import goal, member, plan, team
from tests.local_services import OPERATOR, REGISTER, LocalServices, caller, local_services
from tests.referral_world import (
    BUP,
    BVT,
    GP,
    INSTITUSJON,
    KOMMUNE,
    SKOLE,
    Child,
    frist,
    org_reference,
)
from tests.subscription_world import subscription
from tests.support import parent


@pytest.fixture
async def local(tmp_path: Path) -> Any:
    names = ("referral", "careplan", "consent", "subscriptions")
    async with local_services(tmp_path, *names) as services:
        await services.register(GP, BUP, BVT, INSTITUSJON, SKOLE, KOMMUNE)
        yield services


def referral(child: dict[str, Any], *, by: str = GP, to: str = BUP) -> dict[str, Any]:
    return {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "priority": "routine",
        "subject": {"identifier": child["identifier"][0]},
        "requester": org_reference(by),
        "performer": [org_reference(to)],
        "reasonCode": [{"text": "Angst og skolevegring over tid"}],
    }


async def the_task(local: LocalServices, referral_id: str) -> dict[str, Any]:
    found = await local.call(
        caller(BUP), "search", "Task", params=[("focus", f"ServiceRequest/{referral_id}")]
    )
    tasks = [e["resource"] for e in found.body["entry"] if e["search"]["mode"] == "match"]
    assert len(tasks) == 1, found.body
    task: dict[str, Any] = tasks[0]
    return task


async def moved(local: LocalServices, task: dict[str, Any], status: str, by: str = BUP,
                **changes: Any) -> Any:  # fmt: skip
    body = {**task, "status": status, **changes}
    body.pop("businessStatus", None)
    etag = f'W/"{task["meta"]["versionId"]}"'
    return await local.call(caller(by), "update", "Task", body, id=task["id"], if_match=etag)


# -- directory ---------------------------------------------------------------------------


async def test_a_childs_birth_date_is_the_one_its_person_number_gives(local: LocalServices) -> None:
    child = await local.child(9)
    fnr = child["identifier"][0]["value"]
    assert child["birthDate"][8:10] + child["birthDate"][5:7] == fnr[:4]
    wrong = {"resourceType": "Patient", "birthDate": "1999-01-01",
             "identifier": [{"system": FNR_SYSTEM, "value": "15076500565"}]}  # fmt: skip
    answer = await local.call(caller(BVT), "create", "Patient", wrong)
    assert answer.status == 422 and "contradicts" in answer.diagnostics


async def test_a_person_number_under_a_lookalike_system_is_refused(local: LocalServices) -> None:
    lookalike = {"system": "urn:oid:2.16.578.1.12.4.1.4.01", "value": "15076500565"}
    patient = {"resourceType": "Patient", "identifier": [lookalike]}
    answer = await local.call(caller(BVT), "create", "Patient", patient)
    assert answer.status == 422


async def test_a_care_order_names_a_registered_barnevernstjeneste(local: LocalServices) -> None:
    def care_order(holder: str) -> dict[str, Any]:
        return {"relationship": [{"coding": [{"system": CONTACT_RELATIONSHIP_SYSTEM,
                                              "code": CARE_ORDER_CODE}]}],
                "organization": {"reference": f"Organization/{local.organisations[holder]}"},
                "period": {"start": "2026-01-01"}}  # fmt: skip

    held_by_bup = await local.call(
        caller(BVT), "create", "Patient",
        {"resourceType": "Patient", "contact": [care_order(BUP)]},
    )  # fmt: skip
    assert held_by_bup.status == 422 and "barnevernstjeneste" in held_by_bup.diagnostics
    held = await local.call(
        caller(BVT), "create", "Patient",
        {"resourceType": "Patient", "contact": [care_order(BVT)]},
    )  # fmt: skip
    assert held.status == 201, held.body


async def test_a_childs_gp_is_a_registered_fastlege(local: LocalServices) -> None:
    named = {"reference": f"Organization/{local.organisations[SKOLE]}"}
    answer = await local.call(
        caller(BVT), "create", "Patient",
        {"resourceType": "Patient", "generalPractitioner": [named]},
    )  # fmt: skip
    assert answer.status == 422 and "fastlege" in answer.diagnostics


async def test_parents_come_from_the_register_only(local: LocalServices) -> None:
    child = await local.child()
    by_bup = await local.call(caller(BUP), "create", "RelatedPerson", parent(child["id"], "Kari"))
    assert by_bup.status in (403, 405), by_bup.body
    by_register = await local.call(REGISTER, "create", "RelatedPerson", parent(child["id"], "Kari"))
    assert by_register.status == 201, by_register.body
    strange = parent(child["id"], "Per", code="bestemor")
    assert (await local.call(REGISTER, "create", "RelatedPerson", strange)).status == 422


async def test_organisations_are_the_operators(local: LocalServices) -> None:
    own = await local.call(caller(SKOLE), "read", "Organization", id=local.organisations[SKOLE])
    changed = {**own.body, "type": [{"coding": [{
        "system": "https://fhir.barnebro.no/CodeSystem/organisation-kind",
        "code": "barnevernstjeneste"}]}]}  # fmt: skip
    by_itself = await local.call(
        caller(SKOLE), "update", "Organization", changed, id=own.body["id"]
    )
    assert by_itself.status == 403
    by_operator = await local.call(OPERATOR, "update", "Organization", changed, id=own.body["id"])
    assert by_operator.status == 200


# -- referral ----------------------------------------------------------------------------


async def test_a_referral_gets_its_task_and_the_receiver_moves_it(local: LocalServices) -> None:
    child = await local.child()
    made = await local.created(caller(GP), referral(child))
    task = await the_task(local, made["id"])
    assert task["status"] == "requested"
    assert validate_resource(task, "Task") == "Task", "the Task the service built is valid R4"
    by_requester = await moved(local, task, "received", by=GP)
    assert by_requester.status == 403, "only the receiver receives"
    received = await moved(local, task, "received")
    assert received.status == 200, received.body
    accepted = await moved(
        local, received.body, "accepted", extension=[frist(date.today() + timedelta(days=30))]
    )
    assert accepted.status == 200, accepted.body
    assert (await moved(local, accepted.body, "requested")).status in (409, 422)


async def test_an_institution_does_not_refer_directly(local: LocalServices) -> None:
    child = await local.child()
    answer = await local.call(caller(INSTITUSJON), "create", "ServiceRequest",
                              referral(child, by=INSTITUSJON))  # fmt: skip
    assert answer.status in (403, 422), answer.body


async def test_a_referral_is_about_a_registered_child(local: LocalServices) -> None:
    unknown = {"identifier": [{"system": FNR_SYSTEM, "value": "15076500565"}]}
    answer = await local.call(caller(GP), "create", "ServiceRequest", referral(unknown))
    assert answer.status == 422, answer.body


async def test_a_referral_is_kept_not_deleted(local: LocalServices) -> None:
    child = await local.child()
    made = await local.created(caller(GP), referral(child))
    answer = await local.call(caller(GP), "delete", "ServiceRequest", id=made["id"])
    assert answer.status == 405


# -- care plans --------------------------------------------------------------------------


def as_child(patient: dict[str, Any]) -> Child:
    return Child(patient["id"], patient["identifier"][0]["value"])


async def test_a_plan_is_written_only_about_a_child_the_writer_takes_part_in(
    local: LocalServices,
) -> None:
    child = as_child(await local.child(12))
    for build in (goal, lambda c: team(c, member(KOMMUNE, "koordinator")),
                  lambda c: plan(c, "kriseplan")):  # fmt: skip
        refused = await local.call(caller(KOMMUNE), "create", build(child)["resourceType"],
                                   build(child))  # fmt: skip
        assert refused.status == 422 and "has a relation to" in refused.diagnostics
    local.consent_state(PatientAccessState(patient=child.id, related=[KOMMUNE]))
    for build in (goal, lambda c: plan(c, "kriseplan")):
        made = await local.call(caller(KOMMUNE), "create", build(child)["resourceType"],
                                build(child))  # fmt: skip
        assert made.status == 201, made.body


async def test_a_school_writes_no_plan(local: LocalServices) -> None:
    child = as_child(await local.child(12))
    local.consent_state(PatientAccessState(patient=child.id, related=[SKOLE]))
    answer = await local.call(caller(SKOLE), "create", "CarePlan", plan(child, "kriseplan"))
    assert answer.status == 403 and "may not create" in answer.diagnostics


async def test_an_individual_plan_is_a_draft_until_complete_and_consented(
    local: LocalServices,
) -> None:
    child = as_child(await local.child(15))
    local.consent_state(PatientAccessState(patient=child.id, related=[KOMMUNE]))
    draft = await local.call(caller(KOMMUNE), "create", "CarePlan", plan(child, complete=False))
    assert draft.status == 201, draft.body
    missing = [e for e in draft.body["extension"] if e["url"] == MISSING_POINT_EXT]
    assert len(missing) == 9
    other = as_child(await local.child(14))  # the first child has an open plan already
    local.consent_state(PatientAccessState(patient=other.id, related=[KOMMUNE]))
    active = await local.call(caller(KOMMUNE), "create", "CarePlan",
                              plan(other, status="active"))  # fmt: skip
    assert active.status == 422 and "consent" in active.diagnostics


# -- consent -----------------------------------------------------------------------------


async def test_consents_are_written_through_the_consent_api_only(local: LocalServices) -> None:
    consent = {"resourceType": "Consent", "status": "active", "scope": {"text": "x"},
               "category": [{"text": "x"}]}  # fmt: skip
    answer = await local.call(caller(BVT), "create", "Consent", consent)
    assert answer.status in (403, 405) and answer.status != 201


# -- subscriptions -----------------------------------------------------------------------


async def test_a_subscription_needs_the_scopes_its_topic_tells_of(local: LocalServices) -> None:
    body = subscription("referral-status", endpoint="https://partner.example/hook")
    only = caller(BUP).model_copy(update={"scopes": ["system/Subscription.cruds"]})
    refused = await local.call(only, "create", "Subscription", body)
    assert refused.status == 403 and "system/Task.r" in refused.diagnostics
    made = await local.call(caller(BUP), "create", "Subscription", body)
    assert made.status == 201, made.body
    changed = {**made.body, "criteria": TOPIC_BASE + "referral-deadline"}
    again = await local.call(caller(BUP), "update", "Subscription", changed, id=made.body["id"])
    assert again.status == 422 and "cannot change" in again.diagnostics


async def test_a_school_hears_nothing_of_consents(local: LocalServices) -> None:
    body = subscription("consent", endpoint="https://partner.example/hook")
    answer = await local.call(caller(SKOLE), "create", "Subscription", body)
    assert answer.status == 403 and "permission table" in answer.diagnostics


async def test_a_rest_hook_is_https(local: LocalServices) -> None:
    body = subscription("referral-status", endpoint="http://partner.example/hook")
    answer = await local.call(caller(BUP), "create", "Subscription", body)
    assert answer.status == 422, answer.body


# -- a create sent again ---------------------------------------------------------------------


def test_every_type_a_client_creates_has_an_identifier_to_create_it_conditionally() -> None:
    """A create whose answer was lost (504) is sent again safely as a conditional create
    on an identifier the client assigned: every type some caller may create can be found
    by `identifier` (or, where FHIR gives the type none, by what makes it unique)."""
    from services.directory.resources import directory_definitions
    from shared.access.permissions import NEVER, TABLE
    from tests.local_services import SERVICES

    definitions = directory_definitions(enforce_orgnr_check_digit=True)
    for make in SERVICES.values():
        definitions += make(OutsideReads())
    definitions += subscription_definitions(DeliveryQueue(), "x", False, EgressPolicy())
    creatable = [
        d for d in definitions
        if d.written_by is None and TABLE.get(d.resource_type, {}).get("create") != NEVER
    ]  # fmt: skip
    assert {d.resource_type for d in creatable} >= {"ServiceRequest", "CarePlan", "CareTeam"}
    # R4B's Subscription has no identifier: a partner repeats it on its endpoint and topic.
    keys = {"Subscription": {"url", "criteria"}}
    missing = [
        d.resource_type
        for d in creatable
        if not keys.get(d.resource_type, {"identifier"}) <= d.params_by_name().keys()
    ]
    assert missing == []


async def test_a_referral_sent_again_with_its_identifier_is_made_once(
    local: LocalServices,
) -> None:
    child = await local.child()
    body = {**referral(child), "identifier": [{"system": "urn:oid:1.2.3", "value": "ref-1"}]}
    condition = "identifier=urn:oid:1.2.3|ref-1"
    first = await local.call(caller(GP), "create", "ServiceRequest", body, if_none_exist=condition)
    again = await local.call(caller(GP), "create", "ServiceRequest", body, if_none_exist=condition)
    assert (first.status, again.status) == (201, 200), (first.body, again.body)
    assert again.headers["Location"] == first.headers["Location"]
