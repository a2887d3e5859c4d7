"""Setting up the benchmark's world through the API, and checking it before measuring."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from bench.actors import admit_all
from bench.crud import (
    Identifiers,
)
from bench.load import HttpClient, Recorder
from bench.referral.clients import Parties, ReferralWorld, RunningStack, lifecycle, reply_json
from bench.referral.resources import organisation, patient
from bench.referral.world import ROUTED_TYPES, SETUP_CONCURRENCY
from shared.codes import OrganisationKind


async def _create(client: HttpClient, resource: Mapping[str, Any]) -> str:
    path = f"/{resource['resourceType']}"
    reply = await client.call("POST", path, orjson.dumps(resource))
    created = reply_json(reply) if reply.ok else None
    if created is None or not isinstance(created.get("id"), str):
        raise RuntimeError(f"setup: POST {path} -> {reply.status}: {reply.body[:800]!r}")
    return str(created["id"])


async def wait_until_routed(
    client: HttpClient, types: Sequence[str] = ROUTED_TYPES, limit: float = 60.0
) -> float:
    """Wait until the gateway routes every type in `types` for `client`; the seconds
    waited.

    The gateway learns which service owns a type from the registry, which each service
    fills when it is up; until then a request gets 404 "not supported"."""
    started = time.perf_counter()
    for resource_type in types:
        while not (reply := await client.call("GET", f"/{resource_type}?_count=1")).ok:
            if time.perf_counter() - started > limit:
                raise RuntimeError(
                    f"the stack does not serve {resource_type} after {limit:g} s:"
                    f" {reply.status} {reply.body[:500]!r}"
                )
            await asyncio.sleep(0.1)
    return time.perf_counter() - started


async def populate(
    stack: RunningStack, base: HttpClient, ids: Identifiers, children: int
) -> tuple[Parties, list[str], float]:
    """The three organisations, registered by the operator, and `children` children
    registered by the GP office with itself as their GP; also the seconds waited for the
    gateway to route the types the benchmark uses."""
    operator = stack.operator(base)
    waited = await wait_until_routed(operator, ("Organization",))
    gp, bup, kommune = ids.orgnr(), ids.orgnr(), ids.orgnr()
    gp_id, _, _ = await admit_all(
        operator,
        [
            organisation(gp, OrganisationKind.FASTLEGE),
            organisation(bup, OrganisationKind.BUP),
            organisation(kommune, OrganisationKind.KOMMUNE_HELSE),
        ],
    )
    registrar = stack.client(base, gp)
    waited += await wait_until_routed(registrar)
    fnrs = [ids.fnr() for _ in range(children)]
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def register(fnr: str) -> None:
        async with gate:
            await _create(registrar, patient(fnr, gp_id))

    await asyncio.gather(*(register(fnr) for fnr in fnrs))
    return Parties(gp, bup, kommune, gp_id), fnrs, waited


async def sanity(world: ReferralWorld) -> dict[str, Any]:
    """One lifecycle before anything is measured: it must complete as the rules say."""
    recorder = Recorder(measuring=True)
    task = await lifecycle(world, world.children[0], recorder)
    if task is None:
        samples = [s.as_dict() for s in recorder.samples]
        raise RuntimeError(f"a referral lifecycle fails before the measurement: {samples}")
    step = ((task.get("businessStatus") or {}).get("coding") or [{}])[0].get("code")
    if step != "utskrevet":
        raise RuntimeError(f"the completed Task's businessStatus is {step!r}, not utskrevet")
    return {
        "requests": recorder.successes,
        "task_status": task["status"],
        "business_status": step,
        "version": (task.get("meta") or {}).get("versionId"),
    }
