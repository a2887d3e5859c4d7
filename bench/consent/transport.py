"""Phase 5: the same read and search over NATS request/reply."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from nats.aio.client import Client as NATS

from bench.consent.checked import VARIANTS, Sender, compare, describe, read_request, search_request
from bench.consent.world import AIM, SERVICE, BenchDocument, ConsentBench, connect_nats
from shared.transport.forwarding import Forwarder
from shared.transport.service_host import ServiceHost
from shared.transport.wire import FhirRequest, FhirResponse, request_subject


def over_nats(forwarder: Forwarder, prefix: str) -> Sender:
    """Send a request as the gateway does: NATS request/reply to the type's subject."""

    async def send(request: FhirRequest) -> FhirResponse:
        subject = request_subject(prefix, request.resource_type or "")
        return await forwarder.send(subject, request, b"")

    return send


async def _transport_sanity(bench: ConsentBench, senders: Mapping[str, Sender]) -> dict[str, Any]:
    """Over NATS too: both reads answer 200 with the same bytes as in process; the checked
    one refuses an unrelated organisation (404)."""
    read = read_request(bench)
    expected = (await bench.unchecked.handle(read, b"")).body
    statuses = {}
    for variant in VARIANTS:
        response = await senders[variant](read)
        statuses[variant] = response.status
        if response.status != 200 or response.body != expected:
            raise RuntimeError(
                f"the {variant} read over NATS answered {response.status},"
                f" {'the same' if response.body == expected else 'different'} bytes"
            )
    stranger = bench.caller(orgnr=bench.population.unrelated[0])
    refused = await senders["checked"](read_request(bench, stranger))
    if refused.status != 404:
        raise RuntimeError(f"the checked read over NATS answered {refused.status} to a stranger")
    return {"read_status": statuses, "unrelated_read_status": refused.status}


async def measure_transport(bench: ConsentBench) -> dict[str, Any]:
    """The read and search of the ``read`` and ``search`` phases, but over NATS
    request/reply: a `ServiceHost` per service in this process, each on its own subject
    prefix, driven through a `Forwarder` (the gateway's client) on its own connection.
    The headline counts the CPU of this process and of nats-server, which carries every
    request and reply as well as the audit records."""
    options, settings = bench.options, bench.settings
    prefixes = {variant: f"{settings.nats_prefix}{variant[0]}" for variant in VARIANTS}
    services = {"unchecked": bench.unchecked, "checked": bench.checked}
    hosts = [
        ServiceHost(
            bench.nc,
            prefix=prefixes[variant],
            service=SERVICE,
            resource_types=[BenchDocument.resource_type],
            handler=services[variant].handle,
        )
        for variant in VARIANTS
    ]
    client: NATS | None = None
    problems: list[str] = []
    try:
        for host in hosts:
            await host.start()
        client = await connect_nats(options.nats_url, "barnebro-bench-consent-client")
        forwarder = Forwarder(client, settings.request_timeout)
        senders = {variant: over_nats(forwarder, prefixes[variant]) for variant in VARIANTS}
        sanity = await _transport_sanity(bench, senders)
        compared = {}
        for name, request in (("read", read_request(bench)), ("search", search_request(bench))):
            bench.interrupt.check()
            what = (
                f"Forwarder.send({describe(request)}) → nats-server → ServiceHost →"
                f" FhirRouter.handle, by organisation {request.caller.orgnr}"
                f" ({request.caller.org_kind}), permitted by consent"
            )
            compared[name] = await compare(bench, name, request, senders, what)
    finally:
        for variant, host in zip(VARIANTS, hosts, strict=True):
            await quietly(f"stop the {variant} ServiceHost", host.stop, problems)
        if client is not None:
            await quietly("close the client connection", client.close, problems)
    nats_counted = all(compared[n]["ratio_with_nats"] is not None for n in compared)
    for result in compared.values():
        if nats_counted:
            result["headline_ratio"] = result["ratio_with_nats"]
        else:
            result["headline_ratio"] = result["ratio_per_process_cpu_second"]
        result["aim_met"] = result["headline_ratio"] is not None and result["headline_ratio"] >= AIM
    return {
        "name": "transport",
        "what": "checked vs unchecked read and search over NATS request/reply"
        " (Forwarder → nats-server → ServiceHost → FhirService), all in this process"
        " except nats-server; no gateway, no HTTP",
        "prefixes": prefixes,
        "cpu_counted": (
            f"this process (client, both ServiceHosts, both FhirServices"
            f"{', SQLite' if options.database == 'sqlite' else ''}) + nats-server"
            if nats_counted
            else "this process only: the CPU of nats-server could not be read (not local?)"
        ),
        "headline": "per (process + nats-server) CPU-s" if nats_counted else "per process CPU-s",
        "sanity": sanity,
        "read": compared["read"],
        "search": compared["search"],
        "problems": problems,
    }


async def quietly(what: str, action: Callable[[], Awaitable[object]], problems: list[str]) -> None:
    """Run a stop step with a time limit; a failure is noted, not raised."""
    try:
        await asyncio.wait_for(action(), 30)
    except Exception as exc:
        problems.append(f"{what}: {exc!r}")
