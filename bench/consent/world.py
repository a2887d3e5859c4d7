"""What every phase of the consent benchmark shares: its constants, the bench-only
resource type, the options, the context the phases run in, and the NATS connection."""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal

import nats
from nats.aio.client import Client as NATS

from bench.actors import organisation_caller
from bench.crud import (
    CLIENT_ORGNR,
    DEFAULT_DATABASE_URL,
    RESULTS_DIR,
)
from shared.access.audit import AuditPublisher
from shared.access.guard import AccessGuard
from shared.access.state import PatientAccessState
from shared.access.view import ConsentView
from shared.codes import (
    DataCategory,
    OrganisationKind,
)
from shared.config import Settings
from shared.fhir.definitions import ResourceDefinition
from shared.fhir.router import FhirRouter
from shared.fhir.search_params import ParamType, SearchParam
from shared.identifiers import ORGNR_SYSTEM
from shared.store.database import Database
from shared.transport.wire import Caller

DatabaseKind = Literal["sqlite", "postgresql"]
DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
SERVICE = "bench"
"""The service name of both FhirServices (and of the audit subjects)."""
BASE_URL = "http://bench/fhir"
AIM = 0.90
"""The project's aim: a checked read does at least 90 % of the unchecked reads per CPU-s."""

AUTHOR_ORG = CLIENT_ORGNR
"""The BUP that writes the documents that are read (also the crud benchmark's client)."""
AUTHOR_KIND = OrganisationKind.BUP.value
RECIPIENT_KIND = OrganisationKind.BARNEVERNSTJENESTE.value
"""The kind of the reading organisation. Grants to kinds in the generated view never name
it, so the reader's index keys find exactly its own ~1 % of the patients."""
GRANT_KINDS = (
    OrganisationKind.FASTLEGE.value,
    OrganisationKind.KOMMUNE_HELSE.value,
    OrganisationKind.SKOLE.value,
    OrganisationKind.PPT.value,
)
CATEGORIES = tuple(c.value for c in DataCategory if c is not DataCategory.CONSENT)
CATEGORY = DataCategory.JOURNAL.value
"""The category of the benchmark's documents (and of the search filter)."""
RECIPIENT_SHARE = 0.01
"""The share of patients whose consent names the reading organisation."""
TARGET_DOCUMENTS = 3
"""Documents about the patient that is read and searched (a search returns all three)."""
ORG_POOL = 300
"""Organisations that consents name (besides the reader)."""
DECISION_CASES = 20_000
"""Prepared (state, facts, context) triples the decision loop cycles through."""
ACTOR_MIX = (("recipient", 40), ("unrelated", 30), ("parent", 20), ("own", 10))
"""Share (in %) of each kind of actor among the decisions."""
SCOPES = ["system/*.cruds"]


def org_caller(orgnr: str, kind: str) -> Caller:
    """An organisation as the gateway hands it to a service: its register kind, the
    token's scopes (the organisation credential)."""
    return organisation_caller(orgnr, kind, SCOPES)


# -- the bench-only resource type --------------------------------------------------------------


def _subject_patient(resource: Mapping[str, Any]) -> str | None:
    subject = resource.get("subject")
    reference = subject.get("reference") if isinstance(subject, dict) else None
    if isinstance(reference, str) and reference.startswith("Patient/"):
        return reference.removeprefix("Patient/")
    return None


class BenchDocument(ResourceDefinition):
    """A journal document (DocumentReference) about a patient: patient data in category
    ``journal``, searchable by ``patient``. Only the benchmark serves it."""

    resource_type = "DocumentReference"
    data_category = CATEGORY
    search_params = (
        SearchParam(
            "patient", ParamType.REFERENCE, ("subject",), "Who the document is about",
            targets=("Patient",),
        ),
    )  # fmt: skip
    documentation = "Benchmark-only journal document"

    def patient_of(self, resource: dict[str, Any], resource_id: str) -> str | None:
        return _subject_patient(resource)


_SUMMARY = (
    "Epikrise. Barnet ble henvist for søvnvansker og uro. Samtaler med barn og"
    " fosterforeldre; kartlegging gjennomført. Videre oppfølging i kommunen. " * 12
).strip()


def document(patient: str, author: str) -> dict[str, Any]:
    """A valid R4 DocumentReference (about 2.4 KB as stored) about `patient`, by `author`.

    The text is in `description` and the attachment is by URL: an inline
    `attachment.data` (base64Binary) is refused by `shared.fhir.resources` at present."""
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {
            "coding": [{"system": "http://loinc.org", "code": "11490-0", "display": "Discharge"}]
        },
        "subject": {"reference": f"Patient/{patient}"},
        "date": "2025-03-14T10:00:00+01:00",
        "author": [{"identifier": {"system": ORGNR_SYSTEM, "value": author}}],
        "description": _SUMMARY,
        "content": [
            {
                "attachment": {
                    "contentType": "application/pdf",
                    "url": f"urn:uuid:{uuid.uuid4()}",
                    "size": 48_213,
                    "title": "Epikrise",
                }
            }
        ],
    }


