"""Completing an organisation caller with its kind, from the operator's register.

Tokens name the organisation (organisasjonsnummer) but never decide what it is: the kind
(fastlege, bup, barnevernstjeneste, …), on which every access rule depends, is what the
operator registered as `Organization.type` in the directory. Only the operator writes
Organizations, so no integration can make itself another kind. The directory's answers are
kept as every service keeps them (`shared.organisation_register`): for a minute (an
unknown organisation for a second), and an organisation's kind is dropped as soon as the
directory reports a change to it (every unknown one at any change), so a change to the
register takes effect with the operator's answer. An organisation the register does not hold
has no kind, which the permission table refuses (an unregistered organisation may do
nothing); but if the directory cannot answer (an error, a timeout), the request is
answered 503 and nothing is cached: a failing register must not read as "not registered".
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable

import orjson
from nats.aio.client import Client as NATS

from shared.codes import organisation_kinds
from shared.fhir.errors import FhirError, Issue
from shared.identifiers import ORGNR_SYSTEM
from shared.organisation_register import OrganisationRegister
from shared.transport.wire import Caller, FhirRequest, FhirResponse

log = logging.getLogger(__name__)

Dispatch = Callable[[FhirRequest, bytes], Awaitable[FhirResponse]]
GATEWAY_CALLER = Caller(
    credential="service", client_id="barnebro-gateway", scopes=["system/Organization.rs"]
)


class OrganisationKinds:
    def __init__(self, dispatch: Dispatch, register: OrganisationRegister | None = None) -> None:
        self._dispatch = dispatch
        self._register = register or OrganisationRegister()

    async def follow(self, nc: NATS, prefix: str) -> None:
        """Forget what was kept when an Organization changes in the register."""
        await self._register.follow(nc, prefix)

    async def stop(self) -> None:
        await self._register.stop()

    def forget(self) -> None:
        """Forget every kept answer."""
        self._register.forget()

    async def complete(self, caller: Caller, base_url: str) -> Caller:
        """The caller with its organisation's registered kind (organisation credentials
        only: a person acts as themselves, an operator credential for no organisation)."""
        if caller.credential != "organisation" or not caller.orgnr:
            return caller
        kind = await self.kind_of(caller.orgnr, base_url)
        return caller.model_copy(update={"org_kind": kind})

    async def kind_of(self, orgnr: str, base_url: str) -> str | None:
        async def ask() -> tuple[int, bytes]:
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
            return response.status, response.body

        status, body = await self._register.answer(("kind", orgnr), ask)
        if status != 200:
            raise _unavailable(orgnr, f"HTTP {status}")
        return _kind_in(body, orgnr)


def _unavailable(orgnr: str, cause: str) -> FhirError:
    log.warning("could not look up the kind of organisation %s: %s", orgnr, cause)
    return FhirError(
        503,
        [Issue("transient", "The register of organisations cannot answer now; try again")],
        {"Retry-After": "1"},
    )


@functools.lru_cache(maxsize=1024)
def _kind_in(body: bytes, orgnr: str) -> str | None:
    """The registered kind of the organisation, if it is in use. Remembered per answer: a
    kept answer is the same bytes on every request until the register changes."""
    for entry in orjson.loads(body).get("entry", []):
        resource = entry.get("resource") or {}
        numbers = [
            i.get("value")
            for i in resource.get("identifier") or []
            if i.get("system") == ORGNR_SYSTEM
        ]
        kinds = [kind for kind in organisation_kinds(resource) if kind]
        if orgnr in numbers and len(kinds) == 1 and resource.get("active") is not False:
            return kinds[0]
    return None
