"""Which directory writes make the directory wait for the consent service before it answers
(`shared.access.authority`): those that change what the consent service reads of a child
or a parent, and nothing else, so an address change costs no round trip."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any, cast

import pytest

from services.directory.resources import PatientDefinition, RelatedPersonDefinition
from shared.access import authority
from shared.codes import (
    CARE_ORDER_CODE,
    CONTACT_RELATIONSHIP_SYSTEM,
    PARENTAL_RESPONSIBILITY_SYSTEM,
)
from shared.fhir.definitions import Change, WriteContext

CHILD: dict[str, Any] = {"resourceType": "Patient", "id": "c1", "birthDate": "2015-03-01"}
PARENT: dict[str, Any] = {
    "resourceType": "RelatedPerson",
    "id": "r1",
    "patient": {"reference": "Patient/c1"},
    "relationship": [{"coding": [{"system": PARENTAL_RESPONSIBILITY_SYSTEM, "code": "felles"}]}],
}
CARE_ORDER = {"system": CONTACT_RELATIONSHIP_SYSTEM, "code": CARE_ORDER_CODE}
ORDER = {
    "relationship": [{"coding": [CARE_ORDER]}],
    "organization": {"reference": "Organization/o1"},
    "period": {"start": "2024-01-01"},
}


def noted(definition: Any, before: dict[str, Any] | None, after: dict[str, Any] | None) -> set[str]:
    """The children a write of `before` → `after` asks the consent service to judge."""

    async def write() -> frozenset[str]:
        res_id = (after or before or {})["id"]
        change = Change(definition.resource_type, res_id, 2, before, after)
        await definition.after_write(change, cast(WriteContext, None))
        return authority._changed.get()

    return set(contextvars.copy_context().run(asyncio.run, write()))


def patient() -> PatientDefinition:
    return PatientDefinition(enforce_orgnr_check_digit=False)


def parent() -> RelatedPersonDefinition:
    return RelatedPersonDefinition(enforce_orgnr_check_digit=False)


@pytest.mark.parametrize(
    "after",
    [
        {**CHILD, "birthDate": "2015-03-02"},
        {**CHILD, "contact": [ORDER]},
        None,
    ],
    ids=["birth date corrected", "care order added", "deleted"],
)
def test_a_change_to_what_decides_authority_over_a_child_is_judged(after: Any) -> None:
    assert noted(patient(), CHILD, after) == {"c1"}


def test_a_care_order_ended_is_judged() -> None:
    before = {**CHILD, "contact": [ORDER]}
    ended = {**ORDER, "period": {"start": "2024-01-01", "end": "2026-01-01"}}
    assert noted(patient(), before, {**CHILD, "contact": [ended]}) == {"c1"}


def test_a_new_child_or_a_change_of_name_waits_for_nothing() -> None:
    assert noted(patient(), None, CHILD) == set()
    assert noted(patient(), CHILD, {**CHILD, "name": [{"family": "Nordmann"}]}) == set()


@pytest.mark.parametrize(
    "after",
    [
        {**PARENT, "active": False},
        {**PARENT, "period": {"end": "2026-01-01"}},
        {**PARENT, "relationship": []},
        None,
    ],
    ids=["inactive", "ended", "responsibility removed", "deleted"],
)
def test_an_ended_parental_responsibility_is_judged(after: Any) -> None:
    assert noted(parent(), PARENT, after) == {"c1"}


def test_a_parent_moved_to_another_child_is_judged_for_both() -> None:
    moved = {**PARENT, "patient": {"reference": "Patient/c2"}}
    assert noted(parent(), PARENT, moved) == {"c1", "c2"}


def test_a_new_parent_or_a_change_of_address_waits_for_nothing() -> None:
    assert noted(parent(), None, PARENT) == set()
    assert noted(parent(), PARENT, {**PARENT, "address": [{"city": "Bergen"}]}) == set()
