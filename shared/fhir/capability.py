"""CapabilityStatement fragments from services, merged into one at the gateway.

Each service describes the resource types it owns (interactions, search parameters,
operations) from its `ResourceDefinition`s; the gateway merges the fragments of the
services that are registered into the CapabilityStatement at `/fhir/metadata`.
"""

from __future__ import annotations

from typing import Any

from shared import clock
from shared.access.permissions import INTERACTION_ACTIONS, Rule, row_of
from shared.auth.dpop import ALGORITHMS as DPOP_ALGORITHMS
from shared.fhir.conformance import search_parameter_url
from shared.fhir.definitions import ResourceDefinition
from shared.fhir.profiles import profile_url
from shared.fhir.search_query import ID_PARAM, LAST_UPDATED_PARAM

READ_INTERACTIONS = ["read", "vread", "history-instance", "history-type", "search-type"]
INTERACTIONS = [*READ_INTERACTIONS, "update", "patch", "delete", "create"]
VALIDATE = [
    {"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}
]
"""`$validate` checks what a create would: offered where a create is."""
CAPABILITY_CODES = {"search-type": "search"}
"""A CapabilityStatement's interaction codes that the permission table names otherwise."""
COMMON_SEARCH = [ID_PARAM, LAST_UPDATED_PARAM]
COMMON_DEFINITIONS = {
    ID_PARAM.name: "http://hl7.org/fhir/SearchParameter/Resource-id",
    LAST_UPDATED_PARAM.name: "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated",
}
RESULT_PARAMS = [
    {
        "name": "_summary",
        "type": "token",
        "documentation": "true | text | data | count | false, on searches, reads and"
        " histories (count: searches and histories); a subset is tagged SUBSETTED",
    },
    {
        "name": "_elements",
        "type": "string",
        "documentation": "Top-level elements to return (with id, meta and the mandatory"
        " ones), on searches, reads and histories; tagged SUBSETTED",
    },
]
"""Result parameters every type takes (`shared.fhir.subsets`)."""


def offered_interactions(definition: ResourceDefinition) -> list[str]:
    """The interactions some caller may ask of the type: none that writes for a type
    another service derives (`written_by`), and none the permission table refuses to
    everyone (405)."""
    codes = READ_INTERACTIONS if definition.written_by else INTERACTIONS
    return [code for code in codes if _offered(definition.resource_type, code)]


def _offered(resource_type: str, code: str) -> bool:
    row = row_of(resource_type, INTERACTION_ACTIONS[CAPABILITY_CODES.get(code, code)])
    return row is None or any(rule is not Rule.NEVER for rule in row.values())


def service_capability(service: str, definitions: list[ResourceDefinition]) -> dict[str, Any]:
    resources = []
    for definition in definitions:
        own = definition.search_params
        reference_params = [p for p in own if p.type == "reference"]
        interactions = offered_interactions(definition)
        resources.append(
            {
                "type": definition.resource_type,
                "profile": profile_url(definition.resource_type),
                "supportedProfile": [profile_url(definition.resource_type)],
                "documentation": definition.documentation or None,
                "interaction": [{"code": code} for code in interactions],
                "versioning": "versioned-update",
                "readHistory": True,
                "updateCreate": definition.update_create and "update" in interactions,
                "conditionalCreate": "create" in interactions,
                "conditionalUpdate": "update" in interactions,
                "conditionalDelete": "not-supported",
                "searchInclude": [f"{definition.resource_type}:{p.name}" for p in reference_params],
                "searchParam": [
                    *(
                        {
                            "name": p.name,
                            "definition": COMMON_DEFINITIONS[p.name],
                            "type": str(p.type),
                            "documentation": p.documentation or None,
                        }
                        for p in COMMON_SEARCH
                    ),
                    *(
                        {
                            "name": p.name,
                            "definition": search_parameter_url(definition.resource_type, p),
                            "type": str(p.type),
                            "documentation": p.documentation or None,
                        }
                        for p in own
                    ),
                ],
                "operation": [
                    *(VALIDATE if "create" in interactions else []),
                    *({"name": name, "definition": url} for name, url in definition.operations),
                ],
            }
        )
    for resource in resources:
        resource["searchRevInclude"] = [
            f"{d.resource_type}:{p.name}"
            for d in definitions
            for p in d.search_params
            if resource["type"] in p.targets
        ]
    return {"service": service, "resources": _drop_none(resources)}


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def capability_statement(
    fragments: list[dict[str, Any]], *, software_version: str, base_url: str
) -> dict[str, Any]:
    resources = sorted(
        (r for fragment in fragments for r in fragment["resources"]), key=lambda r: r["type"]
    )
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": clock.today().isoformat(),
        "kind": "instance",
        "software": {"name": "barnebro", "version": software_version},
        "implementation": {"description": "barnebro FHIR endpoint", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "cors": False,
                    "service": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                    "code": "SMART-on-FHIR",
                                }
                            ]
                        }
                    ],
                    "description": "JWT access token (HelseID in production) with SMART v2"
                    " system scopes such as system/Patient.cruds, sent as Authorization: Bearer"
                    " or, bound to the client's key, as Authorization: DPoP with a DPoP proof"
                    f" header (RFC 9449; algs {' '.join(DPOP_ALGORITHMS)}). A token with"
                    " cnf.jkt is accepted only with DPoP; the server"
                    " may require DPoP for every integration token.",
                },
                "resource": resources,
                "searchParam": RESULT_PARAMS,
                "interaction": [{"code": "batch"}, {"code": "transaction"}],
            }
        ],
    }
