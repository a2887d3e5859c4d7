"""``python -m bench all``: every figure of the README's performance summary in one run.

Why it exists: the project's performance targets span five benchmarks (CRUD, consent,
referral, care plan, subscriptions), each with its own options, and comparing the figures
by hand from five JSON files invites mistakes. This package runs them in turn with the
settings the summary names (``plan``), reads the seven figures from their results into
one record with their units, targets and verdicts (``figures``), writes it as
``bench/results/all-<timestamp>.json`` (``running``), and renders it as the README's
markdown table between two marker comments (``table``).
"""

from bench.overall.figures import ROWS, extract
from bench.overall.plan import CAREPLAN_PLANS, PLAN, PlannedRun, selected
from bench.overall.running import Summary, new_summary, run_all
from bench.overall.table import BEGIN, END, MarkersMissing, markdown, rewrite_readme, rewritten

__all__ = [
    "BEGIN",
    "CAREPLAN_PLANS",
    "END",
    "PLAN",
    "ROWS",
    "MarkersMissing",
    "PlannedRun",
    "Summary",
    "extract",
    "markdown",
    "new_summary",
    "rewrite_readme",
    "rewritten",
    "run_all",
    "selected",
]
