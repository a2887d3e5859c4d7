"""Every resource type barnebro serves and every code system it publishes, gathered from
the services' own declarations, for what describes them all at once: the conformance
resources the consent service stores and `barnebro package export` packs."""

from __future__ import annotations

from services.careplan import careplan_spec
from services.careplan.domain.vocabulary import CODE_SYSTEMS as CAREPLAN_CODE_SYSTEMS
from services.consent.code_systems import CODE_SYSTEMS as CONSENT_CODE_SYSTEMS
from services.consent.code_systems import CodeSystemDefinition
from services.consent.conformance_types import conformance_type_definitions
from services.consent.resources import consent_definitions
from services.directory import directory_spec
from services.referral import referral_spec
from services.referral.domain.vocabulary import CODE_SYSTEMS as REFERRAL_CODE_SYSTEMS
from services.subscriptions import subscriptions_spec
from services.subscriptions.domain.vocabulary import CODE_SYSTEMS as SUBSCRIPTION_CODE_SYSTEMS
from shared.config import Settings
from shared.fhir.code_systems import CodeSystemSource
from shared.fhir.conformance import ConformanceResources, conformance_resources
from shared.fhir.definitions import ResourceDefinition

PROJECT_CODE_SYSTEMS: tuple[CodeSystemSource, ...] = (
    *CONSENT_CODE_SYSTEMS,
    *REFERRAL_CODE_SYSTEMS,
    *CAREPLAN_CODE_SYSTEMS,
    *SUBSCRIPTION_CODE_SYSTEMS,
)
"""Every code system the project writes as a `system`: each service declares its own
beside its codes, and the consent service serves them all."""


def all_definitions(settings: Settings) -> list[ResourceDefinition]:
    """The definitions of every type any service owns, by type name."""
    found = [
        *directory_spec(settings).definitions,
        *consent_definitions(),
        CodeSystemDefinition(),
        *conformance_type_definitions(),
        *referral_spec(settings).definitions,
        *careplan_spec(settings).definitions,
        *subscriptions_spec(settings).definitions,
    ]
    return sorted(found, key=lambda definition: definition.resource_type)


def project_conformance(settings: Settings) -> ConformanceResources:
    """The project's conformance resources, as this build of the code declares them."""
    return conformance_resources(all_definitions(settings), PROJECT_CODE_SYSTEMS)
