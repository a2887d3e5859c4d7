"""The scale benchmark: read and search latency with a million resources stored, against
the same with ten thousand, in one run with its own database.

Why it exists: the tables of every service grow with every child in the municipality, and
a read or search that is quick on an empty database may not stay so. The claim to check is
that p95 at 1 000 000 resources is within 2 × the p95 at 10 000, for what the parties ask
most: a child's record by id and by fødselsnummer, its parents, its referrals, "who is
its coordinator?" and a plan with its care team (`_include`).

`run`:

1. **Starts a local stack** on PostgreSQL with its own schemas and nats-server (gateway,
   directory, consent, referral, careplan; as ``bench.crud`` does) and registers the
   organisations as the operator: GP offices, BUPs and kommune-helse, fixed in number
   whatever the size.
2. **Imports a mix** (``bench.scale.mix``) up to ``--baseline`` resources: children
   registered by their GP, their parents by the population register, referrals from GP
   to BUP, care teams coordinated by the BUP and behandlingsplaner naming them, written
   as NDJSON files, one per party and type, and brought in with ``barnebro import``'s
   ``NdjsonImporter`` with each party's token, type by type, waiting after each until the
   stack has settled. The import rate per type is recorded, per wall second and per
   server CPU-second.
3. **Measures** each query (``bench.scale.queries``) with a fixed number of requests at a
   fixed concurrency about random children, after VACUUM ANALYZE of every table.
4. **Imports more** up to ``--resources`` and measures again the same way.
5. **Compares** p95 at the two sizes per query (``bench.scale.summary``), and cleans up:
   stack stopped, data directory removed, schemas dropped, also after an error or Ctrl-C.
"""

from bench.scale.mix import (
    IMPORT_ORDER,
    Child,
    Organisations,
    Part,
    children_for,
    family,
    make_child,
    resources_for,
    resources_of,
)
from bench.scale.queries import QUERIES
from bench.scale.running import run
from bench.scale.summary import aim, compare, format_scale_report
from bench.scale.world import RATIO_LIMIT, ScaleOptions

__all__ = [
    "IMPORT_ORDER",
    "QUERIES",
    "RATIO_LIMIT",
    "Child",
    "Organisations",
    "Part",
    "ScaleOptions",
    "aim",
    "children_for",
    "compare",
    "family",
    "format_scale_report",
    "make_child",
    "resources_for",
    "resources_of",
    "run",
]
