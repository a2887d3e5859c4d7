"""The command line of the benchmarks:
``python -m bench crud|consent|referral|careplan|subscriptions|scale [options]``.

A thin layer over ``bench.crud.run``, ``bench.consent.run``, ``bench.referral.run``,
``bench.careplan.run``, ``bench.subscriptions.run`` and ``bench.scale.run``: it parses the
options, makes SIGTERM stop the run as cleanly as Ctrl-C does (the stack's child processes,
the database schemas and the NATS streams are removed either way), prints the summary table
and says where the JSON result was written. ``referral``, ``careplan``, ``subscriptions`` and
``scale`` exit with status 1 when requests failed (or events were lost or late, or imported
resources were refused), so a run with errors cannot pass for a clean one.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from bench.careplan import CareplanOptions, format_careplan_report
from bench.careplan import run as run_careplan
from bench.consent import (
    DEFAULT_NATS_URL,
    TARGET_DOCUMENTS,
    ConsentOptions,
    format_consent_report,
)
from bench.consent import run as run_consent
from bench.crud import DEFAULT_DATABASE_URL, RESULTS_DIR, CrudOptions, run
from bench.event_source import SOURCES
from bench.referral import ReferralOptions, format_referral_report
from bench.referral import run as run_referral
from bench.report import format_report
from bench.scale import ScaleOptions, format_scale_report
from bench.scale import run as run_scale
from bench.subscriptions import CHANNELS, SubscriptionsOptions, format_subscriptions_report
from bench.subscriptions import run as run_subscriptions


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
    main = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
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


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _execute(
    command: str,
    options: Callable[[], Any],
    run_benchmark: Callable[[Any], tuple[dict[str, Any], Path | None]],
    report: Callable[[dict[str, Any]], str],
    *,
    errors: str | None = None,
    interrupted: str = "the stack was stopped and its data removed",
) -> int:
    """Build the options, run, print the report and where the result went. `errors`: what
    `errors_total` counts, for the benchmarks that exit 1 when it is not 0."""
    try:
        chosen = options()
    except ValueError as exc:
        print(f"python -m bench {command}: {exc}", file=sys.stderr)
        return 2
    try:
        result, path = run_benchmark(chosen)
    except KeyboardInterrupt:
        print(f"\ninterrupted; {interrupted}", file=sys.stderr)
        return 130
    print()
    print(report(result))
    if path is not None:
        print(f"\nresult written to {path}")
    if errors is not None and result["errors_total"]:
        print(f"\n{result['errors_total']} {errors}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    if args.command == "scale":
        return _execute(
            "scale",
            lambda: ScaleOptions(
                baseline=args.baseline,
                resources=args.resources,
                requests=args.requests,
                concurrency=args.concurrency,
                warmup_requests=args.warmup_requests,
                batch=args.batch,
                parallel=args.parallel,
                gps=args.gps,
                bups=args.bups,
                kommuner=args.kommuner,
                database_url=args.database_url,
                out_dir=args.out,
                seed=args.seed,
            ),
            run_scale,
            format_scale_report,
            errors="errors (refused imports, failed or wrong answers)",
        )
    if args.command == "subscriptions":
        return _execute(
            "subscriptions",
            lambda: SubscriptionsOptions(
                rates=args.rates,
                channels=args.channels,
                source=args.source,
                seconds=args.seconds,
                warmup=max(0.0, args.warmup),
                limit_seconds=args.limit_seconds,
                referrals=args.referrals,
                max_count=args.max_count,
                idle_seconds=args.idle_seconds,
                late_after=args.late_after,
                database_url=args.database_url,
                out_dir=args.out,
                seed=args.seed,
            ),
            run_subscriptions,
            format_subscriptions_report,
            errors="errors (failed writes, lost or late events) in the measured windows",
        )
    if args.command == "consent":
        return _execute(
            "consent",
            lambda: ConsentOptions(
                seconds=args.seconds,
                windows=args.windows,
                concurrency=args.concurrency,
                warmup=max(0.0, args.warmup),
                local_seconds=args.local_seconds,
                patients=args.patients,
                documents=max(args.documents, TARGET_DOCUMENTS),
                database=args.database,
                database_url=args.database_url,
                nats_url=args.nats_url,
                out_dir=args.out,
                seed=args.seed,
                withdrawals=args.withdrawals,
            ),
            run_consent,
            format_consent_report,
            interrupted="the streams, the bucket and the database were removed",
        )
    if args.command == "referral":
        return _execute(
            "referral",
            lambda: ReferralOptions(
                clients=args.clients,
                seconds=args.seconds,
                warmup=max(0.0, args.warmup),
                patients=args.patients,
                database=args.database,
                database_url=args.database_url,
                out_dir=args.out,
                seed=args.seed,
            ),
            run_referral,
            format_referral_report,
            errors="requests failed in the measured windows",
        )
    if args.command == "careplan":
        return _execute(
            "careplan",
            lambda: CareplanOptions(
                clients=args.clients,
                seconds=args.seconds,
                warmup=max(0.0, args.warmup),
                plans=args.plans,
                updated_plans=args.updated_plans,
                batch=args.batch,
                database_url=args.database_url,
                out_dir=args.out,
                seed=args.seed,
            ),
            run_careplan,
            format_careplan_report,
            errors="requests failed in the measured windows",
        )
    return _execute(
        "crud",
        lambda: CrudOptions(
            clients=args.clients,
            seconds=args.seconds,
            warmup=max(0.0, args.warmup),
            limit_seconds=args.limit_seconds,
            database=args.database,
            database_url=args.database_url,
            limits=not args.no_limits,
            out_dir=args.out,
            seed=args.seed,
        ),
        run,
        format_report,
    )


if __name__ == "__main__":
    sys.exit(main())
