"""Reading the answers, and the clients that drive referrals through their lifecycle."""

from __future__ import annotations

import asyncio
import copy
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.actors import credential_client, organisation_client
from bench.load import HttpClient, Recorder, Reply, Worker
from bench.referral.resources import moved, referral_bundle
from bench.referral.world import FIND_TASK, MOVES
from bench.report import (
    OpStats,
)
from services.referral.domain.vocabulary import (
    TaskStatus,
)


def reply_json(reply: Reply) -> dict[str, Any] | None:
    try:
        data = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def submitted_referral(reply: Reply) -> dict[str, Any] | None:
    """The ServiceRequest (with its id) in a transaction-response, or None."""
    for entry in (reply_json(reply) or {}).get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(resource, dict) and resource.get("resourceType") == "ServiceRequest":
            return resource if isinstance(resource.get("id"), str) else None
    return None


def only_task(reply: Reply) -> dict[str, Any] | None:
    """The one Task a search by focus found, or None if it found none or several."""
    found = [
        entry["resource"]
        for entry in (reply_json(reply) or {}).get("entry") or []
        if isinstance(entry, dict)
        and (entry.get("search") or {}).get("mode", "match") == "match"
        and (entry.get("resource") or {}).get("resourceType") == "Task"
    ]
    return found[0] if len(found) == 1 else None


def task_in(status: TaskStatus) -> Callable[[Reply], dict[str, Any] | None]:
    """A check that an update returned the Task, now in `status`."""

    def check(reply: Reply) -> dict[str, Any] | None:
        task = reply_json(reply)
        if task is None or task.get("resourceType") != "Task" or task.get("status") != status:
            return None
        return task

    return check


def etag(resource: Mapping[str, Any], headers: Mapping[str, str] | None = None) -> str:
    """The version to name in If-Match: the ETag header, else ``W/"<meta.versionId>"``."""
    for name, value in (headers or {}).items():
        if name.lower() == "etag":
            return value
    return f'W/"{(resource.get("meta") or {}).get("versionId", "")}"'


@dataclass(frozen=True)
class Parties:
    gp: str
    bup: str
    kommune: str
    gp_id: str
    """The GP office's Organization id (the children's generalPractitioner)."""


@dataclass(frozen=True)
class ReferralWorld:
    gp: HttpClient
    """The GP office's client (refers)."""
    bup: HttpClient
    """The BUP's client (finds and moves the Task)."""
    parties: Parties
    children: list[str]
    """The children's fødselsnummer."""


def with_header(client: HttpClient, name: str, value: str) -> HttpClient:
    """`client` (same session and token) sending one more header on writes."""
    conditional = copy.copy(client)
    conditional.write_headers = {**client.write_headers, name: value}
    return conditional


async def bench_request(
    client: HttpClient,
    recorder: Recorder,
    op: str,
    method: str,
    path: str,
    body: Mapping[str, Any] | None,
    expect: Callable[[Reply], dict[str, Any] | None],
) -> tuple[dict[str, Any], Reply] | None:
    """One request; recorded as a success only if it is 2xx and `expect` finds what it
    should return, else as an error with its body."""
    reply = await client.call(method, path, None if body is None else orjson.dumps(body))
    found = expect(reply) if reply.ok else None
    if found is None:
        why = reply.body if not reply.ok else b"unexpected answer: " + reply.body
        recorder.failure(op, method, path, reply.status, why)
        return None
    recorder.success(op, reply.latency)
    return found, reply


async def submit(world: ReferralWorld, fnr: str, recorder: Recorder) -> dict[str, Any] | None:
    """POST one referral transaction as the GP; the stored ServiceRequest, or None."""
    bundle = referral_bundle(fnr, world.parties.gp, world.parties.bup)
    done = await bench_request(world.gp, recorder, "submit", "POST", "", bundle, submitted_referral)
    return None if done is None else done[0]


async def lifecycle(world: ReferralWorld, fnr: str, recorder: Recorder) -> dict[str, Any] | None:
    """Submit, find the Task as the BUP and move it to completed; the final Task, or None
    at the first request that failed."""
    referral = await submit(world, fnr, recorder)
    if referral is None:
        return None
    path = f"/Task?focus=ServiceRequest/{referral['id']}"
    done = await bench_request(world.bup, recorder, FIND_TASK, "GET", path, None, only_task)
    if done is None:
        return None
    task, version = done[0], etag(done[0])
    for status in MOVES:
        client = with_header(world.bup, "If-Match", version)
        body = moved(task, status, world.parties.kommune)
        path = f"/Task/{task['id']}"
        done = await bench_request(
            client, recorder, status.value, "PUT", path, body, task_in(status)
        )
        if done is None:
            return None
        task, version = done[0], etag(done[0], done[1].headers)
    return task


def submit_worker(
    world: ReferralWorld, recorder: Recorder, lifecycles: OpStats, rng: random.Random
) -> Worker:
    """Submits referrals (`lifecycles` is unused: every worker takes the same arguments)."""

    async def run(stop: asyncio.Event) -> None:
        while not stop.is_set():
            await submit(world, rng.choice(world.children), recorder)

    return run


def lifecycle_worker(
    world: ReferralWorld, recorder: Recorder, lifecycles: OpStats, rng: random.Random
) -> Worker:
    """Runs lifecycles; one that ends (completed or failed) inside the window is counted
    in `lifecycles`: its latency, or as an error."""

    async def run(stop: asyncio.Event) -> None:
        while not stop.is_set():
            started = time.perf_counter()
            task = await lifecycle(world, rng.choice(world.children), recorder)
            if not recorder.measuring:
                continue
            if task is None:
                lifecycles.errors += 1
            else:
                lifecycles.latencies.append(time.perf_counter() - started)

    return run


WORKERS = {"submit": submit_worker, "lifecycle": lifecycle_worker}


@dataclass(frozen=True)
class RunningStack:
    """Where the started stack answers, its processes and this run's tag."""

    base_url: str
    data_dir: Path
    pids: Mapping[str, int]
    tag: str
    """``bench<random>``: the schema prefix and the PostgreSQL application_name."""

    def client(self, base: HttpClient, orgnr: str) -> HttpClient:
        """A client on `base`'s session with a token of the organisation `orgnr` (which
        names no kind: the operator's register states it)."""
        return organisation_client(base, self.data_dir, orgnr)

    def operator(self, base: HttpClient) -> HttpClient:
        """A client on `base`'s session with the operator's credential (registers
        organisations)."""
        return credential_client(base, self.data_dir, "operator")
