"""The CapabilityStatement offers an interaction only where some caller may ask for it.

An interaction the permission table refuses to every kind of caller (405: barnebro keeps
or writes the type itself) is left out: a client generated from the statement would
otherwise offer it and meet 405. Checked against `permission`, the decision every
request meets, for a caller of every kind.
"""

from __future__ import annotations

import pytest

from services.catalogue import all_definitions
from shared.access.permissions import ACTOR_KINDS, INTERACTION_ACTIONS, Actor, permission
from shared.config import Settings
from shared.fhir.capability import (
    CAPABILITY_CODES,
    INTERACTIONS,
    READ_INTERACTIONS,
    offered_interactions,
    service_capability,
)
from shared.fhir.definitions import ResourceDefinition
from shared.fhir.errors import FhirError
from shared.transport.wire import Caller, Credential

CREDENTIALS: dict[Actor, Credential] = {
    Actor.PERSON: "person",
    Actor.OPERATOR: "operator",
    Actor.REGISTER: "register",
}


def callers() -> list[Caller]:
    """One caller of each column of the table."""
    found = [Caller(credential=credential) for credential in CREDENTIALS.values()]
    found += [Caller(orgnr="974760673", org_kind=min(kinds)) for kinds in ACTOR_KINDS.values()]
    return found


def refused_to_everyone(resource_type: str, code: str) -> bool:
    action = INTERACTION_ACTIONS[CAPABILITY_CODES.get(code, code)]
    for caller in callers():
        try:
            permission(caller, resource_type, action)
        except FhirError as refusal:
            if refusal.status == 405:
                continue
        return False
    return True


DEFINITIONS = all_definitions(Settings())


@pytest.mark.parametrize("definition", DEFINITIONS, ids=lambda d: d.resource_type)
def test_what_is_offered_someone_may_ask_and_what_is_not_no_one_may(
    definition: ResourceDefinition,
) -> None:
    offered = offered_interactions(definition)
    resource_type = definition.resource_type
    for code in offered:
        assert not refused_to_everyone(resource_type, code), (resource_type, code)
    base = READ_INTERACTIONS if definition.written_by else INTERACTIONS
    for code in set(base) - set(offered):
        assert refused_to_everyone(resource_type, code), (resource_type, code)


def test_kept_records_are_not_offered_for_deletion() -> None:
    by_type = {d.resource_type: offered_interactions(d) for d in DEFINITIONS}
    for resource_type in ("CarePlan", "CareTeam", "Goal", "DocumentReference", "ServiceRequest"):
        assert "delete" not in by_type[resource_type], resource_type
        assert {"create", "update", "patch"} <= set(by_type[resource_type]), resource_type
    assert not {"create", "delete"} & set(by_type["Task"])
    assert {"update", "patch"} <= set(by_type["Task"])
    assert "delete" in by_type["Patient"]


@pytest.mark.parametrize("definition", DEFINITIONS, ids=lambda d: d.resource_type)
def test_validate_is_offered_where_someone_may_ask_for_it(definition: ResourceDefinition) -> None:
    """`$validate` checks what a create would, and is refused as a create is."""
    [resource] = service_capability("unit", [definition])["resources"]
    offered = "validate" in {operation["name"] for operation in resource.get("operation", [])}
    assert offered == (not refused_to_everyone(definition.resource_type, "validate"))
