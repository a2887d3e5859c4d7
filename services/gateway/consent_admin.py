"""The consent administration API's HTTP routes (`/consent/v1`), a sub-application.

Each route becomes one operation of the consent service, sent over NATS like a FHIR
interaction (the caller, the path id and the query ride in the request header, the JSON
body as the payload). `GET /consent/v1/openapi.json` serves, without authentication, the
OpenAPI document the consent service publishes with its entry in the service registry:
the gateway knows the API's routes (`shared.access.permissions.CONSENT_API_ROUTES`) and
nothing of the consent service's code.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from aiohttp import web

from services.gateway.bodies import BODY_LIMIT, read_body
from services.gateway.gateway import CALLER_KEY, GATEWAY_KEY, Gateway
from shared.access.permissions import CONSENT_API_ROUTES
from shared.fhir.errors import error
from shared.transport.wire import FhirRequest, operation_subject

PREFIX = "/consent/v1"
OPENAPI_PATH = f"{PREFIX}/openapi.json"
CONSENT_SERVICE = "consent"
JSON_TYPES = frozenset({"application/json", "application/fhir+json"})
ID_KEY = "id"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _operation(gateway: Gateway, name: str, id_key: str | None) -> Handler:
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
            caller=request[CALLER_KEY],
        )
        subject = operation_subject(gateway.settings.nats_prefix, CONSENT_SERVICE)
        answer = await gateway.forwarder.send(subject, sent, body)
        return web.Response(status=answer.status, headers=answer.headers, body=answer.body)

    return handle


def _openapi(gateway: Gateway) -> Handler:
    async def openapi(request: web.Request) -> web.StreamResponse:
        await gateway.registry.refresh()
        document = gateway.registry.fragments.get(CONSENT_SERVICE, {}).get("openapi")
        if not isinstance(document, dict):
            raise error(503, "transient", "The consent service has not published its API yet")
        server = gateway.base_url(request).removesuffix("/fhir") + PREFIX
        served = {**document, "servers": [{"url": server}]}
        return web.Response(body=orjson.dumps(served), content_type="application/json")

    return openapi


def create_app(gateway: Gateway) -> web.Application:
    """The API's routes, mounted by the gateway's application under `PREFIX` (its
    middlewares, authentication included, run first)."""
    app = web.Application(client_max_size=gateway.settings.max_body_bytes)
    app[GATEWAY_KEY] = gateway
    app[BODY_LIMIT] = gateway.settings.max_body_bytes
    app.router.add_get(OPENAPI_PATH.removeprefix(PREFIX), _openapi(gateway))
    for name, (method, path) in CONSENT_API_ROUTES.items():
        handler = _operation(gateway, name, ID_KEY if "{id}" in path else None)
        app.router.add_route(method, path, handler)
    return app
