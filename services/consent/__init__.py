"""The consent service: who may consent for a child (pbrl §4-4), consent records and
their lifecycle, the consent administration API, the access state every service mirrors,
the audit trail of disclosures (AuditEvent), the project's code systems (CodeSystem) and
its conformance resources (StructureDefinition, ValueSet, SearchParameter,
OperationDefinition)."""

from __future__ import annotations

from collections.abc import Iterable

from services.consent.admin_api import ConsentAdministration
from services.consent.audit_trail import AuditTrail
from services.consent.authority_warnings import AuthorityWarnings
from services.consent.authority_watch import AuthorityWatch
from services.consent.code_systems import CodeSystemDefinition
from services.consent.conformance import publish_code_systems, publish_conformance
from services.consent.conformance_types import conformance_type_definitions
from services.consent.directory import DirectoryReader
from services.consent.emergency_review import EmergencyReview
from services.consent.handlers import ConsentHandlers
from services.consent.openapi import openapi_document
from services.consent.register_audit import register_audit
from services.consent.relations import RelationWatch
from services.consent.resources import consent_definitions
from shared.access.authority import AuthorityListener
from shared.config import Settings
from shared.organisation_register import RegisterSender
from shared.runtime import Component, ServiceRuntime, ServiceSpec
from shared.transport.forwarding import Forwarder

NAME = "consent"
ADMIN_API_PATH = "/consent/v1"
"""Where the gateway serves the administration API (it sets the full server URL)."""


async def _extend(runtime: ServiceRuntime) -> list[Component]:
    """Wire the administration API's operations and the consumers into the runtime."""
    settings = runtime.settings
    fhir, nc, view = runtime.fhir, runtime.nc, runtime.consent_view
    assert fhir is not None and nc is not None and view is not None
    directory = DirectoryReader(
        RegisterSender(Forwarder(nc, settings.request_timeout), runtime.organisations),
        settings.nats_prefix,
        settings.base_url,
    )
    handlers = ConsentHandlers(
        fhir,
        directory,
        prefix=settings.nats_prefix,
        view_bucket=settings.consent_view_bucket,
        children_at_once=max(1, settings.db_pool_size // 3),
    )
    fhir.operations.update(ConsentAdministration(handlers, directory, view).operations())
    fhir.operations.update(EmergencyReview(fhir).operations())
    await publish_code_systems(fhir)
    await publish_conformance(fhir, settings)

    async def judge(patients: Iterable[str]) -> None:
        async with fhir.answering_after_publication():
            await handlers.reassess_all(patients)

    return [
        AuthorityListener(nc, settings.nats_prefix, judge, queue=NAME),
        AuditTrail(fhir, nc, settings),
        register_audit(fhir, nc, settings),
        RelationWatch(handlers, nc, settings),
        AuthorityWatch(handlers, nc, settings, settings.consent_sweep_interval),
        AuthorityWarnings(handlers, settings.consent_warning_days, settings.consent_sweep_interval),
    ]


def consent_spec(settings: Settings) -> ServiceSpec:
    return ServiceSpec(
        NAME,
        [*consent_definitions(), CodeSystemDefinition(), *conformance_type_definitions()],
        extend=_extend,
        openapi=lambda: openapi_document(ADMIN_API_PATH),
    )
