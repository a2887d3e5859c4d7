"""The request and reply that travel between the gateway and the services over NATS.

The FHIR resource body is the NATS payload, unchanged, so it is never re-encoded on the
way; everything else (interaction, ids, query, preconditions, the verified caller) rides
in one JSON header. The caller is set by the gateway after authentication; services trust
it because only the gateway may publish on the request subjects (NATS permissions).
"""

from __future__ import annotations

from typing import Literal

import orjson
from pydantic import BaseModel, Field

REQUEST_HEADER = "Barnebro-Request"
STATUS_HEADER = "Barnebro-Status"
HEADERS_HEADER = "Barnebro-Headers"

Interaction = Literal[
    "read",
    "vread",
    "create",
    "update",
    "patch",
    "delete",
    "search",
    "history-instance",
    "history-type",
    "validate",
    "transaction",
    "operation",
    "read-operation",
]


Credential = Literal["organisation", "person", "operator", "register", "service"]
"""What a verified caller is, which decides what it may do (`shared.access.permissions`):
- `organisation`: an integration's token (HelseID, or the local stack's), for the
  organisation it names; its kind comes only from the operator's register;
- `person`: a person logged in as themselves (SMART `fhirUser`), acting for no
  organisation;
- `operator`: the operator who admits organisations to the register and reviews
  emergency accesses (a token signed by the operator's own key, never HelseID's);
- `register`: the population-register source (Folkeregisteret import or sync) that alone
  states parental responsibility (signed by the operator's key too);
- `service`: a barnebro service reading another over NATS; never made from a token."""


class Caller(BaseModel):
    """The authenticated client: organisation, its kind, the person (HPR) and scopes."""

    credential: Credential = "organisation"
    """Set by the gateway from the verified token, or to `service` by a service for its
    own requests; the default grants nothing an organisation is not registered for."""
    orgnr: str | None = None
    org_kind: str | None = None
    """The organisation's kind as the operator's register states it (never a claim)."""
    hpr: str | None = None
    client_id: str | None = None
    scopes: list[str] = Field(default_factory=list)
    fhir_user: str | None = None
    """SMART `fhirUser`: the person acting, e.g. `RelatedPerson/<id>` for a parent."""
    roles: list[str] = Field(default_factory=list)
    """Care roles (project CodeSystem care-role) the person acts in, from the token."""


class Emergency(BaseModel):
    """Emergency access (øyeblikkelig hjelp, "break the glass") to one patient's data,
    with the reason the caller must give; audited and reviewed afterwards."""

    patient: str
    reason: str


class FhirRequest(BaseModel):
    interaction: Interaction
    operation: str | None = None
    """For `operation`: the name of a service operation (e.g. the consent administration
    API's `consent-create`); `params` and the JSON body are its input."""
    resource_type: str | None = None
    id: str | None = None
    version: str | None = None
    params: list[tuple[str, str]] = Field(default_factory=list)
    if_match: str | None = None
    if_none_exist: str | None = None
    prefer_return: str | None = None
    lenient: bool = False
    base_url: str
    caller: Caller = Field(default_factory=Caller)
    purpose_of_use: str | None = None
    """v3-ActReason code the caller states (header Barnebro-Purpose-Of-Use); TREAT if unset."""
    emergency: Emergency | None = None
    patch_format: str | None = None
    """For `patch`: `fhirpath` for a FHIRPath Patch (a Parameters resource); a JSON Patch
    otherwise."""


class FhirResponse(BaseModel):
    status: int
    headers: dict[str, str] = Field(default_factory=dict)
    body: bytes = b""
    outcome: bytes = b""
    """Warnings of a successful write as an OperationOutcome, for the `response.outcome`
    of its entry in a transaction-response (not sent on its own: a single write shows
    them with `Prefer: return=OperationOutcome`)."""


def request_subject(prefix: str, resource_type: str) -> str:
    return f"{prefix}.fhir.{resource_type}"


def bundle_subject(prefix: str, service: str) -> str:
    return f"{prefix}.bundle.{service}"


def operation_subject(prefix: str, service: str) -> str:
    return f"{prefix}.operation.{service}"


def status_subject(prefix: str, service: str) -> str:
    """Where every instance of a service says how it stands (`barnebro status`)."""
    return f"{prefix}.status.{service}"


def ready_subject(prefix: str, service: str) -> str:
    """Where a service answers whether it is ready to serve (`shared.transport.service_host`)."""
    return f"{prefix}.ready.{service}"


def encode_response(response: FhirResponse) -> tuple[bytes, dict[str, str]]:
    return response.body, {
        STATUS_HEADER: str(response.status),
        HEADERS_HEADER: orjson.dumps(response.headers).decode(),
    }


def decode_response(payload: bytes, headers: dict[str, str] | None) -> FhirResponse:
    headers = headers or {}
    extra = orjson.loads(headers.get(HEADERS_HEADER, "{}"))
    return FhirResponse(status=int(headers.get(STATUS_HEADER, "500")), headers=extra, body=payload)
