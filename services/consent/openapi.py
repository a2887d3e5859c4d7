"""The OpenAPI 3.1 document of the consent administration API, built from the pydantic
models that validate its input (`admin_api.py`) and build its answers (`answers.py`), so
the document cannot drift from the code.

Served by the gateway at `GET /consent/v1/openapi.json`. Each route of the API
(`shared.access.permissions.CONSENT_API_ROUTES`, which gives its method and path) has one
entry in `ROUTES`: its input model (body or query), its answer model and status (and the
answer's model when asked as of an earlier instant, `as_of`), and the refusals that are
its own. The refusals every route can give (`COMMON`, and `BODY` for a
route that takes a body) are added to each. A route without an entry is left out of the
document, and `tests/test_consent_openapi.py` fails until it has one.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema
from pydantic_core import core_schema

from services.consent.admin_api import (
    AuthorityQuery,
    ChildViewInput,
    CloseDisclosureInput,
    ConsentInput,
    DecisionInput,
    DisclosureInput,
    HearingInput,
    ObjectionInput,
    SignInput,
    WithdrawInput,
)
from services.consent.answers import (
    AccessDecisionAnswer,
    AccessDecisionAsOfAnswer,
    AuthorityAnswer,
    AuthorityAsOfAnswer,
    ConsentList,
    ConsentOutcome,
    DisclosureAnswer,
    DisclosureList,
    ListedDisclosure,
    OperationOutcome,
)
from shared.access.permissions import CONSENT_API_ROUTES, CONSENT_API_SCOPES
from shared.auth.scopes import required_scope
from shared.fhir.resources import ID_PATTERN
from shared.version import software_version

REF = "#/components/schemas/{model}"
JSON = "application/json"
FHIR_JSON = "application/fhir+json"

COMMON = {
    400: "Malformed input: each field, query parameter or path id that fails is named",
    401: "No bearer token, or one that is not valid",
    403: "Refused by the token's scopes, by the permission table (who the caller is), or"
    " because the caller's organisation is not registered",
    503: "A service this needs (the consent service, the directory) is not available or has"
    " not loaded the consent mirror yet: nothing was written, send it again (Retry-After)",
    504: "A service did not answer in time: the outcome is unknown, read it back",
}
"""What every route can answer besides its own answer, always an OperationOutcome."""
BODY = {
    413: "The body is over the size limit (BARNEBRO_MAX_BODY_BYTES)",
    415: "The body is not JSON (Content-Type application/json), or its Content-Encoding is"
    " neither gzip nor deflate",
}
"""What a route that takes a JSON body can answer besides."""
UNKNOWN_CHILD = "No such child, or a child the caller has no relation to (the two answer alike)"
ANSWERER = (
    f"{COMMON[403]}; or the caller may not record this grantor's answer (a person answers"
    " for themselves, an organisation for itself, and the organisation that collected a"
    " consent for the persons who gave it)"
)
UNKNOWN_CONSENT = "No such consent, or one the caller may not see (the two answer alike)"
COLLECTOR = f"{COMMON[403]}; or the caller is not the organisation that collected the consent"
NOT_PROPOSED = "The consent is no longer proposed: record a new one instead"
NOT_REGISTERED_THEN = "Asked as of an instant when the child was not registered in the directory"


@dataclass(frozen=True)
class Route:
    """One route of the API as the document describes it."""

    summary: str
    answer: type[BaseModel]
    status: int = 200
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    path_id: str = ""
    """What the path's `{id}` names, for a route that has one."""
    as_of: type[BaseModel] | None = None
    """The answer instead of `answer` when asked as of an earlier instant (`as_of`)."""
    refusals: dict[int, str] = field(default_factory=dict)
    """The refusals of this route beyond `COMMON` (and `BODY`)."""
    description: str = ""


