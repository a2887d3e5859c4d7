"""Codes outside their element's required binding are refused where a resource is parsed,
at any depth; a binding the model lists only in part is left to the rules that read it."""

from __future__ import annotations

from typing import Any

import pytest

from shared.fhir.errors import FhirError
from shared.fhir.resources import validate_resource

PLAN = {"resourceType": "CarePlan", "intent": "plan", "subject": {"reference": "Patient/1"}}
GOAL = {"resourceType": "Goal", "description": {"text": "Skole"}, "subject": PLAN["subject"]}


def problems(resource: dict[str, Any]) -> set[tuple[str, str]]:
    with pytest.raises(FhirError) as raised:
        validate_resource(resource)
    assert raised.value.status == 422
    return {(i.code, i.expression[0]) for i in raised.value.issues}


@pytest.mark.parametrize(
    ("resource", "where"),
    [
        (PLAN | {"status": "paused"}, "CarePlan.status"),
        (PLAN | {"status": "active", "intent": "wish"}, "CarePlan.intent"),
        (GOAL | {"lifecycleStatus": "done"}, "Goal.lifecycleStatus"),
        ({"resourceType": "Patient", "gender": "M"}, "Patient.gender"),
        (
            {"resourceType": "Patient", "name": [{"use": "official"}, {"use": "nick"}]},
            "Patient.name[1].use",
        ),
        (
            {"resourceType": "Patient", "telecom": [{"system": "phone", "use": "cell"}]},
            "Patient.telecom[0].use",
        ),
    ],
)
def test_a_code_outside_its_required_binding_is_refused(
    resource: dict[str, Any], where: str
) -> None:
    assert problems(resource) == {("code-invalid", where)}


def test_the_refusal_names_the_allowed_codes() -> None:
    with pytest.raises(FhirError) as raised:
        validate_resource(GOAL | {"lifecycleStatus": "Active"})
    diagnostics = raised.value.issues[0].diagnostics
    assert "'Active' is not one of" in diagnostics
    assert "proposed | planned | accepted | active" in diagnostics


@pytest.mark.parametrize(
    "resource",
    [
        PLAN | {"status": status}
        for status in ("draft", "active", "on-hold", "revoked", "completed", "entered-in-error")
    ]
    + [GOAL | {"lifecycleStatus": "on-hold"}, {"resourceType": "Patient", "gender": "unknown"}]
    # Task.status is listed in part by the model (…, accepted, +): not checked here.
    + [{"resourceType": "Task", "status": "in-progress", "intent": "order"}],
)
def test_codes_of_the_binding_are_accepted(resource: dict[str, Any]) -> None:
    assert validate_resource(resource) == resource["resourceType"]


def test_every_wrong_code_is_reported_with_the_wrong_types() -> None:
    resource = {"resourceType": "Patient", "gender": "M", "active": "true"}
    assert problems(resource) == {("code-invalid", "Patient.gender"), ("invalid", "Patient.active")}
