"""The HTTP side of the gateway: FHIR REST URLs, authentication, errors as
OperationOutcomes, and forwarding to services.

Request path: error middleware (every failure becomes an OperationOutcome with the right
status) → tracing span → authentication (bearer or DPoP-bound JWT, `authentication`; then SMART
scope per interaction)
→ routing to the owning service over NATS. No FHIR resource is parsed here except Bundles.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web
from opentelemetry import trace

from services.gateway import consent_admin, negotiation
from services.gateway.authentication import authenticate
from services.gateway.bad_requests import as_the_gateway
from services.gateway.bodies import BODY_LIMIT, FORM, JSON_TYPES, read_body
from services.gateway.bundles import run_batch, run_transaction
from services.gateway.gateway import CALLER_KEY, GATEWAY_KEY, Gateway
from services.gateway.header_values import decoded
from services.gateway.provenance import CAPABILITY as PROVENANCE_CAPABILITY
from shared.codes import EMERGENCY_PURPOSE_OF_USE, PURPOSES_OF_USE
from shared.fhir.capability import capability_statement
from shared.fhir.errors import FhirError, error, operation_outcome_bytes
from shared.fhir.patch import FHIRPATH_PATCH, JSON_PATCH
from shared.fhir.resources import FHIR_JSON, ID_PATTERN, parse_json
from shared.fhir.search_query import query_criteria, refuse_parameters
from shared.metrics import http_request_duration
from shared.telemetry import span
from shared.transport.service_host import internal_error_issue
from shared.transport.wire import (
    Emergency,
    FhirRequest,
    FhirResponse,
    Interaction,
)
from shared.version import software_version

log = logging.getLogger(__name__)
tracer = trace.get_tracer("barnebro.gateway")

OPEN_PATHS = frozenset({"/fhir/metadata", "/healthz", "/readyz", consent_admin.OPENAPI_PATH})
EMERGENCY_PATIENT_HEADER = "Barnebro-Emergency-Patient"
EMERGENCY_REASON_HEADER = "Barnebro-Emergency-Reason"
MAX_EMERGENCY_REASON = 1000
PURPOSE_OF_USE_HEADER = "Barnebro-Purpose-Of-Use"
PATCH_TYPES = JSON_TYPES | {JSON_PATCH}
"""A PATCH body: a JSON Patch, or a FHIRPath Patch (a Parameters resource) as FHIR JSON."""


def fhir_response(response: FhirResponse) -> web.Response:
    return web.Response(status=response.status, headers=response.headers, body=response.body)


def outcome_response(exc: FhirError) -> web.Response:
    return web.Response(
        status=exc.status,
        headers={"Content-Type": FHIR_JSON, **exc.headers},
        body=operation_outcome_bytes(exc.issues),
    )


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    began = time.perf_counter()
    with span(
        tracer,
        f"{request.method} {request.path}",
        kind=trace.SpanKind.SERVER,
        parent=request.headers,
        attributes={"http.request.method": request.method, "url.path": request.path},
    ) as current:
        try:
            response = await handler(request)
        except FhirError as exc:
            response = outcome_response(exc)
        except web.HTTPRequestEntityTooLarge as exc:
            response = outcome_response(
                error(413, "too-costly", f"The request body is too large: {exc.text}")
            )
        except web.HTTPException as exc:
            code = "not-found" if exc.status == 404 else "not-supported"
            response = outcome_response(error(exc.status, code, exc.reason or "HTTP error"))
        except Exception:
            log.exception("internal error on %s %s", request.method, request.path)
            response = outcome_response(FhirError(500, [internal_error_issue(current)]))
        current.set_attribute("http.response.status_code", response.status)
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        http_request_duration.record(
            time.perf_counter() - began,
            {"http.request.method": request.method, "http.route": route,
             "http.response.status_code": response.status},
        )  # fmt: skip
        return response


@web.middleware
async def auth_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if request.path in OPEN_PATHS and request.method in ("GET", "HEAD"):
        return await handler(request)
    gateway = request.app[GATEWAY_KEY]
    verified = await authenticate(gateway, request, header_values(request, "Authorization"))
    request[CALLER_KEY] = await gateway.kinds.complete(verified.caller, gateway.base_url(request))
    return await handler(request)


def header(request: web.Request, name: str) -> str | None:
    """A request header's (first) value, which must be UTF-8 (a header carrying other bytes
    is the client's error, never a crash further on)."""
    values = header_values(request, name)
    return values[0] if values else None


