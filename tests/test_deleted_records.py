"""A deleted record stays deleted: an update does not bring it back under its old id.

An update of a deleted Patient used to pass as a create (no version to keep rules
against), so a child came back without the person number a client's update never drops;
a deleted Practitioner or Organization without its HPR number or organisasjonsnummer
alike. Through HTTP, on both backends.
"""

from __future__ import annotations

from typing import Any

from services.consent.relations import RelationWatch
from shared.access.state import PatientAccessState
from tests.support import Stack, wait_for

FNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.1"
HPR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.4"
ORGNR_SYSTEM = "urn:oid:2.16.578.1.12.4.1.4.101"
KIND_SYSTEM = "https://fhir.barnebro.no/CodeSystem/organisation-kind"
FNR = "21030550231"
ORGNR_GP = "974760738"
ORGNR_OTHER = "974760711"


def a_child() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": FNR_SYSTEM, "value": FNR}],
        "name": [{"family": "Nordmann"}],
    }


async def _created(stack: Stack, resource: dict[str, Any], token: str) -> str:
    reply = await stack.call("POST", resource["resourceType"], resource, token=token)
    assert reply.status == 201, reply.body
    return str(reply.json()["id"])


async def _refused_after_delete(
    stack: Stack, resource: dict[str, Any], bare: dict[str, Any], token: str
) -> None:
    """`resource` is created and deleted; neither it whole nor `bare` (without its
    identifier) comes back by PUT, and its history ends with the delete."""
    kind = resource["resourceType"]
    res_id = await _created(stack, resource, token)
    deleted = await stack.call("DELETE", f"{kind}/{res_id}", token=token)
    assert deleted.status == 204, deleted.body
    for body in ({**bare, "id": res_id}, {**resource, "id": res_id}):
        reply = await stack.call("PUT", f"{kind}/{res_id}", body, token=token)
        assert reply.status == 410, reply.body
        [issue] = reply.issues()
        assert issue["code"] == "deleted"
        assert f"{kind}/{res_id} was deleted" in issue["diagnostics"]
        assert "POST" in issue["diagnostics"]
    assert (await stack.call("GET", f"{kind}/{res_id}", token=token)).status == 410
    history = (await stack.call("GET", f"{kind}/{res_id}/_history", token=token)).json()
    assert [e["request"]["method"] for e in history["entry"]] == ["DELETE", "POST"]


async def test_a_deleted_child_is_not_brought_back_without_its_person_number(
    stack: Stack,
) -> None:
    fastlege = stack.token(orgnr=ORGNR_GP, kind="fastlege")
    child = {
        "resourceType": "Patient",
        "identifier": [{"system": FNR_SYSTEM, "value": FNR}],
        "name": [{"family": "Nordmann", "given": ["Kari"]}],
    }
    await _refused_after_delete(stack, child, {"resourceType": "Patient"}, fastlege)
    # The person number is free again for the child registered anew, as the answer says.
    again = await _created(stack, child, fastlege)
    stored = (await stack.call("GET", f"Patient/{again}", token=fastlege)).json()
    assert stored["identifier"] == child["identifier"]


async def test_a_deleted_practitioner_or_organisation_is_not_brought_back(
    stack: Stack,
) -> None:
    doctor = {
        "resourceType": "Practitioner",
        "identifier": [{"system": HPR_SYSTEM, "value": "9144900"}],
        "name": [{"family": "Lege"}],
    }
    bare_doctor = {"resourceType": "Practitioner", "name": [{"family": "Lege"}]}
    await _refused_after_delete(stack, doctor, bare_doctor, stack.token())
    organisation = {
        "resourceType": "Organization",
        "identifier": [{"system": ORGNR_SYSTEM, "value": ORGNR_OTHER}],
        "type": [{"coding": [{"system": KIND_SYSTEM, "code": "bup"}]}],
        "name": "BUP Oslo",
    }
    bare = {key: organisation[key] for key in ("resourceType", "type", "name")}
    await _refused_after_delete(stack, organisation, bare, stack.operator_token())


async def test_a_record_that_is_kept_answers_an_update_as_before(stack: Stack) -> None:
    """A live record is updated as before (the refusal is for deleted ones only)."""
    fastlege = stack.token(orgnr=ORGNR_GP, kind="fastlege")
    child = a_child()
    res_id = await _created(stack, child, fastlege)
    renamed = {**child, "id": res_id, "name": [{"family": "Endret"}]}
    reply = await stack.call("PUT", f"Patient/{res_id}", renamed, token=fastlege)
    assert reply.status == 200, reply.body
    assert reply.json()["identifier"] == child["identifier"]


async def test_a_deleted_child_another_may_not_see_answers_as_a_missing_one(
    stack: Stack,
) -> None:
    """Whether a deleted record was there is told only to who may see it: to another
    organisation an update of it answers exactly as one of an id never used."""
    fastlege = stack.token(orgnr=ORGNR_GP, kind="fastlege")
    child = a_child()
    res_id = await _created(stack, child, fastlege)
    assert (await stack.call("DELETE", f"Patient/{res_id}", token=fastlege)).status == 204
    stranger = stack.token(orgnr=ORGNR_OTHER, kind="bup")
    never = "0" * 8 + res_id[8:]
    answers = []
    for some_id in (res_id, never):
        body = {"resourceType": "Patient", "id": some_id}
        reply = await stack.call("PUT", f"Patient/{some_id}", body, token=stranger)
        text = reply.body.decode().replace(some_id, "<id>")
        answers.append((reply.status, text, reply.headers.get("ETag")))
    assert answers[0] == answers[1]
    assert answers[0][0] == 405, answers[0]


async def test_relations_learnt_after_a_child_was_deleted_revoke_its_state(stack: Stack) -> None:
    """A record's events may reach the consent service after its child was deleted (the
    relation watch then publishes the child's state again): the child's access state is
    revoked, as a reassessment does, rather than the events being retried until they are
    set aside as dead letters."""
    fastlege = stack.token(orgnr=ORGNR_GP, kind="fastlege")
    child = a_child()
    res_id = await _created(stack, child, fastlege)
    view = stack.consent.consent_view
    assert view is not None

    async def related() -> bool:
        state = view.state(res_id)
        return state is not None and ORGNR_GP in state.related

    async def revoked() -> bool:
        return view.state(res_id) == PatientAccessState(patient=res_id)

    await wait_for(related)
    assert (await stack.call("DELETE", f"Patient/{res_id}", token=fastlege)).status == 204
    await wait_for(revoked)  # the directory's deletion event is reassessed
    watch = next(c for c in stack.consent.components if isinstance(c, RelationWatch))
    await watch.handlers.republish_all([res_id])
    assert await revoked()
