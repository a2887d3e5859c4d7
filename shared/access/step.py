"""The consent step every resource of a service passes on its way out: always present.

A service's repository holds exactly one `Guard`. Services that hold information about
patients use `AccessGuard` (decide, audit, release); types that are not patient data and
the benchmarks of the storage path use `UNGUARDED`, which says so by its name rather
than by an absent guard that every path would have to remember to test for.
"""

from __future__ import annotations

from typing import Protocol

from shared.store.resource_store import AccessFor, StoredResource, no_filter
from shared.transport.wire import FhirRequest


class Guard(Protocol):
    """What the repository asks of the consent step (see `AccessGuard` for the rules)."""

    async def current(self, request: FhirRequest) -> None:
        """Before anything of `request` is decided: the consent state it is decided on
        holds every change answered before it arrived (503 when that cannot be made so)."""
        ...

    async def release(self, request: FhirRequest, stored: StoredResource) -> StoredResource | None:
        """The resource as released to the caller (audited), or None when it is withheld."""
        ...

    async def require(self, request: FhirRequest, stored: StoredResource) -> StoredResource:
        """`release`, answering a withheld resource as a missing one (404)."""
        ...

    def may_release(self, request: FhirRequest, stored: StoredResource) -> bool:
        """The decision `release` would make now, from the access columns alone; nothing
        is recorded (the release that follows records it)."""
        ...

    async def check(self, request: FhirRequest, stored: StoredResource) -> bool:
        """Whether the caller may see the resource (audited as `release` is)."""
        ...

    async def permits(
        self, request: FhirRequest, stored: StoredResource, bases: frozenset[str] | None = None
    ) -> bool:
        """Whether a resource a write refers to is the caller's to see (on `bases`)."""
        ...

    def filter_for(self, request: FhirRequest) -> AccessFor:
        """The SQL filter of each resource type for this request."""
        ...

    async def released(
        self,
        request: FhirRequest,
        resources: list[StoredResource],
        query: str | None = None,
        *,
        searched: str | None = None,
    ) -> list[StoredResource]:
        """What a search or history page releases, audited."""
        ...

    async def missing(self, request: FhirRequest, res_type: str, res_id: str) -> None:
        """Audit a probe for a resource that does not exist, as a withheld one is."""
        ...

    async def conflicted(self, request: FhirRequest, res_type: str, res_id: str) -> None:
        """Audit a create refused because another resource holds its business key."""
        ...


class Unguarded:
    """Releases everything and audits nothing: for resource types that hold no
    information about a patient, and for measuring the storage path alone."""

    async def current(self, request: FhirRequest) -> None:
        return None

    async def release(self, request: FhirRequest, stored: StoredResource) -> StoredResource | None:
        return stored

    async def require(self, request: FhirRequest, stored: StoredResource) -> StoredResource:
        return stored

    def may_release(self, request: FhirRequest, stored: StoredResource) -> bool:
        return True

    async def check(self, request: FhirRequest, stored: StoredResource) -> bool:
        return True

    async def permits(
        self, request: FhirRequest, stored: StoredResource, bases: frozenset[str] | None = None
    ) -> bool:
        return True

    def filter_for(self, request: FhirRequest) -> AccessFor:
        return no_filter

    async def released(
        self,
        request: FhirRequest,
        resources: list[StoredResource],
        query: str | None = None,
        *,
        searched: str | None = None,
    ) -> list[StoredResource]:
        return resources

    async def missing(self, request: FhirRequest, res_type: str, res_id: str) -> None:
        return None

    async def conflicted(self, request: FhirRequest, res_type: str, res_id: str) -> None:
        return None


UNGUARDED = Unguarded()