def single_header(request: web.Request, name: str) -> str | None:
    """A header that decides access or what the audit trail records: sent once (400 when
    repeated, as a proxy joining the values would read them otherwise than the server)."""
    values = header_values(request, name)
    if len(values) > 1:
        raise error(400, "invalid", f"The {name} header is sent once")
    return values[0] if values else None


def header_values(request: web.Request, name: str) -> list[str]:
    """Every value of a request header, each of which must be UTF-8."""
    values = request.headers.getall(name, [])
    for value in values:
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise error(400, "invalid", f"The {name} header is not UTF-8 text") from exc
    return values


def prefer(request: web.Request) -> tuple[str | None, bool]:
    """The `return=` preference and whether `handling=lenient` was asked for."""
    returned, lenient = None, False
    for part in (header(request, "Prefer") or "").split(","):
        key, _, value = part.strip().partition("=")
        if key == "return" and value in ("minimal", "representation", "OperationOutcome"):
            returned = value
        elif key == "handling":
            lenient = value == "lenient"
    return returned, lenient


def negotiate(request: web.Request) -> None:
    """The answer's format, decided once for every path (`negotiation.negotiate`)."""
    negotiation.negotiate(request.query.getall("_format", []), header(request, "Accept"))


def emergency(request: web.Request) -> Emergency | None:
    """Emergency access ("break the glass") asked for by the two headers: the patient, and
    the reason, which is mandatory (beyond ASCII as an RFC 8187 ext-value,
    `UTF-8''%C3%A6rlig%20grunn`)."""
    patient = single_header(request, EMERGENCY_PATIENT_HEADER)
    reason = single_header(request, EMERGENCY_REASON_HEADER) or ""
    reason = decoded(EMERGENCY_REASON_HEADER, reason)
    reason = reason.strip()
    if patient is None and not reason:
        return None
    patient = (patient or "").removeprefix("Patient/")
    if not ID_PATTERN.fullmatch(patient):
        raise error(
            400, "invalid", f"{EMERGENCY_PATIENT_HEADER} must name the patient (Patient/<id>)"
        )
    if len(reason) < 3:
        raise error(
            400,
            "required",
            f"Emergency access needs a reason: set {EMERGENCY_REASON_HEADER}",
        )
    if len(reason) > MAX_EMERGENCY_REASON:
        raise error(
            400,
            "too-long",
            f"{EMERGENCY_REASON_HEADER} is at most {MAX_EMERGENCY_REASON} characters; the"
            " reason is stored whole for the review",
        )
    return Emergency(patient=patient, reason=reason)


def purpose_of_use(request: web.Request) -> str | None:
    """The purpose the request states (`PURPOSES_OF_USE`), recorded with every access it
    makes. Emergency treatment is stated only with emergency access, so that no record
    reads as one without its reason."""
    value = single_header(request, PURPOSE_OF_USE_HEADER)
    if value is None:
        return None
    value = value.strip()
    if value == EMERGENCY_PURPOSE_OF_USE and header(request, EMERGENCY_PATIENT_HEADER) is None:
        raise error(
            400,
            "invalid",
            f"Emergency access is asked for with {EMERGENCY_PATIENT_HEADER} and"
            f" {EMERGENCY_REASON_HEADER}, not with {PURPOSE_OF_USE_HEADER}",
        )
    if value not in PURPOSES_OF_USE:
        raise error(
            400,
            "invalid",
            f"{PURPOSE_OF_USE_HEADER} takes a code of HL7's GeneralPurposeOfUse value set:"
            f" {', '.join(sorted(PURPOSES_OF_USE - {EMERGENCY_PURPOSE_OF_USE}))}",
        )
    return value


