"""What the CRUD benchmark shares: options, defaults and the bench environment."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

Database = Literal["sqlite", "postgresql"]
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"
"""`bench/results/` (git-ignored), where every benchmark writes its JSON by default."""
CHAIN = ("Organization", "Practitioner", "PractitionerRole", "Patient", "RelatedPerson")
REQUESTS_PER_CHAIN = 4 * len(CHAIN)
CLIENT_ORGNR = "910000209"
"""The organisation the benchmark's client token is issued to: a BUP, registered by the
operator at set-up. It is none of the demonstration organisations `LocalStack` registers,
and far from the run's generated organisation numbers (`Identifiers`: 80000000-89999999
and on, as 8-digit prefixes)."""
CLIENT_KIND = "bup"
OWN_ORGANIZATION = "own Organization"
"""The key of the client's own Organization id in a chain's references: a
PractitionerRole names the organisation that writes it."""
Writer = Literal["operator", "client", "register"]
WRITERS: dict[str, Writer] = {
    "Organization": "operator",
    "Practitioner": "client",
    "PractitionerRole": "client",
    "Patient": "client",
    "RelatedPerson": "register",
}
"""Whose credential creates, reads, updates and deletes each type of the chain: the
operator's register, the client organisation, the population register."""
READ_PATIENTS = 64
"""Patients created for the read-only phase (and the bare limits), read at random."""

MANAGED_ENVIRONMENT = (
    "NATS_URL",
    "DATABASE_URL",
    "BARNEBRO_DB_SCHEMA_PREFIX",
    "BARNEBRO_JWKS_URL",
    "BARNEBRO_JWKS_FILE",
    "BARNEBRO_JWT_ISSUER",
    "BARNEBRO_JWT_AUDIENCE",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
)
"""Variables the run sets or removes so the stack's children inherit a known setup; they
are restored afterwards. NATS_URL is removed so the stack starts (and we measure) its own
nats-server; the JWT settings so that the locally issued token verifies; the OTLP endpoint
so that tracing export does not run during the measurement."""
