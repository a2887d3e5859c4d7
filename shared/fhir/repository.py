"""A service's stored data as one request's caller may read it.

Every resource that leaves the service on a read passes the consent step here, once:
a single resource is decided and audited (a denied one answers exactly as a missing one,
and a missing one is audited as a denied one is, so the two cannot be told apart); a
search or history page is filtered in SQL (so `_total` and `_include` count only what
may be seen) and what remains is audited before it is returned.
"""

from __future__ import annotations

from collections.abc import Awaitable
from urllib.parse import urlencode

from shared.auth.scopes import authorize
from shared.fhir.answers import not_found
from shared.fhir.definitions import ResourceDefinition
from shared.fhir.search_query import SearchQuery, parse_search
from shared.fhir.service_data import INLINE_BODY_BYTES, ServiceData
from shared.fhir.unit_of_work import StoreUnitOfWork
from shared.store.database import Connection
from shared.store.resource_store import SearchPage, StoredResource
from shared.transport.wire import FhirRequest


class Repository:
    """Reads for one request, through the service's consent step."""

    def __init__(
        self, data: ServiceData, request: FhirRequest, fence: Awaitable[None] | None = None
    ) -> None:
        """`fence`: the consent view being brought up to date for `request`
        (`Guard.current`), begun while the store is read; every decision waits for it."""
        self.data = data
        self.request = request
        self._fence = fence

    async def disclose(
        self, stored: StoredResource | None, missing: tuple[str, str] | None = None
    ) -> StoredResource | None:
        """The consent step for one resource: a denied one answers as a missing one. A
        missing one (`missing`: its type and id) is audited like a denied one. Returns the
        resource as released (shaped by the decision)."""
        if self._fence is not None:
            await self._fence  # found or not: a view it could not bring up refuses both
        if stored is not None:
            return await self.data.guard.require(self.request, stored)
        if missing is not None:
            await self.data.guard.missing(self.request, *missing)
        return None

    async def read(self, resource_type: str, res_id: str) -> StoredResource | None:
        """The current version as released to the caller; None when missing. Read in one
        statement with the reads asked for at the same time (`ServiceData.current`)."""
        stored = await self.data.current((resource_type, res_id))
        return await self.disclose(await self._whole_when_released(stored), (resource_type, res_id))

    async def vread(self, resource_type: str, res_id: str, version: int) -> StoredResource | None:
        """One version as released to the caller; None when missing."""
        async with self.data.db.reader() as conn:
            stored = await self.data.store.vread(
                conn, resource_type, res_id, version, inline_bytes=INLINE_BODY_BYTES
            )
        return await self.disclose(await self._whole_when_released(stored), (resource_type, res_id))

    async def _whole_when_released(self, stored: StoredResource | None) -> StoredResource | None:
        """A version read without its large body (`body_withheld`) is decided as it is, so
        that a withheld one costs what a missing one does, and read whole only when the
        caller may see it. Denied, it goes to `disclose` as it is, which decides the same
        (no await comes between the two decisions) and so never releases it without its
        body. Read whole, it is the version decided (the history keeps each version as
        written), so a read by id answers as of its first statement."""
        if stored is None or not stored.body_withheld:
            return stored
        if self._fence is not None:
            await self._fence
        if not self.data.guard.may_release(self.request, stored):
            return stored
        async with self.data.db.reader() as conn:
            return await self.data.store.vread(conn, stored.res_type, stored.res_id, stored.version)

    async def search(self, definition: ResourceDefinition) -> tuple[SearchQuery, SearchPage]:
        """One page of the request's search, with what it includes, as released."""
        request = self.request
        query = parse_search(
            definition.resource_type,
            request.params,
            self.data.search_params,
            lenient=request.lenient,
        )
        for include in query.includes:
            for target in include.param.targets:
                if target in self.data.definitions:
                    authorize(request.caller, target, "read")
        for include in query.revincludes:
            authorize(request.caller, include.source_type, "search")
        guard = self.data.guard
        async with self.data.db.reader() as conn:
            await definition.check_search(
                query, request, StoreUnitOfWork(self.data, conn, request).lookup()
            )
            page = await self.data.store.search(conn, query, access_for=guard.filter_for(request))
        released = await guard.released(
            request,
            [*page.resources, *page.included],
            urlencode(query.link_params),
            searched=definition.resource_type,
        )
        kept = {r.reference: r for r in released}
        page.resources[:] = [kept[r.reference] for r in page.resources if r.reference in kept]
        page.included[:] = [kept[r.reference] for r in page.included if r.reference in kept]
        return query, page

    async def history(
        self,
        resource_type: str,
        res_id: str | None,
        *,
        since: str | None,
        count: int,
        before_seq: int | None,
    ) -> tuple[list[StoredResource], int | None]:
        """A page of versions (of one resource when `res_id`), newest first, as released;
        the history of a resource the caller may not see answers as a missing one's."""
        request = self.request
        access = self.data.guard.filter_for(request)(resource_type)
        async with self.data.db.reader() as conn:
            await self._visible_history(conn, resource_type, res_id)
            page, next_seq = await self.data.store.history(
                conn,
                resource_type,
                res_id,
                since=since,
                count=count,
                before_seq=before_seq,
                access=access,
            )
        released = await self.data.guard.released(
            request, page, urlencode(request.params), searched=resource_type
        )
        return released, next_seq

    async def history_total(
        self, resource_type: str, res_id: str | None, *, since: str | None
    ) -> int:
        """How many versions the history holds that the caller may see (`_summary=count`);
        audited as a history page that releases nothing is."""
        request = self.request
        access = self.data.guard.filter_for(request)(resource_type)
        async with self.data.db.reader() as conn:
            await self._visible_history(conn, resource_type, res_id)
            total = await self.data.store.history_total(
                conn, resource_type, res_id, since=since, access=access
            )
        await self.data.guard.released(
            request, [], urlencode(request.params), searched=resource_type
        )
        return total

    async def _visible_history(
        self, conn: Connection, resource_type: str, res_id: str | None
    ) -> None:
        """The history of a resource the caller may not see answers as a missing one's.
        Only the decision is wanted, so a large body is not read (`body_withheld`)."""
        if res_id is not None:
            (current,) = await self.data.store.read_current(
                conn, [(resource_type, res_id)], inline_bytes=INLINE_BODY_BYTES
            )
            if await self.disclose(current, (resource_type, res_id)) is None:
                raise not_found(resource_type, res_id)
