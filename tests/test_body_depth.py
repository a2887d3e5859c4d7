"""A body may nest at most 64 levels, and a resource sent in a batch or transaction, or as
a parameter, may nest as deep as it may on its own: the wrapper's levels are not the
resource's."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from shared.fhir.errors import FhirError
from shared.fhir.resources import MAX_DEPTH, height, parse_json


def nested_practitioner(levels: int) -> dict[str, Any]:
    """A Practitioner whose JSON nests exactly `levels` levels: extensions in extensions
    (two levels each) ending in a string (one level) or a Coding (two)."""
    leaf: dict[str, Any] = (
        {"valueString": "x"} if levels % 2 == 0 else {"valueCoding": {"code": "x"}}
    )
    extension: dict[str, Any] = {"url": "https://example.org/x", **leaf}
    for _ in range((levels - 4 - levels % 2) // 2):
        extension = {"url": "https://example.org/x", "extension": [extension]}
    resource = {"resourceType": "Practitioner", "extension": [extension]}
    assert height(resource) == levels
    return resource


def wrapped(resource: dict[str, Any], kind: str) -> dict[str, Any]:
    if kind == "Parameters":
        return {
            "resourceType": "Parameters",
            "parameter": [{"name": "resource", "resource": resource}],
        }
    entry = {"resource": resource, "request": {"method": "POST", "url": "Practitioner"}}
    return {"resourceType": "Bundle", "type": kind, "entry": [entry]}


@pytest.mark.parametrize("kind", [None, "transaction", "batch", "Parameters"])
def test_a_resource_at_the_limit_is_read_alone_or_wrapped(kind: str | None) -> None:
    resource = nested_practitioner(MAX_DEPTH)
    body = resource if kind is None else wrapped(resource, kind)
    assert parse_json(orjson.dumps(body)) == body


@pytest.mark.parametrize("kind", [None, "transaction", "batch", "Parameters", "collection"])
def test_a_resource_past_the_limit_is_refused_alone_or_wrapped(kind: str | None) -> None:
    resource = nested_practitioner(MAX_DEPTH + 1)
    body = resource if kind is None else wrapped(resource, kind)
    with pytest.raises(FhirError) as refused:
        parse_json(orjson.dumps(body))
    assert refused.value.status == 400
    assert refused.value.issues[0].diagnostics == "The body is nested deeper than 64 levels"


def test_a_stored_bundle_gets_no_allowance() -> None:
    """A collection or document Bundle is itself the resource: its whole height counts."""
    body = wrapped(nested_practitioner(MAX_DEPTH - 2), "collection")
    assert height(body) == MAX_DEPTH + 1
    with pytest.raises(FhirError):
        parse_json(orjson.dumps(body))


def test_a_body_whose_resource_type_is_not_a_string_is_told_as_a_resource_is() -> None:
    """Read before the model is: whatever `resourceType` holds, the check does not fail."""
    for odd in ({"a": 1}, ["Bundle"], 7, None):
        assert parse_json(orjson.dumps({"resourceType": odd, "type": "transaction"}))
