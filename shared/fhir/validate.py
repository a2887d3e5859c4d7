"""`$validate`: a resource checked as its create would check it, and nothing written.

The answer is always an OperationOutcome (200) listing the problems or saying there are
none; the checks see the service's data as a create by the same caller would, so
validation says no more about what the caller may not read than a create would.
"""

from __future__ import annotations

from typing import Any

from shared.fhir.answers import json_response
from shared.fhir.definitions import ResourceDefinition
from shared.fhir.errors import FhirError, error, information, operation_outcome
from shared.fhir.parameters import inv1_breaches
from shared.fhir.resources import parse_json, validate_resource
from shared.fhir.service import FhirService
from shared.transport.wire import FhirRequest, FhirResponse


async def validate(
    service: FhirService, definition: ResourceDefinition, request: FhirRequest, body: bytes
) -> FhirResponse:
    data = parse_json(body)
    if data.get("resourceType") == "Parameters":
        data = _resource_from_parameters(data)
    try:
        validate_resource(data, definition.resource_type)
        issues = definition.prepare(data, request.caller)
        async with service.reading(request) as uow:
            await definition.verify_references(data, uow.lookup())
            issues += await definition.check_write(data, uow.context(None, None))
    except FhirError as exc:
        if exc.status >= 500:
            raise
        return json_response(200, operation_outcome(exc.issues))
    issues = issues or [information("Validation successful: no problems found")]
    return json_response(200, operation_outcome(issues))


def _resource_from_parameters(parameters: dict[str, Any]) -> dict[str, Any]:
    """The resource a Parameters body gives to validate: its one `resource` parameter, in
    a body whose every parameter carries one thing (inv-1), or the body is refused."""
    given = parameters.get("parameter")
    if not isinstance(given, list) or not all(isinstance(p, dict) for p in given):
        raise error(400, "invalid", "Parameters.parameter is a list of parameters")
    breaches = inv1_breaches(given)
    if breaches:
        raise error(
            400,
            "invalid",
            "A parameter carries exactly one of a value[x], a resource or parts",
            *breaches,
        )
    named = [p for p in given if p.get("name") == "resource"]
    if len(named) != 1 or not isinstance(named[0].get("resource"), dict):
        raise error(400, "invalid", "Parameters for $validate need one 'resource' parameter")
    resource: dict[str, Any] = named[0]["resource"]
    return resource
