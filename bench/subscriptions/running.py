"""Starting the stack, running the phases and tearing everything down."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import (
    AsyncIterator,
    Iterator,
    Mapping,
    Sequence,
)
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from nats.aio.client import Client as NATS

from bench.cpu import CpuMeter
from bench.crud import (
    CrudOptions,
    Identifiers,
    bench_environment,
    environment_restored,
    with_application_name,
)
from bench.event_source import (
    TaskSource,
)
from bench.load import HttpClient, PidLookup, http_client
from bench.partner import (
    Ledger,
    NatsPartner,
    RestHookPartner,
    watch_events,
)
from bench.referral import (
    RunningStack,
    new_result,
    stack_cleanup,
)
from bench.report import (
    write_json,
)
from bench.subscriptions.limit import raw_nats_limit
from bench.subscriptions.phases import Measurement, backend_groups, measure_channel, sanity
from bench.subscriptions.world import (
    ALLOW_HTTP,
    ALLOWED_HOSTS,
    SERVERS,
    SETUP_CONCURRENCY,
    STACK_SERVICES,
    Channel,
    SubscriptionsOptions,
    make_channels,
    subscribe,
)
from services.stack import LocalStack, free_port
from services.subscriptions.domain.vocabulary import (
    REST_HOOK,
)
from shared.config import Settings
from shared.transport.nats_connection import close, connect


def stack_nats_url(stack: LocalStack) -> tuple[str, int]:
    """The URL and pid of the nats-server the stack started."""
    for name, process in stack.children:
        if name == "nats" and stack.own_nats_url is not None:
            return stack.own_nats_url, process.pid
    raise RuntimeError("the stack did not start its own nats-server (is NATS_URL set?)")


@contextlib.contextmanager
def allow_http() -> Iterator[None]:
    """Let the subscriptions service post to the partner's http://127.0.0.1 endpoint (an
    http URL, on an address the operator allows)."""
    wanted = {ALLOW_HTTP: "true", ALLOWED_HOSTS: "127.0.0.1"}
    with environment_restored(wanted):
        os.environ.update(wanted)
        yield


@dataclass
class Partners:
    """The partners' ends in this process and what they saw."""

    ledger: Ledger
    secret: str
    rest_hook: RestHookPartner
    nc: NATS
    nats: list[NatsPartner] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        ledger = self.ledger
        return {
            "notifications_by_type": dict(ledger.kinds),
            "unexpected_events": ledger.unexpected,
            "number_gaps": ledger.gaps,
            "numbers_notified_again": ledger.replayed,
            "problems": dict(ledger.problems),
            "problem_samples": ledger.problem_samples,
            "bad_signatures": self.rest_hook.bad_signatures,
        }


@contextlib.asynccontextmanager
async def partners(settings: Settings) -> AsyncIterator[Partners]:
    """The rest-hook endpoint, a NATS connection for the nats partner and the watcher of
    the events' subject; stopped on the way out."""
    ledger, secret = Ledger(), secrets.token_urlsafe(32)
    found = Partners(
        ledger, secret, RestHookPartner(ledger, secret), await connect(settings, "bench-partner")
    )
    try:
        await found.rest_hook.start()
        await watch_events(found.nc, f"{settings.nats_prefix}.events.referral.Task.>", ledger)
        yield found
    finally:
        for partner in found.nats:
            await partner.stop()
        await found.rest_hook.stop()
        await close(found.nc)


async def subscribe_channels(
    base: HttpClient,
    stack: RunningStack,
    channels: Sequence[Channel],
    found: Partners,
    settings: Settings,
    options: SubscriptionsOptions,
) -> None:
    """Each channel's BUP subscribes (through the API) with its partner listening."""
    for channel in channels:
        client = stack.client(base, channel.bup)
        if channel.name == REST_HOOK:
            endpoint, secret = found.rest_hook.url, found.secret
        else:
            subject = f"{settings.nats_prefix}.partner.{channel.bup}"
            partner = NatsPartner(found.ledger, found.nc, settings.partner_stream_name, subject)
            await partner.start()
            found.nats.append(partner)
            endpoint, secret = None, None
        channel.subscription = await subscribe(client, channel, endpoint, secret, options.max_count)


async def idle_cpu(meter: CpuMeter, backends: PidLookup, seconds: float) -> dict[str, Any]:
    """What the stack spends with nothing to do (polling, leases, timers)."""
    start, began = meter.snapshot(await backends()), time.perf_counter()
    await asyncio.sleep(seconds)
    end, ended = meter.snapshot(await backends()), time.perf_counter()
    usage = CpuMeter.usage(start, end)
    return {
        "window_s": round(ended - began, 3),
        "server_cpu_s_per_s": round(usage.server / (ended - began), 4),
        "cpu": usage.as_dict(),
    }