def build_request(
    request: web.Request,
    interaction: Interaction,
    *,
    resource_type: str,
    res_id: str | None = None,
    version_id: str | None = None,
    params: list[tuple[str, str]] | None = None,
) -> FhirRequest:
    negotiate(request)
    returned, lenient = prefer(request)
    return FhirRequest(
        interaction=interaction,
        resource_type=resource_type,
        id=res_id,
        version=version_id,
        params=params if params is not None else list(request.query.items()),
        if_match=header(request, "If-Match"),
        if_none_exist=header(request, "If-None-Exist"),
        prefer_return=returned,
        lenient=lenient,
        base_url=request.app[GATEWAY_KEY].base_url(request),
        caller=request[CALLER_KEY],
        purpose_of_use=purpose_of_use(request),
        emergency=emergency(request),
    )


async def _forward(
    request: web.Request,
    interaction: Interaction,
    body: bytes = b"",
    **kwargs: Any,
) -> web.Response:
    fhir_request = build_request(request, interaction, **kwargs)
    return fhir_response(await request.app[GATEWAY_KEY].dispatch(fhir_request, body))


async def metadata(request: web.Request) -> web.Response:
    negotiate(request)
    gateway = request.app[GATEWAY_KEY]
    await gateway.registry.refresh()
    statement = capability_statement(
        [*gateway.registry.fragments.values(), {"resources": [PROVENANCE_CAPABILITY]}],
        software_version=software_version(),
        base_url=gateway.base_url(request),
    )
    return web.Response(body=orjson.dumps(statement), headers={"Content-Type": FHIR_JSON})


async def health(request: web.Request) -> web.Response:
    """200 while connected to NATS; lists the services whose types are routable."""
    gateway = request.app[GATEWAY_KEY]
    connected = gateway.nc.is_connected
    if connected:
        await gateway.registry.refresh()
    services = sorted(gateway.registry.fragments)
    return web.json_response(
        {"nats": connected, "services": services}, status=200 if connected else 503
    )


async def ready(request: web.Request) -> web.Response:
    """200 once NATS is connected and every registered service answers that it can serve
    (its consent mirror loaded); 503 with each service's state until then."""
    gateway = request.app[GATEWAY_KEY]
    if not gateway.nc.is_connected:
        return web.json_response({"ready": False, "nats": False, "services": {}}, status=503)
    services = await gateway.readiness()
    ready_now = bool(services) and all(state == "ready" for state in services.values())
    return web.json_response(
        {"ready": ready_now, "nats": True, "services": services},
        status=200 if ready_now else 503,
    )


async def type_level(request: web.Request) -> web.Response:
    resource_type = request.match_info["type"]
    if request.method in ("GET", "HEAD"):
        return await _forward(request, "search", resource_type=resource_type)
    if request.method == "PUT":  # a conditional update: the query says which resource
        if not request.query:
            raise error(
                400,
                "invalid",
                f"PUT takes {resource_type}/<id>, or search criteria for a conditional update"
                f" ({resource_type}?identifier=system|value)",
            )
        # The raw query, parsed as If-None-Exist is: a broken escape is refused, not matched.
        criteria = query_criteria(request.rel_url.raw_query_string, "The conditional update's URL")
        body = await read_body(request)
        return await _forward(request, "update", body, resource_type=resource_type, params=criteria)
    return await _forward(request, "create", await read_body(request), resource_type=resource_type)


async def search_post(request: web.Request) -> web.Response:
    resource_type = request.match_info["type"]
    body = await read_body(request, frozenset({FORM}), f"{FORM} parameters")
    try:
        form = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError) as exc:
        raise error(400, "invalid", "POST _search takes form-encoded parameters") from exc
    params = [*request.query.items(), *form]
    return await _forward(request, "search", resource_type=resource_type, params=params)


async def type_history(request: web.Request) -> web.Response:
    return await _forward(request, "history-type", resource_type=request.match_info["type"])


async def validate(request: web.Request) -> web.Response:
    body = await read_body(request)
    return await _forward(request, "validate", body, resource_type=request.match_info["type"])


async def instance(request: web.Request) -> web.Response:
    resource_type, res_id = request.match_info["type"], request.match_info["id"]
    if request.method in ("GET", "HEAD"):
        return await _forward(request, "read", resource_type=resource_type, res_id=res_id)
    if request.method == "DELETE":
        return await _forward(request, "delete", resource_type=resource_type, res_id=res_id)
    if request.method == "PATCH":
        body = await read_body(request, PATCH_TYPES, f"{JSON_PATCH} or {FHIR_JSON}")
        fhir_request = build_request(request, "patch", resource_type=resource_type, res_id=res_id)
        if request.content_type in JSON_TYPES:
            fhir_request.patch_format = FHIRPATH_PATCH
        return fhir_response(await request.app[GATEWAY_KEY].dispatch(fhir_request, body))
    body = await read_body(request)
    return await _forward(request, "update", body, resource_type=resource_type, res_id=res_id)


