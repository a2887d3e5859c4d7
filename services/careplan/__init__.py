"""The care plan service: individuell plan, kriseplan, behandlingsplan and forløp plans as
CarePlan with Goals, the ansvarsgruppe as CareTeam with coordinators and their history,
the revision dates of plans, and plans whose consent is gone."""

from __future__ import annotations

from services.careplan.consent_watch import ConsentWatch
from services.careplan.coordinators import CoordinatorAssignment
from services.careplan.resources import careplan_definitions
from services.careplan.revision_monitor import RevisionMonitor
from shared.config import Settings
from shared.directory_client import service_caller
from shared.outside_reads import OutsideReads
from shared.runtime import Component, ServiceRuntime, ServiceSpec

NAME = "careplan"
CAREPLAN_SERVICE_CALLER = service_caller(
    NAME, "Patient", "Organization", "RelatedPerson", "Practitioner", "PractitionerRole"
)
"""How the care plan service reads the directory: the child, organisation kinds."""


def careplan_spec(settings: Settings) -> ServiceSpec:
    reads = OutsideReads()

    async def extend(runtime: ServiceRuntime) -> list[Component]:
        assert runtime.fhir is not None and runtime.nc is not None
        assert runtime.consent_view is not None
        reads.connect(runtime, CAREPLAN_SERVICE_CALLER)
        fhir = runtime.fhir
        fhir.operations.update(CoordinatorAssignment(fhir).operations())
        return [
            RevisionMonitor(fhir, settings.base_url, settings.careplan_revision_interval),
            ConsentWatch(fhir, runtime.consent_view, runtime.nc, settings),
        ]

    return ServiceSpec(NAME, careplan_definitions(reads), extend=extend)
