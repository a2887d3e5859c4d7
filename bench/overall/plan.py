"""Which benchmarks ``python -m bench all`` runs, in which order, with which settings.

Each run is written as the command line it stands for, so the summary can record the
exact command that produced a figure, and the command parses into the same options as
running it alone. The settings are those the README's performance summary names: CRUD
at 32 clients with the HTTP limit and at 16 clients for the p99 target, referrals,
care plans and subscriptions at 16 clients or 100 events/s, the consent step at 8
concurrent requests, all on PostgreSQL. ``--quick`` shortens every window and shrinks
every world, for a smoke run.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

CAREPLAN_PLANS = 50_000
"""Plans seeded by the full run's care plan benchmark. Its default, 100 000, takes 4-7
minutes to seed on the shared 2-core machine; 50 000 take 2-5 (about 390 to 180 plans per
second, depending on the machine's other load), which keeps the whole command at about 10
minutes. The careplan results in bench/README.md found no measurable difference in update
cost between 2 000 and 100 000 plans."""

Settings = tuple[tuple[str, str | None], ...]
"""Command-line options in order: (flag, value), or (flag, None) for a switch."""


@dataclass(frozen=True)
class PlannedRun:
    name: str
    """How the summary's figures refer to the run (one benchmark may run twice)."""
    benchmark: str
    settings: Settings
    quick: Settings = field(default=())
    """What ``--quick`` changes or adds."""

    def arguments(self, quick: bool = False) -> list[str]:
        """The command line after ``python -m bench``."""
        chosen = dict(self.settings)
        if quick:
            chosen.update(self.quick)
        argv = [self.benchmark]
        for flag, value in chosen.items():
            argv += [flag] if value is None else [flag, value]
        return argv

    def command(self, quick: bool = False) -> str:
        return " ".join(["python -m bench", *self.arguments(quick)])


POSTGRESQL: Settings = (("--database", "postgresql"),)
PLAN = (
    PlannedRun(
        "crud-32",
        "crud",
        (*POSTGRESQL, ("--clients", "32")),
        (("--seconds", "3"), ("--warmup", "1"), ("--limit-seconds", "2")),
    ),
    PlannedRun(
        "crud-16",
        "crud",
        (*POSTGRESQL, ("--clients", "16"), ("--no-limits", None)),
        (("--seconds", "3"), ("--warmup", "1"), ("--limit-seconds", "1")),
    ),
    PlannedRun(
        "referral",
        "referral",
        (*POSTGRESQL, ("--clients", "16")),
        (("--seconds", "3"), ("--warmup", "1"), ("--patients", "50")),
    ),
    PlannedRun(
        "careplan",
        "careplan",
        (("--clients", "16"), ("--plans", str(CAREPLAN_PLANS))),
        (("--seconds", "3"), ("--warmup", "1"), ("--plans", "1000"), ("--updated-plans", "32")),
    ),
    PlannedRun(
        "consent",
        "consent",
        (*POSTGRESQL, ("--concurrency", "8")),
        (
            ("--seconds", "2"),
            ("--windows", "4"),
            ("--warmup", "0.5"),
            ("--local-seconds", "0.5"),
            ("--patients", "1000"),
            ("--documents", "200"),
            ("--withdrawals", "10"),
        ),
    ),
    PlannedRun(
        "subscriptions",
        "subscriptions",
        (("--rates", "100"),),
        (
            ("--seconds", "3"),
            ("--warmup", "1"),
            ("--limit-seconds", "2"),
            ("--referrals", "10"),
            ("--idle-seconds", "1"),
        ),
    ),
)


def selected(only: Sequence[str] | None) -> list[PlannedRun]:
    """The runs of the named benchmarks (every run when `only` is None), in plan order."""
    return [run for run in PLAN if only is None or run.benchmark in only]
