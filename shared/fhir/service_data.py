"""What a service's repository and units of work are built on: its definitions, store and
consent step. (`shared.fhir.service.FhirService` is one, with operations and the outbox.)"""

from __future__ import annotations

from shared.access.step import Guard
from shared.fhir.definitions import ResourceDefinition
from shared.fhir.errors import error
from shared.fhir.search_params import SearchParam
from shared.store.database import Database
from shared.store.resource_store import ResourceStore


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
    ) -> None:
        self.name = name
        self.prefix = prefix
        """The NATS subject prefix the service's events are published under."""
        self.guard = guard
        self.definitions = {d.resource_type: d for d in definitions}
        self.search_params: dict[str, dict[str, SearchParam]] = {
            d.resource_type: d.params_by_name() for d in definitions
        }
        self.db = db
        self.store = ResourceStore(self.search_params)

    def definition(self, resource_type: str | None) -> ResourceDefinition:
        definition = self.definitions.get(resource_type or "")
        if definition is None:
            raise error(404, "not-supported", f"{resource_type} is not served by {self.name}")
        return definition
