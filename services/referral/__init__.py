"""The referral service: the henvisning lifecycle as ServiceRequest + Task, with who may
refer, completeness warnings, the state machine and its legal deadlines, rejection and
redirect rules, discharge back to the municipality, and the events partners follow."""

from __future__ import annotations

from services.referral.context import ReferralContext
from services.referral.deadline_monitor import DeadlineMonitor
from services.referral.resources import referral_definitions
from shared.config import Settings
from shared.directory_client import DirectoryClient, service_caller
from shared.runtime import Component, ServiceRuntime, ServiceSpec
from shared.transport.forwarding import Forwarder

NAME = "referral"
REFERRAL_SERVICE_CALLER = service_caller(NAME, "Patient", "Organization")
"""How the referral service reads the directory: who the patient is, organisation kinds,
the patient's GP."""


def referral_spec(settings: Settings) -> ServiceSpec:
    context = ReferralContext()

    async def extend(runtime: ServiceRuntime) -> list[Component]:
        fhir, nc = runtime.fhir, runtime.nc
        assert fhir is not None and nc is not None
        context.directory = DirectoryClient(
            Forwarder(nc, settings.request_timeout),
            settings.nats_prefix,
            settings.base_url,
            REFERRAL_SERVICE_CALLER,
        )
        context.view = runtime.consent_view
        return [DeadlineMonitor(fhir, settings.base_url, settings.referral_deadline_interval)]

    return ServiceSpec(NAME, referral_definitions(context), extend=extend)