async def instance_operation(request: web.Request) -> web.Response:
    """`POST /fhir/{type}/{id}/$name`: an operation on one resource, sent to the service
    that owns the type. `GET` (and `HEAD`) ask an operation that only reads (e.g. a
    Subscription's `$status`); the service refuses it for an operation that writes. The
    scope follows the operation, not the method (`shared.access.permissions`)."""
    fhir_request = build_request(
        request,
        "read-operation" if request.method in ("GET", "HEAD") else "operation",
        resource_type=request.match_info["type"],
        res_id=request.match_info["id"],
    )
    fhir_request.operation = request.match_info["operation"]
    body = await read_body(request)
    return fhir_response(await request.app[GATEWAY_KEY].dispatch(fhir_request, body))


async def instance_history(request: web.Request) -> web.Response:
    return await _forward(
        request,
        "history-instance",
        resource_type=request.match_info["type"],
        res_id=request.match_info["id"],
    )


async def vread(request: web.Request) -> web.Response:
    return await _forward(
        request,
        "vread",
        resource_type=request.match_info["type"],
        res_id=request.match_info["id"],
        version_id=request.match_info["vid"],
    )


async def system_level(request: web.Request) -> web.Response:
    gateway = request.app[GATEWAY_KEY]
    bundle = parse_json(await read_body(request))
    base = build_request(request, "transaction", resource_type="Bundle")
    refuse_parameters(base.params, "A batch or transaction")
    if bundle.get("resourceType") != "Bundle":
        raise error(400, "invalid", "POST to the base URL takes a batch or transaction Bundle")
    entries = bundle.get("entry")
    limit = gateway.settings.max_bundle_entries
    if isinstance(entries, list) and len(entries) > limit:
        raise error(
            413,
            "too-costly",
            f"A Bundle takes at most {limit} entries (BARNEBRO_MAX_BUNDLE_ENTRIES); this one"
            f" has {len(entries)}: split it",
        )
    if bundle.get("type") == "batch":
        result = await run_batch(gateway, base, bundle)
    elif bundle.get("type") == "transaction":
        result = await run_transaction(gateway, base, bundle)
    else:
        raise error(400, "invalid", "Bundle.type must be batch or transaction", "Bundle.type")
    return fhir_response(result)


def create_app(gateway: Gateway) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware, auth_middleware],
        client_max_size=gateway.settings.max_body_bytes,
    )
    app.on_response_prepare.append(as_the_gateway)
    app[GATEWAY_KEY] = gateway
    app[BODY_LIMIT] = gateway.settings.max_body_bytes
    routes = app.router
    routes.add_get("/healthz", health)
    routes.add_get("/readyz", ready)
    routes.add_get("/fhir/metadata", metadata)
    routes.add_post("/fhir", system_level)
    routes.add_post("/fhir/", system_level)
    routes.add_get("/fhir/{type}", type_level)
    routes.add_post("/fhir/{type}", type_level)
    routes.add_put("/fhir/{type}", type_level)
    routes.add_post("/fhir/{type}/_search", search_post)
    routes.add_get("/fhir/{type}/_history", type_history)
    routes.add_post("/fhir/{type}/$validate", validate)
    routes.add_get("/fhir/{type}/{id}", instance)
    routes.add_put("/fhir/{type}/{id}", instance)
    routes.add_patch("/fhir/{type}/{id}", instance)
    routes.add_delete("/fhir/{type}/{id}", instance)
    routes.add_post("/fhir/{type}/{id}/{operation:\\$[A-Za-z][A-Za-z-]*}", instance_operation)
    routes.add_get("/fhir/{type}/{id}/{operation:\\$[A-Za-z][A-Za-z-]*}", instance_operation)
    routes.add_get("/fhir/{type}/{id}/_history", instance_history)
    routes.add_get("/fhir/{type}/{id}/_history/{vid}", vread)
    app.add_subapp(consent_admin.PREFIX, consent_admin.create_app(gateway))
    return app
