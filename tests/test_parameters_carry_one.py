"""A Parameters parameter carries exactly one of a value[x], a resource or parts (FHIR R4
inv-1): an operation never chooses between two, and `$validate` never validates one
resource while the body says something else beside it."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from shared.fhir.errors import FhirError
from shared.fhir.parameters import OperationParameter, malformed, operation_parameters
from shared.fhir.profiles import profile_url
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


REASON = (OperationParameter("reason", "string", "Why"),)


@pytest.mark.parametrize(
    ("parameters", "status"),
    [
        ([{"name": "reason", "valueBogus": "a"}], 400),  # no such value[x]
        ([{"name": "reason", "value": "a"}], 400),
        ([{"name": "reason", "valueInteger": "a"}], 400),  # not the declared type
        ([{"name": "reason", "valueCode": "a"}], 400),
        ([{"name": "reason", "valueString": 5}], 422),  # not a JSON string
    ],
)
def test_an_operation_takes_each_parameter_as_the_type_it_declares(
    parameters: list[dict[str, Any]], status: int
) -> None:
    with pytest.raises(FhirError) as refused:
        operation_parameters(body(*parameters), "$op", declared=REASON)
    assert refused.value.status == status


def test_an_operation_body_is_valid_r4() -> None:
    junk = orjson.dumps(
        {"resourceType": "Parameters", "junk": 1, "parameter": [{"name": "x", "valueCode": "a"}]}
    )
    with pytest.raises(FhirError) as refused:
        operation_parameters(junk, "$op", ("x",))
    assert refused.value.status == 422
    with pytest.raises(FhirError):  # undeclared types: R4's value[x] still
        operation_parameters(body({"name": "x", "valueBogus": "a"}), "$op", ("x",))
    primitive_extension = {"name": "reason", "valueString": "a", "_valueString": {"id": "e"}}
    assert operation_parameters(body(primitive_extension), "$op", declared=REASON) == {
        "reason": "a"
    }


def test_breaches_are_found_in_parts_too() -> None:
    given = [
        {"name": "ok", "valueString": "a"},
        {"name": "op", "part": [{"name": "type", "valueCode": "add", "valueString": "x"}]},
        {"name": "empty"},
        {"name": "x", "part": "junk"},
        {"name": "x", "part": [5, {"valueString": "no name"}]},
        {"name": {"a": 1}, "valueString": "x"},
        "not a parameter",
    ]
    assert malformed(given) == [
        "Parameters.parameter[1].part[0]",
        "Parameters.parameter[2]",
        "Parameters.parameter[3].part",
        "Parameters.parameter[4].part[0]",
        "Parameters.parameter[4].part[1]",
        "Parameters.parameter[5]",
        "Parameters.parameter[6]",
    ]
    assert malformed("junk") == ["Parameters.parameter"]


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
        "parts that are no list": [
            {"name": "resource", "resource": PRACTITIONER},
            {"name": "x", "part": {"name": "y", "valueString": "a"}},
        ],
        "a parameter without a name": [
            {"name": "resource", "resource": PRACTITIONER},
            {"valueString": "x"},
        ],
        "another profile": [
            {"name": "resource", "resource": PRACTITIONER},
            {"name": "profile", "valueUri": "http://example.org/other"},
        ],
        "another mode": [
            {"name": "resource", "resource": PRACTITIONER},
            {"name": "mode", "valueCode": "delete"},
        ],
        "a parameter $validate does not take": [
            {"name": "resource", "resource": PRACTITIONER},
            {"name": "zzz", "valueString": "x"},
        ],
        "an element R4 does not have": [
            {"name": "resource", "resource": PRACTITIONER},
            {"name": "mode", "valueBogus": "create"},
        ],
    }
    for case, parameters in cases.items():
        wrapped = {"resourceType": "Parameters", "parameter": parameters}
        reply = await stack.call("POST", "Practitioner/$validate", wrapped)
        assert reply.status == 400, (case, reply.body)
        assert reply.json()["resourceType"] == "OperationOutcome", case
    own = profile_url("Practitioner")
    for extra in (
        [],
        [{"name": "mode", "valueCode": "create"}, {"name": "profile", "valueUri": own}],
    ):
        one = {
            "resourceType": "Parameters",
            "parameter": [{"name": "resource", "resource": PRACTITIONER}, *extra],
        }
        reply = await stack.call("POST", "Practitioner/$validate", one)
        assert reply.status == 200 and reply.issues()[0]["severity"] == "information", reply.body
