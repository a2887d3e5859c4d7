"""The care plan benchmark: plan updates and "who is the coordinator?" with 100 000 plans.

Why it exists: the care plan service keeps every child's plans (CarePlan) and ansvarsgruppe
(CareTeam) for as long as the child is followed up, so its tables grow with every child in
the municipality, and two things must stay cheap however large they get: revising a plan
(an optimistic-locked update that rewrites the search index and history and raises an
event) and the question every party asks before it calls anyone, "who is the child's
coordinator now?" (a CareTeam search by patient, role and coordinator period, filtered by
who may see the team). An empty database says nothing about either, and creating 100 000
plans through the HTTP API would take longer than the measurement is worth, so this
benchmark fills the careplan schema directly, then measures both against a local stack.

`run`:

1. **Seeds** `--plans` children, each with a CareTeam and a CarePlan, into the careplan
   service's PostgreSQL schema *before* the stack starts, through the service's own
   storage path: ``StoreUnitOfWork.save`` with ``careplan_definitions``, so each row,
   history row, search index row and access column is exactly what the service stores.
   ``save`` leaves out the client-facing checks (``check_write``: the directory look-up
   of the child, the consents for taking part), so the seeded resources carry what those
   checks would have added (the subject's literal reference, the author, changed-by).
   The outbox rows the saves write are deleted in the same transaction: the seeded plans
   stand for plans stored long ago whose events were published long ago, and a relay
   publishing 100 000s of events would load NATS and PostgreSQL during the measurement.
   The tables are then vacuumed and analysed, the state autovacuum brings them to.
2. **Starts a local stack** (gateway, directory, consent, careplan and its own
   nats-server, as ``bench.crud`` and ``bench.referral`` do) and, through the API,
   registers the organisations of the seeded teams as the operator, then, as the first
   BUP, registers `--updated-plans` children in the directory and creates a
   behandlingsplan for each (registering a child is the BUP's relation to it, which a
   plan's creation needs). Checks one update, one coordinator answer, that a BUP outside
   a team finds nothing, and that a seeded plan can be read.
3. **Phases**, each at every `--clients` count (``bench.load.run_phase``: warm-up, CPU
   sampled at the edges, only what completes inside the window counted):

   * ``update``: each client owns a share of the API-created plans and PUTs revisions of
     them (new activity description and next-revision date) with ``If-Match``;
   * ``coordinator``: each client asks, for random seeded children, ``GET
     CareTeam?patient=Patient/<id>&role=koordinator&coordinator-period=le<today>
     &coordinator-period=ge<today>`` as the BUP on that child's team, and checks that the
     answer is the child's team and that its coordinator of record today is the one
     seeded (an empty or wrong answer is an error).

4. **Explains** the coordinator search's SQL (``EXPLAIN ANALYZE``, custom and generic
   plan) on the full tables.
5. **Cleans up**: stack stopped, data directory removed, schemas dropped, also after an
   error or Ctrl-C.
"""

from bench.careplan.requests import revised
from bench.careplan.running import run
from bench.careplan.seeding import seed, seeded_children
from bench.careplan.summary import format_careplan_report
from bench.careplan.world import (
    PHASES,
    CareplanOptions,
    Organisations,
    coordinator_path,
    found_coordinator,
    seeded_plan,
    seeded_team,
)

__all__ = [
    "PHASES",
    "CareplanOptions",
    "Organisations",
    "coordinator_path",
    "format_careplan_report",
    "found_coordinator",
    "revised",
    "run",
    "seed",
    "seeded_children",
    "seeded_plan",
    "seeded_team",
]
