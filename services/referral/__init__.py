"""The referral service: the henvisning lifecycle as ServiceRequest + Task, with who may
refer, completeness warnings, the state machine and its legal deadlines, rejection and
redirect rules, discharge back to the municipality, and the events partners follow."""

from __future__ import annotations

from services.referral.deadline_monitor import DeadlineMonitor
from services.referral.resources import referral_definitions
from shared.config import Settings
from shared.directory_client import service_caller
from shared.outside_reads import OutsideReads
from shared.runtime import Component, ServiceRuntime, ServiceSpec

NAME = "referral"
REFERRAL_SERVICE_CALLER = service_caller(NAME, "Patient", "Organization")
"""How the referral service reads the directory: who the patient is, organisation kinds,
the patient's GP."""


def referral_spec(settings: Settings) -> ServiceSpec:
    context = OutsideReads()

    async def extend(runtime: ServiceRuntime) -> list[Component]:
        assert runtime.fhir is not None
        context.connect(runtime, REFERRAL_SERVICE_CALLER)
        fhir = runtime.fhir
        return [DeadlineMonitor(fhir, settings.base_url, settings.referral_deadline_interval)]

    definitions = referral_definitions(context, settings.referral_no_show_closure)
    return ServiceSpec(NAME, definitions, extend=extend)
