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
from shared.fhir.parameters import OperationParameter, malformed, parameter_values
from shared.fhir.profiles import refuse_other_profile
from shared.fhir.resources import parse_json, validate_resource
from shared.fhir.service import FhirService
from shared.transport.wire import FhirRequest, FhirResponse


async def validate(
    service: FhirService, definition: ResourceDefinition, request: FhirRequest, body: bytes
) -> FhirResponse:
    data = parse_json(body)
    if data.get("resourceType") == "Parameters":
        data = _resource_from_parameters(data, definition.resource_type)
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


VALIDATE_PARAMETERS = (
    OperationParameter("mode", "code", "create: checked as its create would be (the only mode)"),
    OperationParameter("profile", "uri", "The type's own profile (the only one checked)"),
)
"""What `$validate`'s Parameters may carry besides its one `resource`."""


def _resource_from_parameters(parameters: dict[str, Any], resource_type: str) -> dict[str, Any]:
    """The resource a Parameters body gives to validate: its one `resource` parameter, in
    a body that is otherwise as strict as an operation's (`parameter_values`): valid
    R4, every parameter a name carrying one thing (inv-1), only `mode` (create) and
    `profile` (the type's own) besides. Anything else is refused, not ignored."""
    given = parameters.get("parameter")
    breaches = malformed(given)
    if breaches:
        raise error(
            400,
            "invalid",
            "Each parameter is a name carrying exactly one of a value[x], a resource or parts",
            *breaches,
        )
    assert isinstance(given, list)
    named = [p for p in given if p["name"] == "resource"]
    if len(named) != 1 or not isinstance(named[0].get("resource"), dict):
        raise error(400, "invalid", "Parameters for $validate need one 'resource' parameter")
    rest = {**parameters, "parameter": [p for p in given if p is not named[0]]}
    values = parameter_values(rest, "$validate", declared=VALIDATE_PARAMETERS)
    if values.get("mode", "create") != "create":
        raise error(400, "not-supported", "$validate checks a resource as its create would")
    if "profile" in values:
        refuse_other_profile(resource_type, str(values["profile"]))
    resource: dict[str, Any] = named[0]["resource"]
    return resource