async def _measure(
    options: SubscriptionsOptions, stack: RunningStack, nats_url: str
) -> dict[str, Any]:
    settings = Settings().model_copy(update={"nats_url": nats_url})
    ids = Identifiers(options.seed if options.seed is not None else secrets.randbits(32))
    source_name = f"{stack.tag}src"
    source_url = with_application_name(options.database_url, source_name)
    source = TaskSource(settings, source_url, stack.base_url, options.source)
    monitor = await asyncpg.connect(options.database_url)
    try:
        async with partners(settings) as found:
            await source.start()
            async with http_client(stack.base_url, "", SETUP_CONCURRENCY * 2) as base:
                started = time.perf_counter()
                channels, parties, waited = await make_channels(base, stack, source, ids, options)
                populated = time.perf_counter() - started
                await subscribe_channels(base, stack, channels, found, settings, options)
            servers = {name: stack.pids[child] for name, child in SERVERS.items()}
            groups = {
                "postgres backends of the stack": stack.tag,
                "postgres backends of the source": source_name,
            }
            m = Measurement(
                source,
                found.ledger,
                CpuMeter(servers, programs=["postgres"]),
                backend_groups(monitor, groups),
                options,
            )
            checked = await sanity(channels, m)
            print(f"idle stack for {options.idle_seconds:g} s …", flush=True)
            idle = await idle_cpu(m.meter, m.backends, options.idle_seconds)
            limits, phases = [], []
            for rate in options.rates:
                print(f"raw NATS limit at {rate:g}/s …", flush=True)
                limit = await raw_nats_limit(nats_url, stack.pids["nats"], rate, options)
                limits.append(limit)
                for channel in channels:
                    print(f"phase {channel.name} at {rate:g} events/s …", flush=True)
                    phases.append(await measure_channel(channel, rate, m, limit, idle))
            seen = found.summary()
    finally:
        await source.stop()
        await monitor.close()
    return {
        "setup": {
            "waited_for_routing_s": round(waited, 3),
            "api_setup_s": round(populated, 2),
            "organisations": {
                "fastlege": parties.gp,
                **{f"bup ({c.name})": c.bup for c in channels},
            },
            "subscriptions": {c.name: c.subscription for c in channels},
            "referrals_per_channel": options.referrals,
            "sanity": checked,
        },
        "idle": idle,
        "limits": limits,
        "phases": phases,
        "partner": seen,
    }


def run(options: SubscriptionsOptions) -> tuple[dict[str, Any], Path | None]:
    """Run the whole benchmark; return the result and the JSON file it was written to.
    Ctrl-C raises KeyboardInterrupt after the cleanup."""
    result, data_dir, tag = new_result(
        "subscriptions", options.as_dict(), STACK_SERVICES, "postgresql"
    )
    started = result["timestamp"]
    try:
        environment = CrudOptions(database="postgresql", database_url=options.database_url)
        with bench_environment(environment, tag), allow_http():
            _run_stack(options, result, data_dir, tag)
    finally:
        result["cleanup"] = stack_cleanup("postgresql", options.database_url, data_dir, tag)
    result["errors_total"] = errors_total(result)
    result["errors_outside_windows"] = sum(
        p["errors_outside_window"] for p in result.get("phases", [])
    )
    path = None
    if options.out_dir is not None:
        path = write_json(result, options.out_dir, f"subscriptions-postgresql-{started}.json")
    return result, path


def _run_stack(
    options: SubscriptionsOptions, result: dict[str, Any], data_dir: Path, tag: str
) -> None:
    port = free_port()
    stack = LocalStack(data_dir, port, STACK_SERVICES)
    print(f"starting the stack in {data_dir} …", flush=True)
    try:
        stack.start()
        pids = {name: process.pid for name, process in stack.children}
        result["stack"]["pids"] = pids
        nats_url, _ = stack_nats_url(stack)
        print(
            f"{options.referrals} referrals per channel, rates"
            f" {', '.join(f'{r:g}' for r in options.rates)}/s: {options.warmup:g} s warm-up +"
            f" {options.seconds:g} s per channel …",
            flush=True,
        )
        running = RunningStack(f"http://127.0.0.1:{port}/fhir", data_dir, pids, tag)
        result.update(asyncio.run(_measure(options, running, nats_url)))
    finally:
        stack.stop()


def errors_total(result: Mapping[str, Any]) -> int:
    """Everything that makes the run not measure what it claims."""
    phases, limits = result.get("phases", []), result.get("limits", [])
    partner = result.get("partner", {})
    total = sum(int(p["errors"]) for p in phases)
    total += sum(int(limit[kind]["errors"]) for limit in limits for kind in ("core", "jetstream"))
    total += int(partner.get("unexpected_events", 0)) + int(partner.get("number_gaps", 0))
    total += sum(int(count) for count in partner.get("problems", {}).values())
    return total
