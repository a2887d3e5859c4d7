"""The gateway itself: the services it routes to and how an interaction reaches one.

`Gateway` knows the registry of services (who owns which resource type, and what each
publishes about itself), checks a caller's SMART scope for an interaction and forwards it
over NATS. The HTTP routes (`app`), Bundles (`bundles`) and the consent administration
API (`consent_admin`) are built on it; it imports none of them.
"""

from __future__ import annotations

import asyncio

import nats.errors
import orjson
from aiohttp import web
from nats.aio.client import Client as NATS

from services.gateway.callers import OrganisationKinds
from services.gateway.provenance import REVINCLUDE, TARGET_TYPES, ProvenanceView
from services.gateway.registry import ServiceRegistry
from shared.auth.dpop_replay import NatsReplayStore
from shared.auth.scopes import authorize_request
from shared.auth.tokens import Verifiers
from shared.config import Settings
from shared.fhir.errors import error
from shared.fhir.resources import is_resource_type
from shared.transport.forwarding import Forwarder
from shared.transport.wire import (
    Caller,
    FhirRequest,
    FhirResponse,
    ready_subject,
    request_subject,
)


class Gateway:
    """Routes FHIR requests to the services that own their resource types."""

    def __init__(self, settings: Settings, nc: NATS, verifier: Verifiers) -> None:
        self.settings = settings
        self.nc = nc
        self.verifier = verifier
        self.registry = ServiceRegistry(nc, settings.registry_bucket, settings.event_replicas)
        self.forwarder = Forwarder(nc, settings.request_timeout)
        self.replays = NatsReplayStore(
            nc,
            settings.dpop_replay_bucket,
            settings.dpop_max_age + settings.dpop_clock_skew,
            settings.event_replicas,
        )
        self.kinds = OrganisationKinds(self.dispatch)
        self.provenance = ProvenanceView(
            self.dispatch, lambda orgnr: self.kinds.kind_of(orgnr, settings.base_url)
        )

    def base_url(self, request: web.Request) -> str:
        """The FHIR base of every link (`self`, `next`, `fullUrl`, `Location`): the
        configured public URL, never the client's `Host` header, which anyone can set."""
        return self.settings.base_url

    async def owner_subject(self, resource_type: str) -> str:
        if resource_type == "metadata":  # a type-level URL that is the CapabilityStatement's
            failure = error(405, "not-supported", "metadata is read with GET")
            failure.headers["Allow"] = "GET, HEAD"
            raise failure
        if not is_resource_type(resource_type):
            named = repr(resource_type) if len(resource_type) <= MAX_QUOTED else "The type"
            raise error(404, "not-supported", f"{named} is not a FHIR resource type")
        if await self.registry.owner(resource_type) is None:
            raise error(404, "not-supported", f"{resource_type} is not supported by this server")
        return request_subject(self.settings.nats_prefix, resource_type)

    async def readiness(self) -> dict[str, str]:
        """Each registered service: `ready`, `starting` (answering, its consent mirror not
        loaded yet) or `not answering` (no instance answered in time). All are asked at
        once, so one that does not answer delays the answer by one timeout, not one each."""
        await self.registry.refresh()
        services = sorted(self.registry.fragments)
        states = await asyncio.gather(*(self._readiness_of(service) for service in services))
        return dict(zip(services, states, strict=True))

    async def _readiness_of(self, service: str) -> str:
        subject = ready_subject(self.settings.nats_prefix, service)
        try:
            reply = await self.nc.request(subject, b"", timeout=READY_TIMEOUT)
            answer = orjson.loads(reply.data)
        except (nats.errors.Error, TimeoutError, orjson.JSONDecodeError):
            return "not answering"
        return "ready" if answer.get("ready") is True else "starting"

    async def dispatch(self, request: FhirRequest, body: bytes) -> FhirResponse:
        """Check the caller's scope and send one interaction to its service (Provenance is
        derived here, from the statements the caller may read)."""
        resource_type = request.resource_type or ""
        if resource_type == "Provenance":
            authorize_request(request)
            return await self.provenance.answer(request)
        subject = await self.owner_subject(resource_type)
        authorize_request(request)
        if (
            request.interaction == "search"
            and resource_type in TARGET_TYPES
            and ("_revinclude", REVINCLUDE) in request.params
        ):
            return await self.provenance.revinclude(request, body)
        return await self.forwarder.send(subject, request, body)


MAX_QUOTED = 64
"""The longest name from a URL an answer quotes back (a resource type is at most 32)."""
READY_TIMEOUT = 2.0
"""Seconds a service has to say whether it is ready."""
CALLER_KEY = web.RequestKey("caller", Caller)
"""The authenticated caller of a request (set by the authentication middleware)."""
GATEWAY_KEY: web.AppKey[Gateway] = web.AppKey("gateway")
