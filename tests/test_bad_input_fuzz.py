"""Seeded random bad input against the running stack: never a 500, always an
OperationOutcome, and nothing stored by a rejected request."""

from __future__ import annotations

import random
from typing import Any
from urllib.parse import quote

import orjson
import pytest

from tests.support import Stack

TYPES = ["Patient", "RelatedPerson", "Organization", "Practitioner", "PractitionerRole",
         "HealthcareService"]  # fmt: skip
PARAMS = ["identifier", "name", "_id", "_lastUpdated", "birthdate", "type", "patient",
          "patient:identifier", "organization", "_count", "_sort", "_include", "_revinclude",
          "municipality", "name:exact", "name:contains", "family", "_total", "_cursor",
          "gender:not", "active", "bogus", "_since"]  # fmt: skip
NASTY = ["", "|", "||", "a|b|c", "ge", "ge2020", "lt2020-13-45", "eb9999", "Patient/",
         "/", "%", "_", "'; DROP TABLE resources; --", "\\,", ",,", "x" * 500, "0", "-1",
         "1e9", "ø", "Ωmega", "\u0000", "urn:uuid:x", "Organization:partof", "*",
         "PractitionerRole:practitioner", "2020-01-01T25:00:00Z", "true", "null"]  # fmt: skip
VALUES: list[Any] = [None, 0, -1, 1.5, True, "", "x", [], {}, [None], [{}], {"a": 1},
                     "2020-02-30", "9" * 40, [1, 2], {"reference": 5}]  # fmt: skip


def mutate(rng: random.Random, resource: dict[str, Any]) -> dict[str, Any]:
    body = dict(resource)
    for _ in range(rng.randint(1, 3)):
        action = rng.random()
        if action < 0.4 and body:
            key = rng.choice(list(body))
            body[key] = rng.choice(VALUES)
        elif action < 0.7:
            body[rng.choice(["identifier", "name", "birthDate", "contact", "type", "address",
                             "relationship", "patient", "meta", "extension", "zzz"])] = (
                rng.choice(VALUES)
            )  # fmt: skip
        elif body:
            body.pop(rng.choice(list(body)))
    return body


SEEDS: dict[str, dict[str, Any]] = {
    "Patient": {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": "21030550231"}],
        "birthDate": "2005-03-21",
    },
    "Organization": {
        "resourceType": "Organization",
        "type": [
            {
                "coding": [
                    {
                        "system": "https://fhir.barnebro.no/CodeSystem/organisation-kind",
                        "code": "bup",
                    }
                ]
            }
        ],
    },
    "RelatedPerson": {"resourceType": "RelatedPerson", "patient": {"reference": "Patient/x"}},
}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
async def test_random_bad_input_never_gets_a_500(stack: Stack) -> None:
    rng = random.Random(20261124)
    for _ in range(150):
        resource_type = rng.choice(list(SEEDS))
        kind = rng.random()
        if kind < 0.4:
            body = orjson.dumps(mutate(rng, SEEDS[resource_type]))
            if rng.random() < 0.2:
                body = body[: rng.randint(0, len(body))]
            reply = await stack.call("POST", resource_type, raw=body)
        elif kind < 0.8:
            query = "&".join(
                f"{rng.choice(PARAMS)}={quote(rng.choice(NASTY))}" for _ in range(rng.randint(1, 3))
            )
            reply = await stack.call("GET", f"{rng.choice(TYPES)}?{query}")
        else:
            reply = await stack.call(
                rng.choice(["GET", "PUT", "DELETE"]),
                f"{rng.choice(TYPES)}/{quote(rng.choice(NASTY), safe='')}",
                raw=orjson.dumps(mutate(rng, SEEDS[resource_type])),
                headers={"If-Match": rng.choice(['W/"1"', "x", ""])},
            )
        assert reply.status < 500, (reply.status, reply.body)
        if reply.status >= 400 and reply.body:
            assert reply.json()["resourceType"] == "OperationOutcome", reply.body
