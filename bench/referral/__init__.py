"""The referral benchmark: a henvisning submitted and carried through its lifecycle.

Why it exists: a referral is the heaviest write barnebro has. Submitting one is a FHIR
transaction (three attachments and the ServiceRequest pointing at them by ``urn:uuid``)
that the referral service checks against the directory over NATS (who refers, who
receives, which child), then stores with a server-made Task, sharing the attachments with
the receiver. Moving the Task (received → accepted → in-progress → completed) is an
optimistic-locked update that runs the state machine, and the discharge asks the directory
for the follow-up service and the child's GP. This module measures what that costs the
whole stack, per server CPU-second (the development machine has 2 shared cores, so
wall-clock rates mean little), and how latency and efficiency hold up as concurrency
grows from 16 to 64 clients.

`run` starts a local stack (``services.stack.LocalStack`` with every service of
``services.cli.SERVICES`` and its own nats-server, on PostgreSQL or SQLite, as
``bench.crud`` does), registers a GP office (fastlege), a BUP and a municipal health
service (kommune-helse) as the operator, has the GP register a pool of children (with
itself as their GP), checks one full lifecycle, then runs two phases at each client count:

* ``submit``: each client POSTs referral transactions as the GP (expects 200);
* ``lifecycle``: each client submits as the GP, then as the BUP finds the Task
  (``GET Task?focus=ServiceRequest/<id>``) and moves it through four PUTs with
  ``If-Match``: received, accepted (with a frist 30 days ahead), in-progress and
  completed (with a follow-up plan and the kommune-helse as responsible for follow-up).
  Six requests make one lifecycle.

Each phase is the measured window of ``bench.load.run_phase`` (warm-up, CPU sampled at the
edges, only what completes inside the window counted), with the CPU of the stack's
processes and PostgreSQL counted as ``bench.cpu`` does. Every failed request is counted
and the first bodies kept; the stack, its data directory (with the nats-server's streams)
and the PostgreSQL schemas are removed at the end, also after an error or Ctrl-C.
"""

from bench.referral.clients import (
    Parties,
    ReferralWorld,
    RunningStack,
    bench_request,
    etag,
    only_task,
    submit,
    submitted_referral,
    task_in,
    with_header,
)
from bench.referral.phases import scaling_ratios
from bench.referral.resources import moved, org_reference, organisation, referral_bundle
from bench.referral.running import finish_result, new_result, run, stack_cleanup
from bench.referral.setup import populate
from bench.referral.summary import cpu_summary, error_lines, format_referral_report
from bench.referral.world import (
    ATTACHMENTS,
    FIND_TASK,
    MOVES,
    PHASES,
    REQUEST_KINDS,
    ReferralOptions,
)

__all__ = [
    "ATTACHMENTS",
    "FIND_TASK",
    "MOVES",
    "PHASES",
    "REQUEST_KINDS",
    "Parties",
    "ReferralOptions",
    "ReferralWorld",
    "RunningStack",
    "bench_request",
    "cpu_summary",
    "error_lines",
    "etag",
    "finish_result",
    "format_referral_report",
    "moved",
    "new_result",
    "only_task",
    "org_reference",
    "organisation",
    "populate",
    "referral_bundle",
    "run",
    "scaling_ratios",
    "stack_cleanup",
    "submit",
    "submitted_referral",
    "task_in",
    "with_header",
]
