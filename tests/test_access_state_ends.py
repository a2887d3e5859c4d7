"""The consent service carries an end of parental responsibility or of a care order that
the register set ahead of time into the child's access state, so every service stops
counting it on the day after, without a new publication."""

from __future__ import annotations

from datetime import date

from services.consent.access_state import patient_state
from services.consent.directory import child_facts
from shared.codes import PARENTAL_RESPONSIBILITY_SYSTEM

TODAY = date(2026, 12, 6)


def parent(person_id: str, **more: object) -> dict[str, object]:
    coding = {"system": PARENTAL_RESPONSIBILITY_SYSTEM, "code": "felles"}
    return {"resourceType": "RelatedPerson", "id": person_id,
            "patient": {"reference": "Patient/c1"},
            "relationship": [{"coding": [coding]}], **more}  # fmt: skip


def test_a_parental_responsibility_ending_ahead_is_carried_with_its_last_day() -> None:
    child = {"resourceType": "Patient", "id": "c1", "birthDate": "2016-05-01"}
    related = [
        parent("r1", period={"start": "2016-05-01", "end": "2027-01-31"}),
        parent("r2"),
        parent("r3", period={"end": "2026-12-05"}),  # ended yesterday: holds nothing
    ]
    facts = child_facts(child, related, TODAY)
    assert facts.parents_with_responsibility == ("RelatedPerson/r1", "RelatedPerson/r2")
    state = patient_state("c1", facts, [], [], care_order_ends={"974760673": date(2027, 3, 1)})
    assert state.parents_end == {"RelatedPerson/r1": date(2027, 1, 31)}
    assert state.care_order_ends == {"974760673": date(2027, 3, 1)}
    assert state.is_parent("RelatedPerson/r1", date(2027, 1, 31))
    assert not state.is_parent("RelatedPerson/r1", date(2027, 2, 1))
    assert state.is_parent("RelatedPerson/r2", date(2027, 2, 1))