ROUTES: dict[str, Route] = {
    "consent-authority": Route(
        "Who may consent for this child, for this purpose, on this date?",
        AuthorityAnswer,
        query=AuthorityQuery,
        as_of=AuthorityAsOfAnswer,
        refusals={404: UNKNOWN_CHILD, 422: NOT_REGISTERED_THEN},
        description="With as_of: who could consent then, as the directory stood (the"
        " relation to the child is asked as of now).",
    ),
    "consent-create": Route(
        "Record a consent or a refusal; the status is computed and explained",
        ConsentOutcome,
        status=201,
        body=ConsentInput,
        refusals={
            403: ANSWERER,
            404: UNKNOWN_CHILD,
            422: "A rule refuses it: a grantor without authority (the message says who has)",
        },
    ),
    "consent-sign": Route(
        "Add a grantor's answer (e.g. the second parent's consent or refusal)",
        ConsentOutcome,
        body=SignInput,
        path_id="The Consent id",
        refusals={
            403: ANSWERER,
            404: UNKNOWN_CONSENT,
            409: NOT_PROPOSED,
            422: "A rule refuses it: the grantor has no authority (the message says who has)",
        },
        description="A person's answer is recorded by the organisation that collected the"
        " consent, or by the person logged in as themselves; an organisation's only by it.",
    ),
    "consent-withdraw": Route(
        "Withdraw a consent; decisions change everywhere at once",
        ConsentOutcome,
        body=WithdrawInput,
        path_id="The Consent id",
        refusals={
            403: ANSWERER,
            404: UNKNOWN_CONSENT,
            409: "The consent is neither proposed nor active",
            422: "`by` is not a grantor whose consent was required",
        },
    ),
    "consent-child-view": Route(
        "Record the child's view (medvirkning), without anyone signing again",
        ConsentOutcome,
        body=ChildViewInput,
        path_id="The Consent id",
        refusals={
            403: COLLECTOR,
            404: UNKNOWN_CONSENT,
            409: "The consent is no longer proposed: the child's view is recorded while it is",
            422: "The child is a grantor under the rule: its own answer (a signature, or an"
            " objection) is its view",
        },
        description="The organisation that collected the consent, while it is proposed.",
    ),
    "consent-hearing": Route(
        "Record that the parent who did not sign was heard",
        ConsentOutcome,
        body=HearingInput,
        path_id="The Consent id",
        refusals={
            403: COLLECTOR,
            404: UNKNOWN_CONSENT,
            409: "The consent is no longer proposed: a hearing is recorded while it is",
            422: "`parent` is not a holder of parental responsibility who must be heard under"
            " the rule, or answered the consent",
        },
        description="The organisation that collected the consent, while it is proposed.",
    ),
    "consent-objection": Route(
        "Record the child's objection: its refusal where it is a grantor, otherwise its view",
        ConsentOutcome,
        body=ObjectionInput,
        path_id="The Consent id",
        refusals={
            403: COLLECTOR,
            404: UNKNOWN_CONSENT,
            409: "The consent is no longer proposed: an objection is recorded while it is",
        },
        description="The organisation that collected the consent, while it is proposed. Where"
        " the child is a grantor, its objection is its refusal (recorded once) and the consent"
        " is rejected; otherwise it is the child's view, which the grantors must weigh.",
    ),
    "consent-list": Route(
        "A child's consents the caller may see, with the status each has today",
        ConsentList,
        path_id="The Patient id",
        refusals={404: UNKNOWN_CHILD},
    ),
    "access-decide": Route(
        "Decide and explain: may this actor see this information, and why?",
        AccessDecisionAnswer,
        body=DecisionInput,
        as_of=AccessDecisionAsOfAnswer,
        refusals={
            403: f"{COMMON[403]}; or a question about another actor than the caller without"
            " the scope system/AuditEvent.rs",
            404: UNKNOWN_CHILD,
            422: NOT_REGISTERED_THEN,
        },
        description="About another actor than the caller only with the scope"
        " system/AuditEvent.rs. With as_of: the decision as the directory and the consent"
        " records stood then, and the consent versions it rested on.",
    ),
    "disclosure-hpl33": Route(
        "Record an hpl §33 disclosure to a barnevernstjeneste (never a consent)",
        DisclosureAnswer,
        status=201,
        body=DisclosureInput,
        refusals={
            403: f"{COMMON[403]}; or the caller is not a health organisation, or its token"
            " names no health person (HPR number)",
            422: "A resource that is not information about the child the reporter may read,"
            " a child who is 18 or older or whose age is not known, or a recipient that is"
            " not a registered barnevernstjeneste",
        },
        description="A health person (HPR number in the token) at a health organisation,"
        " about a child under 18. The version of each resource the reporter reads now is"
        " disclosed, and only that version.",
    ),
    "disclosure-list": Route(
        "A child's hpl §33 disclosures the caller reported or received (operator: all),"
        " open and closed",
        DisclosureList,
        path_id="The Patient id",
        refusals={404: UNKNOWN_CHILD},
    ),
    "disclosure-close": Route(
        "Close an hpl §33 disclosure: its recipient sees nothing more through it",
        ListedDisclosure,
        body=CloseDisclosureInput,
        path_id="The disclosure id (its AuditEvent id)",
        refusals={
            403: f"{COMMON[403]}; or the caller is the disclosure's recipient, or its token"
            " names no health person (HPR number)",
            404: "No such disclosure, or one the caller takes no part in (the two answer alike)",
            409: "The disclosure is closed already",
        },
        description="A health person of the reporting organisation, or the operator. The"
        " record stays.",
    ),
}
"""Every route of `CONSENT_API_ROUTES`, by its operation name."""


