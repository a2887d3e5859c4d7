"""A FHIRPath Patch operation says exactly one thing: its parts are named once each and
belong to its type, or the patch is refused (400) before anything is read."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from shared.fhir.errors import FhirError
from shared.fhir.fhirpath_patch import parse_fhirpath_patch


def patch(*parts: dict[str, Any]) -> bytes:
    operation = {"name": "operation", "part": list(parts)}
    return orjson.dumps({"resourceType": "Parameters", "parameter": [operation]})


TYPE_REPLACE = {"name": "type", "valueCode": "replace"}
PATH = {"name": "path", "valueString": "Patient.gender"}
VALUE = {"name": "value", "valueCode": "female"}
DELETE = {"name": "type", "valueCode": "delete"}
OTHER_PATH = {"name": "path", "valueString": "Patient.id"}


def refused(body: bytes) -> str:
    with pytest.raises(FhirError) as caught:
        parse_fhirpath_patch("Patient", body, 10)
    assert caught.value.status == 400
    return str(caught.value)


def test_a_plain_replace_is_read() -> None:
    [operation] = parse_fhirpath_patch("Patient", patch(TYPE_REPLACE, PATH, VALUE), 10)
    assert (operation.type, operation.pointer, operation.value) == ("replace", "/gender", "female")


@pytest.mark.parametrize(
    ("parts", "said"),
    [
        ((TYPE_REPLACE, PATH, VALUE, DELETE), "'type' is given twice"),
        ((TYPE_REPLACE, PATH, VALUE, OTHER_PATH), "'path' is given twice"),
        ((TYPE_REPLACE, PATH, VALUE, VALUE), "'value' is given twice"),
        ((TYPE_REPLACE, PATH, VALUE, {"name": "bogus", "valueString": "x"}), "no part 'bogus'"),
        ((DELETE, PATH, VALUE), "delete has no part 'value'"),
        (({"name": "type"}, PATH), "'type' carries one value[x]"),
        (({"name": "type", "valueString": "replace"}, PATH, VALUE), "names no type"),
        ((PATH, VALUE), "names no type"),
        ((TYPE_REPLACE, PATH, {"value": "no name"}), "a list of named parts"),
        (({**TYPE_REPLACE, "valueString": "delete"}, PATH, VALUE), "'type' carries one value[x]"),
        (({**TYPE_REPLACE, "part": [DELETE]}, PATH, VALUE), "'type' carries one value[x]"),
        ((TYPE_REPLACE, {**PATH, "valueCode": "Patient.id"}, VALUE), "'path' carries one"),
        ((TYPE_REPLACE, PATH, {**VALUE, "valueString": "male"}), "'value' carries one"),
    ],
)  # fmt: skip
def test_an_operation_that_says_more_than_one_thing_is_refused(
    parts: tuple[dict[str, Any], ...], said: str
) -> None:
    text = refused(patch(*parts))
    assert said in text
    assert "None" not in text


def test_an_operation_that_also_carries_a_value_is_refused() -> None:
    operation = {"name": "operation", "valueString": "x", "part": [TYPE_REPLACE, PATH, VALUE]}
    body = orjson.dumps({"resourceType": "Parameters", "parameter": [operation]})
    assert "carries its parts and nothing else" in refused(body)
