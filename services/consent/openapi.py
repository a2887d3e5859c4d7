"""The OpenAPI 3.1 document of the consent administration API, built from the same
pydantic models that validate its input, so the document cannot drift from the code.

Served by the gateway at `GET /consent/v1/openapi.json`.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from pydantic import BaseModel

from services.consent.admin_api import (
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
from services.consent.domain.model import Purpose

REF = "#/components/schemas/{model}"
ERROR = {
    "description": "An OperationOutcome: 400 malformed input, 401/403 token or scope,"
    " 404 unknown consent or patient, 409 wrong state, 422 a rule refuses it (the message"
    " says who has the authority), 503/504 a service is unavailable",
    "content": {
        "application/fhir+json": {"schema": {"$ref": REF.format(model="OperationOutcome")}}
    },
}
OBJECT = {"type": "object", "additionalProperties": True}


def _schemas(models: list[type[BaseModel]]) -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template=REF)
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    schemas["OperationOutcome"] = {
        "type": "object",
        "description": "FHIR OperationOutcome: issue[].severity, code, diagnostics",
        "properties": {"resourceType": {"const": "OperationOutcome"}, "issue": {"type": "array"}},
    }
    schemas["ConsentOutcome"] = {
        "type": "object",
        "description": "The stored consent, its status with the reasons and what is missing,"
        " the authority it was judged by, and the FHIR Consent",
        "properties": {
            "id": {"type": "string"},
            "status": {"enum": ["proposed", "active", "rejected", "inactive"]},
            "reasons": {"type": "array", "items": {"type": "string"}},
            "missing": {"type": "array", "items": {"type": "string"}},
            "consent": OBJECT,
            "authority": {"$ref": REF.format(model="Authority")},
            "fhir": OBJECT,
        },
    }
    schemas["Authority"] = {
        "type": "object",
        "description": "Who may consent for the child for this purpose on this date",
        "properties": {
            "patient": {"type": "string"},
            "decidable": {"type": "boolean"},
            "rule": {"type": "string"},
            "legal_reference": {"type": "string"},
            "explanation": {"type": "string"},
            "age": {"type": ["integer", "null"]},
            "grantors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "role": {"type": "string"},
                        "members": {"type": "array", "items": {"type": "string"}},
                        "need": {"enum": ["all", "one"]},
                    },
                },
            },
            "missing": {"type": "array", "items": {"type": "string"}},
            "child_view": {"enum": ["mandatory", "required", "recommended", "not-applicable"]},
            "obligations": {"type": "array", "items": {"type": "string"}},
            "valid_until": {"type": ["string", "null"], "format": "date"},
            "as_of": {
                "type": "string",
                "format": "date-time",
                "description": "Present when asked as of an earlier instant",
            },
        },
    }
    schemas["Decision"] = {
        "type": "object",
        "properties": {
            "permit": {"type": "boolean"},
            "decision": {"enum": ["permit", "deny"]},
            "basis": {"type": "string"},
            "reasons": {"type": "array", "items": {"type": "string"}},
            "consents": {"type": "array", "items": {"type": "string"}},
            "obligations": {"type": "array", "items": {"type": "string"}},
            "legal_reference": {"type": "string"},
            "as_of": {
                "type": "string",
                "format": "date-time",
                "description": "Present when asked as of an earlier instant",
            },
            "consent_versions": {
                "type": "array",
                "items": {"type": "string"},
                "description": "With as_of: the versions (Consent/<id>/_history/<n>) of the"
                " consents the decision rested on",
            },
        },
    }
    return schemas


def _json_body(model: str) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": REF.format(model=model)}}},
    }


def _answer(description: str, model: str | None = None) -> dict[str, Any]:
    schema = {"$ref": REF.format(model=model)} if model else OBJECT
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _id(name: str, what: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": what,
    }


def _operation(summary: str, scope: str, responses: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {
        "summary": summary,
        "description": f"{more.pop('description', '')} Needs the scope {scope}.".strip(),
        "security": [{"bearer": []}],
        "responses": {**responses, "default": ERROR},
        **more,
    }


def openapi_document(server_url: str) -> dict[str, Any]:
    flags = [
        {"name": name, "in": "query", "schema": {"type": "boolean", "default": False}}
        for name in (
            "daily_care",
            "necessary_to_avoid_harm",
            "confidential_from_parents",
            "to_barnevern",
        )
    ]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "barnebro consent administration API",
            "version": version("barnebro"),
            "description": "Who may consent for a child (pasient- og brukerrettighetsloven"
            " §4-4), consent records and their status, access decisions with explanations,"
            " and hpl §33 disclosures. Bearer token as for the FHIR API.",
        },
        "servers": [{"url": server_url}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
            "schemas": _schemas(
                [
                    ConsentInput,
                    SignInput,
                    ChildViewInput,
                    HearingInput,
                    ObjectionInput,
                    WithdrawInput,
                    DecisionInput,
                    DisclosureInput,
                    CloseDisclosureInput,
                ]
            ),
        },
        "paths": {
            "/authority": {
                "get": _operation(
                    "Who may consent for this child, for this purpose, on this date?",
                    "system/Consent.rs",
                    {
                        "200": _answer(
                            "The grantors required, the rule and what is missing", "Authority"
                        )
                    },
                    parameters=[
                        {
                            "name": "patient",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "string"},
                            "description": "Patient/<id>",
                        },
                        {
                            "name": "purpose",
                            "in": "query",
                            "required": True,
                            "schema": {"enum": [p.value for p in Purpose]},
                        },
                        {
                            "name": "date",
                            "in": "query",
                            "schema": {"type": "string", "format": "date"},
                            "description": "Default: today (with as_of: that day)",
                        },
                        {
                            "name": "as_of",
                            "in": "query",
                            "schema": {"type": "string", "format": "date-time"},
                            "description": "Answer as the directory stood at this past"
                            " instant (with a time zone; a + is written %2B): to answer a"
                            " complaint",
                        },
                        *flags,
                    ],
                )
            },
            "/consents": {
                "post": _operation(
                    "Record a consent or a refusal; the status is computed and explained",
                    "system/Consent.c",
                    {"201": _answer("The stored consent", "ConsentOutcome")},
                    requestBody=_json_body("ConsentInput"),
                )
            },
            "/consents/{id}/signatures": {
                "post": _operation(
                    "Add a grantor's answer (e.g. the second parent's consent or refusal)",
                    "system/Consent.u",
                    {"200": _answer("The consent with its new status", "ConsentOutcome")},
                    parameters=[_id("id", "The Consent id")],
                    requestBody=_json_body("SignInput"),
                )
            },
            "/consents/{id}/child-view": {
                "post": _operation(
                    "Record the child's view (medvirkning), without anyone signing again",
                    "system/Consent.u",
                    {"200": _answer("The consent with its new status", "ConsentOutcome")},
                    parameters=[_id("id", "The Consent id")],
                    requestBody=_json_body("ChildViewInput"),
                )
            },
            "/consents/{id}/hearings": {
                "post": _operation(
                    "Record that the parent who did not sign was heard",
                    "system/Consent.u",
                    {"200": _answer("The consent with its new status", "ConsentOutcome")},
                    parameters=[_id("id", "The Consent id")],
                    requestBody=_json_body("HearingInput"),
                )
            },
            "/consents/{id}/objections": {
                "post": _operation(
                    "Record the child's objection: its refusal where it is a grantor,"
                    " otherwise its view",
                    "system/Consent.u",
                    {"200": _answer("The consent with its new status", "ConsentOutcome")},
                    parameters=[_id("id", "The Consent id")],
                    requestBody=_json_body("ObjectionInput"),
                )
            },
            "/consents/{id}/withdrawal": {
                "post": _operation(
                    "Withdraw a consent; decisions change everywhere at once",
                    "system/Consent.u",
                    {"200": _answer("The withdrawn consent", "ConsentOutcome")},
                    parameters=[_id("id", "The Consent id")],
                    requestBody=_json_body("WithdrawInput"),
                )
            },
            "/patients/{id}/consents": {
                "get": _operation(
                    "A child's consents the caller may see, with the status each has today",
                    "system/Consent.rs",
                    {"200": _answer("patient and consents[] (with effective_status)")},
                    parameters=[_id("id", "The Patient id")],
                )
            },
            "/decisions": {
                "post": _operation(
                    "Decide and explain: may this actor see this information, and why?",
                    "system/Consent.rs",
                    {
                        "200": _answer(
                            "Permit or deny with basis, reasons and obligations", "Decision"
                        )
                    },
                    requestBody=_json_body("DecisionInput"),
                )
            },
            "/disclosures": {
                "post": _operation(
                    "Record an hpl §33 disclosure to a barnevernstjeneste (never a consent)",
                    "system/Consent.c",
                    {"201": _answer("The disclosure and the AuditEvent recording it")},
                    description="A health person (HPR number in the token) at a health"
                    " organisation, about a child under 18. The version of each resource the"
                    " reporter reads now is disclosed, and only that version.",
                    requestBody=_json_body("DisclosureInput"),
                )
            },
            "/patients/{id}/disclosures": {
                "get": _operation(
                    "A child's hpl §33 disclosures the caller reported or received (operator:"
                    " all), open and closed",
                    "system/Consent.rs",
                    {"200": _answer("patient and disclosures[] (versions released, status)")},
                    parameters=[_id("id", "The Patient id")],
                )
            },
            "/disclosures/{id}/closure": {
                "post": _operation(
                    "Close an hpl §33 disclosure: its recipient sees nothing more through it",
                    "system/Consent.u",
                    {"200": _answer("The closed disclosure")},
                    description="The reporting organisation or the operator.",
                    parameters=[_id("id", "The disclosure id (its AuditEvent id)")],
                    requestBody=_json_body("CloseDisclosureInput"),
                )
            },
        },
    }