class _AnswersInFull(GenerateJsonSchema):
    """Schemas of answers list every field as required: an answer always carries them
    all (a field without a value is null or empty, never left out)."""

    def field_is_required(
        self,
        field: core_schema.ModelField | core_schema.DataclassField | core_schema.TypedDictField,
        total: bool,
    ) -> bool:
        if self.mode == "serialization":
            return True
        return super().field_is_required(field, total)


def schemas() -> dict[str, Any]:
    """`components.schemas`: every model of every route, and the OperationOutcome."""
    # The OperationOutcome is built elsewhere (`shared.fhir.errors`), which leaves out an
    # issue's empty `expression`: its fields are required as the model declares them.
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [(OperationOutcome, "validation")]
    for route in ROUTES.values():
        models += [(m, "validation") for m in (route.body, route.query) if m is not None]
        models += [(m, "serialization") for m in (route.answer, route.as_of) if m is not None]
    unique = list(dict.fromkeys(models))
    _, found = models_json_schema(unique, ref_template=REF, schema_generator=_AnswersInFull)
    named: dict[str, Any] = found.get("$defs", {})
    return named


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _query_parameters(model: type[BaseModel], named: dict[str, Any]) -> list[dict[str, Any]]:
    schema = named[model.__name__]
    required = set(schema.get("required", ()))
    parameters = []
    for name, prop in schema["properties"].items():
        prop = {k: v for k, v in prop.items() if k not in ("title", "description", "default")}
        # An optional parameter is left out, never sent empty: its schema is the value's.
        given = [p for p in prop.pop("anyOf", []) if p != {"type": "null"}]
        if len(given) == 1:
            prop.update(given[0])
        elif given:
            prop["anyOf"] = given
        parameter: dict[str, Any] = {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
        }
        description = schema["properties"][name].get("description")
        if description:
            parameter["description"] = description
        parameters.append(parameter)
    return parameters


def _outcome(description: str) -> dict[str, Any]:
    return {"description": description, "content": {FHIR_JSON: {"schema": _ref(OperationOutcome)}}}


def _operation(name: str, route: Route, named: dict[str, Any]) -> dict[str, Any]:
    scope = required_scope(*CONSENT_API_SCOPES[name])
    refusals = {**COMMON, **(BODY if route.body else {}), **route.refusals}
    description = inspect.cleandoc(route.answer.__doc__ or "")
    schema: dict[str, Any] = _ref(route.answer)
    if route.as_of is not None:
        as_of = inspect.cleandoc(route.as_of.__doc__ or "")
        description += f" With as_of: {as_of[0].lower()}{as_of[1:]}"
        schema = {"oneOf": [schema, _ref(route.as_of)]}
    responses: dict[str, Any] = {
        str(route.status): {"description": description, "content": {JSON: {"schema": schema}}}
    }
    responses.update({str(status): _outcome(refusals[status]) for status in sorted(refusals)})
    operation: dict[str, Any] = {
        "operationId": name,
        "summary": route.summary,
        "description": f"{route.description} Needs the scope {scope}.".strip(),
        "security": [{"bearer": []}],
        "responses": responses,
    }
    parameters = []
    if route.path_id:
        parameters.append(
            {
                "name": "id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "pattern": f"^{ID_PATTERN.pattern}$"},
                "description": route.path_id,
            }
        )
    if route.query is not None:
        parameters += _query_parameters(route.query, named)
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": _ref(route.body)}},
        }
    return operation


def openapi_document(server_url: str) -> dict[str, Any]:
    named = schemas()
    paths: dict[str, dict[str, Any]] = {}
    for name, (method, path) in CONSENT_API_ROUTES.items():
        route = ROUTES.get(name)
        if route is not None:
            paths.setdefault(path, {})[method.lower()] = _operation(name, route, named)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "barnebro consent administration API",
            "version": software_version(),
            "description": "Who may consent for a child (pasient- og brukerrettighetsloven"
            " §4-4), consent records and their status, access decisions with explanations,"
            " and hpl §33 disclosures. Bearer token as for the FHIR API. Every error is a"
            " FHIR OperationOutcome.",
        },
        "servers": [{"url": server_url}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
            "schemas": named,
        },
        "paths": paths,
    }