# -- options and the shared context of the phases -----------------------------------------------


@dataclass(frozen=True)
class ConsentOptions:
    seconds: float = 10.0
    """Measured seconds of each checked/unchecked comparison (read, search), split into
    `windows` alternating windows (half checked, half unchecked)."""
    windows: int = 10
    concurrency: int = 8
    warmup: float = 1.0
    """Unmeasured seconds of each comparison before its windows (half per variant)."""
    local_seconds: float = 2.0
    """CPU seconds of each local phase (decide, visibility; half of it for each part of
    the checked-parts phase)."""
    patients: int = 10_000
    documents: int = 1_000
    """DocumentReferences in the database (TARGET_DOCUMENTS of them about the patient read)."""
    database: DatabaseKind = "sqlite"
    database_url: str = DEFAULT_DATABASE_URL
    nats_url: str = field(default_factory=lambda: os.environ.get("NATS_URL", DEFAULT_NATS_URL))
    out_dir: Path | None = RESULTS_DIR
    seed: int | None = None
    withdrawals: int = 100
    """Consents created and withdrawn, one after another, in the withdrawal phase."""
    views: int = 3
    """Extra consent views (each on its own NATS connection) standing for other services
    in the withdrawal phase, besides the consent service's own view and the bench's."""

    def __post_init__(self) -> None:
        if self.windows < 2 or self.windows % 2:
            raise ValueError("windows must be an even number of at least 2")
        if self.patients < 1 or self.documents < TARGET_DOCUMENTS or self.concurrency < 1:
            raise ValueError(
                f"at least 1 patient, {TARGET_DOCUMENTS} documents and 1 concurrent task"
            )
        if self.withdrawals < 1 or self.views < 1:
            raise ValueError("at least 1 withdrawal and 1 extra consent view")

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": self.seconds,
            "windows": self.windows,
            "window_seconds": self.seconds / self.windows,
            "concurrency": self.concurrency,
            "warmup_seconds": self.warmup,
            "local_seconds": self.local_seconds,
            "patients": self.patients,
            "documents": self.documents,
            "database": self.database,
            "database_url": self.database_url if self.database == "postgresql" else None,
            "nats_url": self.nats_url,
            "seed": self.seed,
            "withdrawals": self.withdrawals,
            "extra_views": self.views,
        }


@dataclass
class Population:
    """The generated consent view and the organisations in it."""

    states: list[PatientAccessState]
    orgs: list[str]
    unrelated: list[str]
    recipient: str
    recipient_patients: list[str]
    day: date

    @property
    def target(self) -> PatientAccessState:
        """The patient whose documents are read and searched (a recipient patient)."""
        return self.states[0]


class Interrupt:
    """Set by SIGINT or SIGTERM, which also cancel the run's task.

    The flag is needed as well because nats-py swallows a cancellation that reaches a
    task inside its publish path (``Client._flush_pending`` catches CancelledError), so a
    cancelled run could go on measuring; every loop, window and phase checks it."""

    def __init__(self) -> None:
        self.requested = False

    def check(self) -> None:
        if self.requested:
            raise asyncio.CancelledError


@dataclass
class ConsentBench:
    """What every phase may use: the options, the view, the database and both services."""

    options: ConsentOptions
    rng: random.Random
    population: Population
    settings: Settings
    nc: NATS
    view: ConsentView
    db: Database
    unchecked: FhirRouter
    checked: FhirRouter
    guard: AccessGuard
    """The checked service's consent step."""
    target_documents: list[str] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    """The results of the phases run so far (the result's ``phases``)."""
    interrupt: Interrupt = field(default_factory=Interrupt)

    def caller(self, orgnr: str | None = None, kind: str | None = None) -> Caller:
        """The reading organisation (or another one) as an authenticated caller."""
        return org_caller(orgnr or self.population.recipient, kind or RECIPIENT_KIND)

    async def audit_messages(self) -> int:
        info = await self.nc.jetstream().stream_info(self.settings.audit_stream_name)
        return int(info.state.messages)

    def audit_records(self) -> int:
        """Audit records acknowledged by JetStream (concurrent requests share a message)."""
        assert isinstance(self.guard.audit, AuditPublisher)
        return self.guard.audit.records


Phase = Callable[[ConsentBench], Awaitable[dict[str, Any]]]


async def connect_nats(url: str, name: str = "barnebro-bench-consent") -> NATS:
    """A NATS client that fails fast when the server is not there (unlike the services',
    which reconnect for ever)."""
    return await nats.connect(url, name=name, connect_timeout=3, max_reconnect_attempts=2)
