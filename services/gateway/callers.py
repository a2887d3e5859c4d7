"""Completing the caller's organisation kind from the directory.

HelseID tokens name the organisation (organisasjonsnummer) but not its kind (fastlege,
bup, barnevernstjeneste, …), which the access rules of later services depend on. When a
token carries no kind, the gateway looks the organisation up in the directory
(`Organization.type`) and caches the answer for a few minutes; if the directory cannot
answer, the request goes on without a kind rather than failing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

import orjson

from shared.codes import organisation_kinds
from shared.fhir.errors import FhirError
from shared.identifiers import ORGNR_SYSTEM
from shared.transport.wire import Caller, FhirRequest, FhirResponse

log = logging.getLogger(__name__)

Dispatch = Callable[[FhirRequest, bytes], Awaitable[FhirResponse]]
GATEWAY_CALLER = Caller(client_id="barnebro-gateway", scopes=["system/Organization.rs"])


class OrganisationKinds:
    def __init__(self, dispatch: Dispatch, ttl: float = 300.0, miss_ttl: float = 30.0) -> None:
        self._dispatch = dispatch
        self._ttl = ttl
        self._miss_ttl = miss_ttl
        self._cache: dict[str, tuple[float, str | None]] = {}

    async def complete(self, caller: Caller, base_url: str) -> Caller:
        if caller.org_kind or not caller.orgnr:
            return caller
        kind = await self.kind_of(caller.orgnr, base_url)
        return caller.model_copy(update={"org_kind": kind}) if kind else caller

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
            log.warning("could not look up the kind of organisation %s: %s", orgnr, exc)
            self._cache[orgnr] = (time.monotonic() + self._miss_ttl, None)
            return None
        kind = _kind_in(response)
        lifetime = self._ttl if kind else self._miss_ttl
        self._cache[orgnr] = (time.monotonic() + lifetime, kind)
        return kind


def _kind_in(response: FhirResponse) -> str | None:
    if response.status != 200:
        return None
    for entry in orjson.loads(response.body).get("entry", []):
        kinds = [kind for kind in organisation_kinds(entry.get("resource")) if kind]
        if kinds:
            return kinds[0]
    return None
