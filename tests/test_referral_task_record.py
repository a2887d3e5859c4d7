"""The workflow Task a referral gets is built by the referral service (`new_task`) and
stored without being parsed against the FHIR model again: this is where it is checked that
every Task so built is a valid R4 Task, for each form a validated referral can take."""

from __future__ import annotations

from typing import Any

import pytest

from services.referral.records import new_task
from shared.fhir.resources import validate_resource
from shared.identifiers import FNR_SYSTEM, HERID_SYSTEM, ORGNR_SYSTEM

ORGANISATION_FORMS: dict[str, dict[str, Any]] = {
    "by orgnr": {
        "type": "Organization",
        "identifier": {"system": ORGNR_SYSTEM, "value": "974589095"},
    },
    "by HER-id": {
        "identifier": {"system": HERID_SYSTEM, "value": "8094867"},
        "display": "BUP Oslo",
    },
    "by reference": {"reference": "Organization/bup-oslo", "display": "BUP Oslo"},
}
CHILD_FORMS: dict[str, dict[str, Any]] = {
    "by reference": {"reference": "Patient/child-1"},
    "by person number": {"identifier": {"system": FNR_SYSTEM, "value": "13091596547"}},
}


def referral(priority: str | None, child: dict[str, Any], org: dict[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": "referral-1",
        "status": "active",
        "intent": "order",
        "subject": child,
        "requester": org,
        "performer": [org],
        "reasonCode": [{"text": "Angst og skolevegring over tid"}],
    }
    if priority is not None:
        resource["priority"] = priority
    return resource


@pytest.mark.parametrize("priority", [None, "routine", "urgent", "asap", "stat"])
@pytest.mark.parametrize("child", sorted(CHILD_FORMS))
@pytest.mark.parametrize("org", sorted(ORGANISATION_FORMS))
def test_the_task_of_a_valid_referral_is_a_valid_task(
    priority: str | None, child: str, org: str
) -> None:
    service_request = referral(priority, CHILD_FORMS[child], ORGANISATION_FORMS[org])
    assert validate_resource(service_request, "ServiceRequest") == "ServiceRequest"
    task = new_task(service_request, "2026-12-07T09:30:00+01:00")
    assert validate_resource(task, "Task") == "Task"
    assert task["focus"] == {"reference": "ServiceRequest/referral-1"}
    assert task["owner"] == ORGANISATION_FORMS[org]
