"""A Parameters parameter carries exactly one of a value[x], a resource or parts (FHIR R4
inv-1): an operation never chooses between two, and `$validate` never validates one
resource while the body says something else beside it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from shared.fhir.errors import FhirError
from shared.fhir.parameters import inv1_breaches, operation_parameters
from tests.support import Stack

PRACTITIONER = {"resourceType": "Practitioner", "name": [{"family": "Lege"}]}


def body(*parameters: dict[str, Any]) -> bytes:
    return orjson.dumps({"resourceType": "Parameters", "parameter": list(parameters)})


@pytest.mark.parametrize(
    "parameter",
    [
        {"name": "reason", "valueString": "a", "resource": PRACTITIONER},
        {"name": "reason", "valueString": "a", "part": [{"name": "x", "valueCode": "b"}]},
        {"name": "reason", "valueString": "a", "valueCode": "b"},
    ],
)
def test_an_operation_refuses_a_parameter_that_carries_two_things(
    parameter: dict[str, Any],
) -> None:
    with pytest.raises(FhirError) as refused:
        operation_parameters(body(parameter), "$op", ("reason",))
    assert refused.value.status == 400
    assert operation_parameters(body({"name": "reason", "valueString": "a"}), "$op") == {
        "reason": "a"
    }


def test_breaches_are_found_in_parts_too() -> None:
    given = [
        {"name": "ok", "valueString": "a"},
        {"name": "op", "part": [{"name": "type", "valueCode": "add", "valueString": "x"}]},
        {"name": "empty"},
    ]
    assert inv1_breaches(given) == [
        "Parameters.parameter[1].part[0]",
        "Parameters.parameter[2]",
    ]


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_validate_refuses_parameters_that_say_two_things(stack: Stack) -> None:
    await stack.admit("974760673", "bup")
    cases = {
        "a value beside the resource": [
            {"name": "resource", "resource": PRACTITIONER, "valueString": "x"}
        ],
        "the resource twice": [
            {"name": "resource", "resource": PRACTITIONER},
            {"name": "resource", "resource": {**PRACTITIONER, "gender": 3}},
        ],
        "a mode with parts beside its value": [
            {"name": "resource", "resource": PRACTITIONER},
            {"name": "mode", "valueCode": "create", "part": [{"name": "x", "valueCode": "y"}]},
        ],
    }
    for case, parameters in cases.items():
        wrapped = {"resourceType": "Parameters", "parameter": parameters}
        reply = await stack.call("POST", "Practitioner/$validate", wrapped)
        assert reply.status == 400, (case, reply.body)
        assert reply.json()["resourceType"] == "OperationOutcome", case
    one = {
        "resourceType": "Parameters",
        "parameter": [{"name": "resource", "resource": PRACTITIONER}],
    }
    reply = await stack.call("POST", "Practitioner/$validate", one)
    assert reply.status == 200 and reply.issues()[0]["severity"] == "information", reply.body
