"""The command line of the benchmarks: every command's options, parsed by one parser.

Apart from ``bench.__main__`` so that ``python -m bench all`` can turn each of its runs,
written as the command line it stands for, into the same arguments (and so the same
options) that running that command alone would give.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from bench.consent import DEFAULT_NATS_URL
from bench.crud import DEFAULT_DATABASE_URL, RESULTS_DIR
from bench.event_source import SOURCES
from bench.subscriptions import CHANNELS

DESCRIPTION = (
    "The command line of the benchmarks:"
    " python -m bench crud|consent|referral|careplan|subscriptions|all|table [options]."
)
BENCHMARK_NAMES = ("crud", "consent", "referral", "careplan", "subscriptions")


def _positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return number


def _clients(value: str) -> int:
    number = int(value)
    if not 1 <= number <= 1024:
        raise argparse.ArgumentTypeError("the number of clients must be between 1 and 1024")
    return number


def _count(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return number


def _client_counts(value: str) -> tuple[int, ...]:
    try:
        return tuple(_clients(part) for part in value.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a comma-separated list of client counts, e.g. 16,64"
        ) from exc


def _windows(value: str) -> int:
    number = int(value)
    if number < 2 or number % 2:
        raise argparse.ArgumentTypeError("the number of windows must be even and at least 2")
    return number


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m bench", description=DESCRIPTION)
    commands = main.add_subparsers(dest="command", required=True)
    crud = commands.add_parser(
        "crud",
        help="create/read/update/delete linked directory resources against a local stack",
        description="Create, read, update and delete chains of linked directory resources"
        " against a local stack, then measure the HTTP and storage limits in the same run.",
    )
    crud.add_argument("--clients", type=_clients, default=32, help="concurrent clients (32)")
    crud.add_argument("--seconds", type=_positive, default=20.0, help="measured seconds (20)")
    crud.add_argument("--warmup", type=float, default=3.0, help="unmeasured warm-up seconds (3)")
    crud.add_argument(
        "--limit-seconds",
        type=_positive,
        default=5.0,
        help="measured seconds of the read-only phase and of each limit (5)",
    )
    crud.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    crud.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help=f"PostgreSQL to use with --database postgresql ({DEFAULT_DATABASE_URL})",
    )
    crud.add_argument("--no-limits", action="store_true", help="skip the HTTP and storage limits")
    crud.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help="directory of the JSON result (bench/results)"
    )
    crud.add_argument("--seed", type=int, help="seed of the identifier generator")
    consent = commands.add_parser(
        "consent",
        help="the cost of the consent step: decisions, search filters, checked vs unchecked",
        description="Decisions and search filters per CPU-second over a generated consent"
        " view, and the same read and search through an unchecked and a checked FhirService"
        " (decision + audit record acknowledged by JetStream), in interleaved windows.",
    )
    consent.add_argument(
        "--seconds",
        type=_positive,
        default=10.0,
        help="measured seconds of each checked/unchecked comparison (10)",
    )
    consent.add_argument(
        "--windows", type=_windows, default=10, help="alternating windows per comparison (10)"
    )
    consent.add_argument(
        "--concurrency", type=_clients, default=8, help="concurrent asyncio tasks (8)"
    )
    consent.add_argument(
        "--warmup", type=float, default=1.0, help="unmeasured seconds per comparison (1)"
    )
    consent.add_argument(
        "--local-seconds",
        type=_positive,
        default=2.0,
        help="CPU seconds of each local measurement (decide, visibility) (2)",
    )
    consent.add_argument(
        "--patients", type=_count, default=10_000, help="patients in the consent view (10000)"
    )
    consent.add_argument(
        "--documents", type=_count, default=1_000, help="documents in the database (1000)"
    )
    consent.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    consent.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help=f"PostgreSQL to use with --database postgresql ({DEFAULT_DATABASE_URL})",
    )
    consent.add_argument(
        "--nats-url",
        default=os.environ.get("NATS_URL", DEFAULT_NATS_URL),
        help=f"NATS with JetStream (NATS_URL, else {DEFAULT_NATS_URL})",
    )
    consent.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help="directory of the JSON result (bench/results)"
    )
    consent.add_argument("--seed", type=int, help="seed of the generated consent view")
    consent.add_argument(
        "--withdrawals",
        type=_count,
        default=100,
        help="consents created and withdrawn in the withdrawal phase (100)",
    )
    _add_referral(commands)
    _add_careplan(commands)
    _add_subscriptions(commands)
    _add_scale(commands)
    _add_all(commands)
    _add_table(commands)
    return main


def _add_referral(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    referral = commands.add_parser(
        "referral",
        help="submit referrals as transactions and run their whole lifecycle, per server CPU-s",
        description="Referral transactions submitted by a GP, and full lifecycles (submit,"
        " find the Task, received → accepted → in-progress → completed as the BUP), against"
        " a local stack with every service, at each number of concurrent clients.",
    )
    referral.add_argument(
        "--clients",
        type=_client_counts,
        default=(16, 64),
        help="comma-separated numbers of concurrent clients; each phase runs at each (16,64)",
    )
    referral.add_argument(
        "--seconds", type=_positive, default=15.0, help="measured seconds per phase (15)"
    )
    referral.add_argument(
        "--warmup", type=float, default=3.0, help="unmeasured seconds before each phase (3)"
    )
    referral.add_argument(
        "--patients", type=_count, default=500, help="children the referrals are about (500)"
    )
    referral.add_argument("--database", choices=("sqlite", "postgresql"), default="postgresql")
    referral.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help=f"PostgreSQL to use with --database postgresql ({DEFAULT_DATABASE_URL})",
    )
    referral.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help="directory of the JSON result (bench/results)"
    )
    referral.add_argument("--seed", type=int, help="seed of the identifiers and the clients")


def _add_careplan(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    careplan = commands.add_parser(
        "careplan",
        help="plan updates and 'who is the coordinator?' with 100 000 plans stored",
        description="Seed the care plan service's PostgreSQL schema with plans and care"
        " teams, then measure plan updates (PUT with If-Match) and the coordinator search"
        " (CareTeam by patient, role and coordinator period) against a local stack, per"
        " server CPU-second, at each number of concurrent clients.",
    )
    careplan.add_argument(
        "--clients",
        type=_client_counts,
        default=(16,),
        help="comma-separated numbers of concurrent clients; each phase runs at each (16)",
    )
    careplan.add_argument(
        "--seconds", type=_positive, default=15.0, help="measured seconds per phase (15)"
    )
    careplan.add_argument(
        "--warmup", type=float, default=3.0, help="unmeasured seconds before each phase (3)"
    )
    careplan.add_argument(
        "--plans",
        type=_count,
        default=100_000,
        help="children seeded with a plan and a care team each (100000)",
    )
    careplan.add_argument(
        "--updated-plans",
        type=_count,
        default=256,
        help="plans created through the API that the update phase revises (256)",
    )
    careplan.add_argument(
        "--batch", type=_count, default=500, help="seeded children per transaction (500)"
    )
    careplan.add_argument("--database", choices=("postgresql",), default="postgresql")
    careplan.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help=f"the PostgreSQL to use ({DEFAULT_DATABASE_URL})",
    )
    careplan.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help="directory of the JSON result (bench/results)"
    )
    careplan.add_argument("--seed", type=int, help="seed of the identifiers and the clients")


def _rates(value: str) -> tuple[float, ...]:
    try:
        return tuple(_positive(part) for part in value.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a comma-separated list of events per second, e.g. 100,500"
        ) from exc


def _channels(value: str) -> tuple[str, ...]:
    names = tuple(value.split(","))
    if not names or set(names) - set(CHANNELS):
        raise argparse.ArgumentTypeError(f"channels are some of {','.join(CHANNELS)}")
    return names


def _add_subscriptions(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    subscriptions = commands.add_parser(
        "subscriptions",
        help="write → partner latency of subscription notifications, rest-hook and nats",
        description="Referral Task events written at fixed rates, delivered by the"
        " subscriptions service to a partner over rest-hook and the nats channel: write →"
        " partner latency p50/p99 per channel and rate, with the raw NATS publish →"
        " subscriber latency measured in the same run, per server CPU-second.",
    )
    subscriptions.add_argument(
        "--rates",
        type=_rates,
        default=(100.0, 500.0),
        help="comma-separated events per second; each channel runs at each (100,500)",
    )
    subscriptions.add_argument(
        "--channels",
        type=_channels,
        default=CHANNELS,
        help=f"comma-separated channels ({','.join(CHANNELS)})",
    )
    subscriptions.add_argument(
        "--source",
        choices=SOURCES,
        default="outbox",
        help="a write is the Task update's event alone (outbox) or the whole update (task)",
    )
    subscriptions.add_argument(
        "--seconds", type=_positive, default=20.0, help="measured seconds per phase (20)"
    )
    subscriptions.add_argument(
        "--warmup", type=float, default=3.0, help="unmeasured seconds before each phase (3)"
    )
    subscriptions.add_argument(
        "--limit-seconds",
        type=_positive,
        default=10.0,
        help="measured seconds of each raw NATS limit, core and JetStream (10)",
    )
    subscriptions.add_argument(
        "--referrals", type=_count, default=100, help="referrals per channel written to (100)"
    )
    subscriptions.add_argument(
        "--max-count",
        type=_count,
        help="events per notification at most (backport-max-count; the service's default)",
    )
    subscriptions.add_argument(
        "--late-after",
        type=_positive,
        default=5.0,
        help="seconds after which an event not yet delivered counts as late (5)",
    )
    subscriptions.add_argument(
        "--idle-seconds",
        type=_positive,
        default=5.0,
        help="seconds the idle stack's CPU is measured before the phases (5)",
    )
    subscriptions.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help=f"the PostgreSQL to use ({DEFAULT_DATABASE_URL})",
    )
    subscriptions.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help="directory of the JSON result (bench/results)"
    )
    subscriptions.add_argument("--seed", type=int, help="seed of the identifiers")


def _benchmark_names(value: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in value.split(",") if name.strip())
    unknown = set(names) - set(BENCHMARK_NAMES)
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"{value!r}: name some of {','.join(BENCHMARK_NAMES)}, separated by commas"
        )
    return names


def _add_all(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    every = commands.add_parser(
        "all",
        help="every figure of the performance table: each benchmark in turn, one JSON result",
        description="Run each benchmark in turn on PostgreSQL with the settings the"
        " README's performance summary names, write the seven figures, their targets and"
        " whether each is met to bench/results/all-<timestamp>.json, and optionally"
        " rewrite the README's table from it. Exits with status 1 when a benchmark failed"
        " or had errors in its measured windows (the others still run).",
    )
    every.add_argument(
        "--quick",
        action="store_true",
        help="short windows and small worlds: a smoke run of a few minutes, not a measurement",
    )
    every.add_argument(
        "--only",
        type=_benchmark_names,
        help=f"comma-separated benchmarks to run (of {','.join(BENCHMARK_NAMES)}); default all",
    )
    every.add_argument(
        "--list", action="store_true", help="print the commands it would run, and run nothing"
    )
    every.add_argument(
        "--readme",
        type=Path,
        help="rewrite the performance summary between the markers of this README (not with"
        " --quick)",
    )
    every.add_argument(
        "--out",
        type=Path,
        default=RESULTS_DIR,
        help="directory of the JSON results, each benchmark's and the summary (bench/results)",
    )


def _add_table(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    table = commands.add_parser(
        "table",
        help="the performance summary of a `bench all` result, as a markdown table",
        description="Print the markdown table of a `python -m bench all` result and, with"
        " --readme, rewrite it between the README's performance summary markers.",
    )
    table.add_argument("file", type=Path, help="a bench/results/all-<timestamp>.json")
    table.add_argument(
        "--readme", type=Path, help="rewrite the table between the markers of this README"
    )


def _add_scale(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    scale = commands.add_parser(
        "scale",
        help="read and search p95 at a million imported resources versus at ten thousand",
        description="Import a mix of children, parents, referrals, care teams and plans"
        " with barnebro import as each party, to --baseline resources and then to"
        " --resources, and measure reads and searches at both sizes in one run: p95 at the"
        " large size over p95 at the baseline, per query.",
    )
    scale.add_argument(
        "--baseline", type=_count, default=10_000, help="resources of the first size (10000)"
    )
    scale.add_argument(
        "--resources", type=_count, default=1_000_000, help="resources of the second (1000000)"
    )
    scale.add_argument(
        "--requests", type=_count, default=2_000, help="measured requests per query and size (2000)"
    )
    scale.add_argument(
        "--concurrency", type=_clients, default=8, help="requests under way at once (8)"
    )
    scale.add_argument(
        "--warmup-requests",
        type=int,
        default=100,
        help="unmeasured requests per query and size (100)",
    )
    scale.add_argument(
        "--batch", type=_count, default=100, help="resources per import transaction (100)"
    )
    scale.add_argument("--parallel", type=_count, default=4, help="import transactions at once (4)")
    scale.add_argument("--gps", type=_count, default=20, help="GP offices (20)")
    scale.add_argument("--bups", type=_count, default=4, help="BUPs (4)")
    scale.add_argument("--kommuner", type=_count, default=10, help="kommune-helse (10)")
    scale.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help=f"the PostgreSQL to use ({DEFAULT_DATABASE_URL})",
    )
    scale.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help="directory of the JSON result (bench/results)"
    )
    scale.add_argument("--seed", type=int, help="seed of the identifiers and the choices")
