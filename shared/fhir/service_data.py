"""What a service's repository and units of work are built on: its definitions, store and
consent step. (`shared.fhir.service.FhirService` is one, with operations and the outbox.)"""

from __future__ import annotations

from shared.access.step import Guard
from shared.config import DEFAULT_MAX_BODY_BYTES
from shared.fhir.definitions import ResourceDefinition
from shared.fhir.errors import error
from shared.fhir.search_params import SearchParam
from shared.gathered import Gathered
from shared.store.database import Database
from shared.store.resource_store import ResourceStore, StoredResource

READS_IN_FLIGHT = 2
"""Statements reading current versions by id at once, at most: the reads asked for while
both are out gather for the next, so under load many share one round trip."""
READS_PER_STATEMENT = 100
INLINE_BODY_BYTES = 16_384
"""Bodies up to this length are read with the version; a longer one only once the
caller may see it, so that the time a read takes does not tell a withheld large resource
from a missing one (what is left is reading at most this many bytes more)."""


class ServiceData:
    """The resource types one service owns, where they are stored and how they leave."""

    def __init__(
        self,
        name: str,
        definitions: list[ResourceDefinition],
        db: Database,
        *,
        prefix: str,
        guard: Guard,
        body_limit: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        """`body_limit`: the most bytes a version may have as stored and served
        (`BARNEBRO_MAX_BODY_BYTES`), so that every reply that carries it can be sent."""
        self.name = name
        self.body_limit = body_limit
        self.prefix = prefix
        """The NATS subject prefix the service's events are published under."""
        self.guard = guard
        self.definitions = {d.resource_type: d for d in definitions}
        self.search_params: dict[str, dict[str, SearchParam]] = {
            d.resource_type: d.params_by_name() for d in definitions
        }
        self.db = db
        self.store = ResourceStore(self.search_params)
        self.current: Gathered[tuple[str, str], StoredResource | None] = Gathered(
            self._read_current,
            in_flight=READS_IN_FLIGHT,
            cut=lambda keys: [
                keys[n : n + READS_PER_STATEMENT] for n in range(0, len(keys), READS_PER_STATEMENT)
            ],
            stopping=lambda: error(503, "transient", "The service is stopping; retry"),
        )
        """`await data.current((type, id))`: the current version, None when there is
        none, read outside any transaction. Each read's statement is sent after it was
        asked for, so it sees every write committed before."""

    async def _read_current(self, keys: list[tuple[str, str]]) -> list[StoredResource | None]:
        async with self.db.reader() as conn:
            return await self.store.read_current(conn, keys, inline_bytes=INLINE_BODY_BYTES)

    def definition(self, resource_type: str | None) -> ResourceDefinition:
        definition = self.definitions.get(resource_type or "")
        if definition is None:
            raise error(404, "not-supported", f"{resource_type} is not served by {self.name}")
        return definition
