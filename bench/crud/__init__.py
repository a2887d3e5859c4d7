"""The CRUD benchmark: linked directory resources created, read, updated and deleted.

Modelled on the open HealthSamurai FHIR server benchmark, adapted to what barnebro's
directory owns: every iteration of every client creates the chain Organization →
Practitioner → PractitionerRole (practitioner + the client's own organisation) → Patient
(managing organisation: the chain's Organization; general practitioner: the
PractitionerRole) → RelatedPerson (patient, parental responsibility ``felles``), reads
each by id, updates each (PUT), and deletes each in reverse order — 20 requests per chain.

Each type is written, read, updated and deleted with the credential that may write it in
a real deployment (``WRITERS``): Organization with the operator credential (the operator's
register), Practitioner, PractitionerRole and Patient with the token of the benchmark's
client organisation (a BUP the operator registers at set-up, ``CLIENT_ORGNR``), and
RelatedPerson with the population register's credential. The resources are valid for
barnebro's rules: organisasjonsnummer pass the mod-11 check, fødselsnummer are synthetic
(month + 80) with correct check digits, and every business key (orgnr, fødselsnummer,
HPR) is unique within the run.

`run` is the whole benchmark: it starts a local stack (its own nats-server, the directory
service and the gateway, on SQLite or PostgreSQL) in a temporary data directory, runs the
CRUD window, a read-only phase, then the limits (``bench.limits``), stops and cleans up
everything (also on error or Ctrl-C) and returns the result for ``bench.report``.
"""

from bench.crud.identifiers import Identifiers
from bench.crud.running import (
    BACKENDS,
    CrudOptions,
    backend_lookup,
    bench_environment,
    drop_schemas,
    environment_restored,
    phase_summary,
    run,
    with_application_name,
)
from bench.crud.world import (
    CHAIN,
    CLIENT_KIND,
    CLIENT_ORGNR,
    DEFAULT_DATABASE_URL,
    RESULTS_DIR,
    WRITERS,
    Database,
)

__all__ = [
    "BACKENDS",
    "CHAIN",
    "CLIENT_KIND",
    "CLIENT_ORGNR",
    "DEFAULT_DATABASE_URL",
    "RESULTS_DIR",
    "WRITERS",
    "CrudOptions",
    "Database",
    "Identifiers",
    "backend_lookup",
    "bench_environment",
    "drop_schemas",
    "environment_restored",
    "phase_summary",
    "run",
    "with_application_name",
]
