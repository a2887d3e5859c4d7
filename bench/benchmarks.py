"""Every benchmark as the command line runs it: its options made from the parsed
arguments, its ``run``, its printed report and how many errors its measured windows had.

One table, so that ``python -m bench NAME …`` and each run of ``python -m bench all`` build
the same options from the same arguments and call the same function.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.careplan import CareplanOptions, format_careplan_report
from bench.careplan import run as run_careplan
from bench.consent import TARGET_DOCUMENTS, ConsentOptions, format_consent_report
from bench.consent import run as run_consent
from bench.crud import CrudOptions
from bench.crud import run as run_crud
from bench.referral import ReferralOptions, format_referral_report
from bench.referral import run as run_referral
from bench.report import format_report
from bench.scale import ScaleOptions, format_scale_report
from bench.scale import run as run_scale
from bench.subscriptions import SubscriptionsOptions, format_subscriptions_report
from bench.subscriptions import run as run_subscriptions

Result = dict[str, Any]


@dataclass(frozen=True)
class Benchmark:
    options: Callable[[argparse.Namespace], Any]
    """The benchmark's options class, filled from the parsed command line (may raise
    ValueError)."""
    run: Callable[[Any], tuple[Result, Path | None]]
    report: Callable[[Mapping[str, Any]], str]
    window_errors: Callable[[Mapping[str, Any]], int]
    """Failed requests (lost or late events, …) in the result's measured windows."""
    exits_on_errors: str | None = None
    """What `window_errors` counts, for the benchmarks whose own command exits 1 when it
    is not 0; None for those whose command does not."""
    interrupted: str = "the stack was stopped and its data removed"


def errors_total(result: Mapping[str, Any]) -> int:
    return int(result.get("errors_total", 0))


def crud_errors(result: Mapping[str, Any]) -> int:
    """Failed requests of the CRUD window, the read-only phase and the limits."""
    limits = result.get("limits") or {}
    phases = [result.get("crud"), result.get("read_by_id"), *limits.values()]
    return sum(int(phase["errors"]) for phase in phases if phase)


def consent_errors(result: Mapping[str, Any]) -> int:
    """Failed requests of every checked/unchecked comparison (in process and over NATS)."""
    return sum(
        int(compared[variant]["errors"])
        for compared in _comparisons(result.get("phases", []))
        for variant in ("checked", "unchecked")
    )


def _comparisons(phases: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    found = []
    for phase in phases:
        for part in (phase, phase.get("read"), phase.get("search")):
            if isinstance(part, Mapping) and "checked" in part and "unchecked" in part:
                found.append(part)
    return found


def _crud(args: argparse.Namespace) -> CrudOptions:
    return CrudOptions(
        clients=args.clients,
        seconds=args.seconds,
        warmup=max(0.0, args.warmup),
        limit_seconds=args.limit_seconds,
        database=args.database,
        database_url=args.database_url,
        limits=not args.no_limits,
        out_dir=args.out,
        seed=args.seed,
    )


def _consent(args: argparse.Namespace) -> ConsentOptions:
    return ConsentOptions(
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
    )


def _referral(args: argparse.Namespace) -> ReferralOptions:
    return ReferralOptions(
        clients=args.clients,
        seconds=args.seconds,
        warmup=max(0.0, args.warmup),
        patients=args.patients,
        database=args.database,
        database_url=args.database_url,
        out_dir=args.out,
        seed=args.seed,
    )


def _careplan(args: argparse.Namespace) -> CareplanOptions:
    return CareplanOptions(
        clients=args.clients,
        seconds=args.seconds,
        warmup=max(0.0, args.warmup),
        plans=args.plans,
        updated_plans=args.updated_plans,
        batch=args.batch,
        database_url=args.database_url,
        out_dir=args.out,
        seed=args.seed,
    )


def _subscriptions(args: argparse.Namespace) -> SubscriptionsOptions:
    return SubscriptionsOptions(
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
    )


def _scale(args: argparse.Namespace) -> ScaleOptions:
    return ScaleOptions(
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
    )


BENCHMARKS: dict[str, Benchmark] = {
    "crud": Benchmark(_crud, run_crud, format_report, crud_errors),
    "consent": Benchmark(
        _consent,
        run_consent,
        format_consent_report,
        consent_errors,
        interrupted="the streams, the bucket and the database were removed",
    ),
    "referral": Benchmark(
        _referral,
        run_referral,
        format_referral_report,
        errors_total,
        "requests failed in the measured windows",
    ),
    "careplan": Benchmark(
        _careplan,
        run_careplan,
        format_careplan_report,
        errors_total,
        "requests failed in the measured windows",
    ),
    "subscriptions": Benchmark(
        _subscriptions,
        run_subscriptions,
        format_subscriptions_report,
        errors_total,
        "errors (failed writes, lost or late events) in the measured windows",
    ),
    "scale": Benchmark(
        _scale,
        run_scale,
        format_scale_report,
        errors_total,
        "errors (refused imports, failed or wrong answers)",
    ),
}
