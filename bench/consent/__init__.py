"""The consent benchmark: what the consent step costs, measured in one run.

Why it exists: every service that holds information about a child decides, per resource
and per search, whether the caller may see it (`shared.access.decision`), and writes an
audit record to JetStream before anything leaves (`shared.access.guard`,
`shared.access.audit`). The project's aim is that a checked read costs at most about 10 %
more than an unchecked one (checked/unchecked ≥ 0.90). This module measures that, and the
local decision functions underneath, on the shared 2-core development machine — so every
number is a rate per CPU-second or a ratio between two things measured side by side; the
one wall-clock claim is the withdrawal's latency, which is wall-clock by nature.

The phases (``PHASES``; each returns one entry of the JSON result's ``phases`` list, so
another measurement is one more function appended there):

1. ``decide`` — `decide(state, facts, context)` over a realistic consent view (N
   patients, 1-3 grants each to various organisations and kinds, parents, some
   ``hidden_from_parents``), for a mix of actors: the recipient of a consent, an unrelated
   organisation, a parent, the author itself. Decisions per CPU-second
   (`time.process_time`).
2. ``visibility`` — the search filter: `view.states_for(actor_keys(caller))` +
   `visibility(...)` for an actor with grants for ~1 % of the patients.
3. ``read`` and ``search`` — the same FHIR read (and search by patient) through two
   `FhirService`s on the same database, one without a guard and one with the real
   `AccessGuard` (decision + audit record acknowledged by JetStream), in interleaved short
   windows (ABBA order) so that machine noise hits both alike. Reads per CPU-second of this
   process, wall throughput, p50/p99 latency, and the checked/unchecked ratios.
4. ``checked-parts`` — where the extra CPU of a checked request goes, part by part.
5. ``transport`` — the same read and search over NATS request/reply, as a client of the
   gateway would reach the services: a `ServiceHost` per service (this process, two
   subject prefixes) driven through the gateway's `Forwarder`. Per CPU-second of this
   process + nats-server (which carries every request, reply and audit record).
6. ``withdrawal`` — how long a consent withdrawal takes to reach every service's consent
   view: the directory and consent services run here (`ServiceRuntime`, production relay
   settings), and a listener on each view times the state without the grant. The aim is
   under a second; p50/p99/max from the request and from its reply (the commit).

Everything it creates — the SQLite files or PostgreSQL schemas ``bench<random>_*``, the
NATS streams and the consent-view and registry buckets under the unique prefix
``bench<random>`` — is removed at the end, also after an error, Ctrl-C or SIGTERM.
"""

from bench.consent.checked import abba
from bench.consent.population import generate_population
from bench.consent.running import nats_objects_left, run, run_schemas
from bench.consent.summary import format_consent_report
from bench.consent.world import (
    CATEGORY,
    DEFAULT_NATS_URL,
    RECIPIENT_KIND,
    TARGET_DOCUMENTS,
    BenchDocument,
    ConsentOptions,
    document,
)

__all__ = [
    "CATEGORY",
    "DEFAULT_NATS_URL",
    "RECIPIENT_KIND",
    "TARGET_DOCUMENTS",
    "BenchDocument",
    "ConsentOptions",
    "abba",
    "document",
    "format_consent_report",
    "generate_population",
    "nats_objects_left",
    "run",
    "run_schemas",
]
