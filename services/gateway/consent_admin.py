"""The consent administration API's HTTP routes on the gateway (`/consent/v1`).

Each route becomes one operation of the consent service, sent over NATS like a FHIR
interaction (the caller, the path id and the query ride in the request header, the JSON
body as the payload). `GET /consent/v1/openapi.json` serves the API's OpenAPI document
without authentication.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import orjson
from aiohttp import web

from services.consent.openapi import openapi_document
from services.gateway.bodies import read_body
from shared.access.permissions import CONSENT_API_ROUTES
from shared.transport.wire import Caller, FhirRequest, operation_subject

if TYPE_CHECKING:
    from services.gateway.app import Gateway

PREFIX = "/consent/v1"
OPENAPI_PATH = f"{PREFIX}/openapi.json"
JSON_TYPES = frozenset({"application/json", "application/fhir+json"})
ID_KEY = "id"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def add_routes(
    router: web.UrlDispatcher, gateway: Gateway, caller_key: web.RequestKey[Caller]
) -> None:
    def operation(name: str, id_key: str | None = None) -> Handler:
        async def handle(request: web.Request) -> web.StreamResponse:
            body = b""
            if request.method == "POST":
                body = await read_body(request, JSON_TYPES, "application/json")
            sent = FhirRequest(
                interaction="operation",
                operation=name,
                id=request.match_info.get(id_key) if id_key else None,
                params=list(request.query.items()),
                base_url=gateway.base_url(request),
                caller=request[caller_key],
            )
            subject = operation_subject(gateway.settings.nats_prefix, "consent")
            answer = await gateway.forwarder.send(subject, sent, body)
            return web.Response(status=answer.status, headers=answer.headers, body=answer.body)

        return handle

    async def openapi(request: web.Request) -> web.Response:
        server = gateway.base_url(request).removesuffix("/fhir") + PREFIX
        return web.Response(
            body=orjson.dumps(openapi_document(server)), content_type="application/json"
        )

    router.add_get(OPENAPI_PATH, openapi)
    for name, (method, path) in CONSENT_API_ROUTES.items():
        handler = operation(name, ID_KEY if "{id}" in path else None)
        router.add_route(method, f"{PREFIX}{path}", handler)
