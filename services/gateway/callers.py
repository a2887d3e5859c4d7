"""Completing an organisation caller with its kind, from the operator's register.

Tokens name the organisation (organisasjonsnummer) but never decide what it is: the kind
(fastlege, bup, barnevernstjeneste, …), on which every access rule depends, is what the
operator registered as `Organization.type` in the directory. Only the operator writes
Organizations, so no integration can make itself another kind. A kind is cached for a
minute (an unknown organisation for a second) and every cached answer is dropped as soon
as the directory reports a change to an Organization (its events), so a change to the
register takes effect within about a second. An organisation the register does not hold
has no kind, which the permission table refuses (an unregistered organisation may do
nothing); but if the directory cannot answer (an error, a timeout), the request is
answered 503 and nothing is cached: a failing register must not read as "not registered".
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from nats.aio.client import Client as NATS

from shared.codes import organisation_kinds
from shared.fhir.errors import FhirError, Issue
from shared.identifiers import ORGNR_SYSTEM
from shared.transport.wire import Caller, FhirRequest, FhirResponse

log = logging.getLogger(__name__)

Dispatch = Callable[[FhirRequest, bytes], Awaitable[FhirResponse]]
GATEWAY_CALLER = Caller(
    credential="service", client_id="barnebro-gateway", scopes=["system/Organization.rs"]
)


class OrganisationKinds:
    def __init__(self, dispatch: Dispatch, ttl: float = 60.0, miss_ttl: float = 1.0) -> None:
        self._dispatch = dispatch
        self._ttl = ttl
        self._miss_ttl = miss_ttl
        self._cache: dict[str, tuple[float, str | None, str | None]] = {}
        """orgnr → (expiry, kind, Organization id)."""
        self._subscription: Any = None

    async def follow(self, nc: NATS, prefix: str) -> None:
        """When an Organization changes in the register, forget what was cached of it (and
        every organisation found unregistered: the change may be its registration)."""

        async def changed(message: Any) -> None:
            try:
                changed_id = orjson.loads(message.data).get("resource_id")
            except (orjson.JSONDecodeError, AttributeError):
                changed_id = None
            for orgnr, (_, kind, res_id) in list(self._cache.items()):
                if kind is None or res_id == changed_id or changed_id is None:
                    self._cache.pop(orgnr, None)

        self._subscription = await nc.subscribe(
            f"{prefix}.events.directory.Organization.>", cb=changed
        )

    async def stop(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()

    async def complete(self, caller: Caller, base_url: str) -> Caller:
        """The caller with its organisation's registered kind (organisation credentials
        only: a person acts as themselves, an operator credential for no organisation)."""
        if caller.credential != "organisation" or not caller.orgnr:
            return caller
        kind = await self.kind_of(caller.orgnr, base_url)
        return caller.model_copy(update={"org_kind": kind})

    async def kind_of(self, orgnr: str, base_url: str) -> str | None:
        cached = self._cache.get(orgnr)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        request = FhirRequest(
            interaction="search",
            resource_type="Organization",
            params=[("identifier", f"{ORGNR_SYSTEM}|{orgnr}")],
            base_url=base_url,
            caller=GATEWAY_CALLER,
        )
        try:
            response = await self._dispatch(request, b"")
        except FhirError as exc:
            raise _unavailable(orgnr, str(exc)) from exc
        if response.status != 200:
            raise _unavailable(orgnr, f"HTTP {response.status}")
        kind, res_id = _kind_in(response, orgnr)
        lifetime = self._ttl if kind else self._miss_ttl
        self._cache[orgnr] = (time.monotonic() + lifetime, kind, res_id)
        return kind


def _unavailable(orgnr: str, cause: str) -> FhirError:
    log.warning("could not look up the kind of organisation %s: %s", orgnr, cause)
    return FhirError(
        503,
        [Issue("transient", "The register of organisations cannot answer now; try again")],
        {"Retry-After": "1"},
    )


def _kind_in(response: FhirResponse, orgnr: str) -> tuple[str | None, str | None]:
    """The registered kind of the organisation and its resource id."""
    for entry in orjson.loads(response.body).get("entry", []):
        resource = entry.get("resource") or {}
        numbers = [
            i.get("value")
            for i in resource.get("identifier") or []
            if i.get("system") == ORGNR_SYSTEM
        ]
        kinds = [kind for kind in organisation_kinds(resource) if kind]
        if orgnr in numbers and len(kinds) == 1 and resource.get("active") is not False:
            return kinds[0], resource.get("id")
    return None, None
