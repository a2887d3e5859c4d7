"""The worked case «institution admission» (DOMAIN §9) at the directory level: a
14-year-old under a care order moves to an institution in another municipality, changes
GP, and the facts the consent service will need are all there, with their events."""

from __future__ import annotations

from datetime import date
from typing import Any

import nats
import pytest

from shared.codes import (
    CARE_ORDER_CODE,
    CONTACT_RELATIONSHIP_SYSTEM,
)
from shared.events import DomainEvent
from shared.identifiers import FNR_SYSTEM, parse_person_number
from tests.support import Stack, fodselsnummer, organisation, parent, wait_for


@pytest.mark.parametrize("backend", ["postgresql"])
async def test_institution_admission_of_a_child_under_a_care_order(stack: Stack) -> None:
    # The operator registers the organisations and the population register the parents;
    # the default token is the barnevernstjeneste's (registered first, so the register
    # states its kind), which registers the child and records its own care order.
    writers = {"Organization": stack.operator_token(), "RelatedPerson": stack.register_token()}

    async def create(resource: dict[str, Any]) -> dict[str, Any]:
        token = writers.get(resource["resourceType"], stack.token())
        reply = await stack.call("POST", resource["resourceType"], resource, token=token)
        assert reply.status == 201, reply.body
        created: dict[str, Any] = reply.json()
        return created

    bvt = await create(organisation("barnevernstjeneste", "Bergen bvt", "974760673", "4601"))
    gp_office = await create(organisation("fastlege", "Legekontor Bergen", "889640782", "4601"))
    new_gp_office = await create(
        organisation("fastlege", "Legekontor Kristiansand", "985399077", "4204")
    )
    born = date(date.today().year - 14, 6, 15)
    fnr = fodselsnummer(born, 512)
    assert parse_person_number(fnr).birth_date == born
    child = await create(
        {
            "resourceType": "Patient",
            "identifier": [{"system": FNR_SYSTEM, "value": fnr}],
            "generalPractitioner": [{"reference": f"Organization/{gp_office['id']}"}],
        }
    )
    assert child["birthDate"] == born.isoformat(), "derived from the fødselsnummer"
    mother = await create(parent(child["id"], "Kari"))
    father = await create(parent(child["id"], "Ola"))

    # barnevernstjenesten takes over care; the child moves to an institution elsewhere
    child["contact"] = [{
        "relationship": [{"coding": [{"system": CONTACT_RELATIONSHIP_SYSTEM,
                                      "code": CARE_ORDER_CODE}]}],
        "organization": {"reference": f"Organization/{bvt['id']}"},
        "period": {"start": "2026-09-01"},
    }]  # fmt: skip
    child["generalPractitioner"] = [{"reference": f"Organization/{new_gp_office['id']}"}]
    moved = await stack.call("PUT", f"Patient/{child['id']}", child, headers={"If-Match": 'W/"1"'})
    assert moved.status == 200, moved.body
    institution = await create(
        organisation("barneverninstitusjon", "Ungdomshjem Sør", "971526920", "4204")
    )

    # What the consent service will read: who holds the care order, who has parental
    # responsibility, and which GP the child has now.
    found = await stack.call(
        "GET", f"Patient?identifier={FNR_SYSTEM}|{fnr}&_revinclude=RelatedPerson:patient"
    )
    entries = found.json()["entry"]
    assert [e["resource"]["id"] for e in entries if e["search"]["mode"] == "match"] == [child["id"]]
    assert {e["resource"]["id"] for e in entries if e["search"]["mode"] == "include"} == {
        mother["id"],
        father["id"],
    }
    holder = await stack.call("GET", f"Patient?care-order-organization=Organization/{bvt['id']}")
    assert [e["resource"]["id"] for e in holder.json()["entry"]] == [child["id"]]
    by_gp = await stack.call(
        "GET", f"Patient?general-practitioner=Organization/{new_gp_office['id']}"
    )
    assert [e["resource"]["id"] for e in by_gp.json()["entry"]] == [child["id"]]
    old_gp = await stack.call("GET", f"Patient?general-practitioner=Organization/{gp_office['id']}")
    assert old_gp.json()["entry"] == []

    # The events partners and the other services will act on.
    nc = await nats.connect(stack.settings.nats_url)
    try:
        js = nc.jetstream()
        subscription = await js.subscribe(
            f"{stack.settings.nats_prefix}.events.>", ordered_consumer=True
        )
        received: list[DomainEvent] = []

        async def all_arrived() -> bool:
            while True:
                try:
                    msg = await subscription.next_msg(timeout=0.1)
                except TimeoutError:
                    return len(received) >= 10
                received.append(DomainEvent.model_validate_json(msg.data))

        await wait_for(all_arrived, limit=15)
    finally:
        await nc.close()
    about_child = [e.type for e in received if e.patient == child["id"]]
    assert about_child == [
        "directory.Patient.created",
        "directory.RelatedPerson.created",
        "directory.RelatedPerson.parental-responsibility-changed",
        "directory.RelatedPerson.created",
        "directory.RelatedPerson.parental-responsibility-changed",
        "directory.Patient.updated",
        "directory.Patient.care-order-started",
    ]
    started = next(e for e in received if e.type.endswith("care-order-started"))
    assert started.data["organization"] == f"Organization/{bvt['id']}"
    registered = [e for e in received if e.type.endswith("institution-registered")]
    assert [(e.resource_id, e.data["municipalities"]) for e in registered] == [
        (institution["id"], ["4204"])
    ]
