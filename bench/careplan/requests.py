"""The world made through the API, and the requests the phases send."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import orjson

from bench.careplan.world import (
    ROUTED_TYPES,
    SETUP_CONCURRENCY,
    Check,
    Organisations,
    SeededChild,
    activity,
    child_member,
    coordinator_path,
    found_coordinator,
    member,
)
from bench.crud import (
    Identifiers,
)
from bench.load import HttpClient, Recorder, Reply, Worker
from bench.referral import (
    bench_request,
    etag,
    org_reference,
    with_header,
)
from services.careplan.domain.vocabulary import (
    CATEGORY_SYSTEM,
    NEXT_REVISION_EXT,
    REGIME_EXT,
    PlanCategory,
)
from shared.identifiers import FNR_SYSTEM


def registered_patient(fnr: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": FNR_SYSTEM, "value": fnr}],
        "active": True,
        "name": [{"family": "Nordmann", "given": ["Ola"]}],
    }


def api_plan(
    subject: Mapping[str, Any],
    bup: str,
    kommune: str,
    day: date,
    care_team: str | None = None,
) -> dict[str, Any]:
    """A behandlingsplan as the BUP `bup` posts it (the service resolves the child
    `subject`, sets the author), shared with the kommune-helse `kommune` (a school would
    need the family's consent), with its ansvarsgruppe `care_team` (a reference) if given."""
    plan: dict[str, Any] = {
        "resourceType": "CarePlan",
        "extension": [
            {"url": REGIME_EXT, "valueCode": "helse"},
            {"url": NEXT_REVISION_EXT, "valueDate": (day + timedelta(days=90)).isoformat()},
        ],
        "status": "active",
        "intent": "plan",
        "category": [
            {"coding": [{"system": CATEGORY_SYSTEM, "code": PlanCategory.BEHANDLINGSPLAN.value}]}
        ],
        "subject": dict(subject),
        "period": {"start": day.isoformat()},
        "contributor": [org_reference(kommune)],
        "activity": [activity("Samtaler hos BUP", bup, "1 time i uka")],
    }
    if care_team is not None:
        plan["careTeam"] = [{"reference": care_team}]
    return plan


def api_team(subject: Mapping[str, Any], child: str, coordinator: str, day: date) -> dict[str, Any]:
    """An ansvarsgruppe as its coordinator posts it: about the child `subject`, with the
    organisation `coordinator` (the team's author, which needs no consent to take part)
    and the child itself (`child`: its Patient reference) as members from `day`."""
    return {
        "resourceType": "CareTeam",
        "status": "active",
        "subject": dict(subject),
        "participant": [member(coordinator, "koordinator", day), child_member(child, day)],
    }


def revised(plan: Mapping[str, Any], revision: int, day: date) -> dict[str, Any]:
    """`plan` with a new activity description and next-revision date (a revision)."""
    changed = orjson.loads(orjson.dumps(plan))
    changed["activity"][0]["detail"]["description"] = f"Samtaler hos BUP, revisjon {revision}"
    when = (day + timedelta(days=60 + revision % 120)).isoformat()
    changed["extension"] = [
        {**e, "valueDate": when} if e.get("url") == NEXT_REVISION_EXT else e
        for e in changed.get("extension") or []
    ]
    return dict(changed)


def updated_plan(description: str) -> Check:
    """A check that an update returned the CarePlan carrying `description`."""

    def check(reply: Reply) -> dict[str, Any] | None:
        try:
            plan = orjson.loads(reply.body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(plan, dict) or plan.get("resourceType") != "CarePlan":
            return None
        activity = (plan.get("activity") or [{}])[0].get("detail") or {}
        return plan if activity.get("description") == description else None

    return check


def _created(reply: Reply) -> dict[str, Any] | None:
    try:
        data = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) and isinstance(data.get("id"), str) else None


async def _create(client: HttpClient, resource: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """POST a resource; the stored resource and its ETag."""
    path = f"/{resource['resourceType']}"
    reply = await client.call("POST", path, orjson.dumps(resource))
    created = _created(reply) if reply.ok else None
    if created is None:
        raise RuntimeError(f"setup: POST {path} -> {reply.status}: {reply.body[:800]!r}")
    return created, etag(created, reply.headers)


async def wait_until_routed(
    client: HttpClient, types: Sequence[str] = ROUTED_TYPES, limit: float = 60.0
) -> float:
    """Wait until the gateway routes `types` for `client`; the seconds waited."""
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


@dataclass
class PlanState:
    """The last version of an API-created plan its client has seen."""

    plan: dict[str, Any]
    etag: str


@dataclass(frozen=True)
class CareplanWorld:
    orgs: Organisations
    day: date
    bups: Mapping[str, HttpClient]
    """A client per BUP of the seeded teams, and the stranger's."""
    seeded: Sequence[SeededChild]
    plans: list[PlanState]
    """The API-created plans the update phase revises (by their owners)."""
    revisions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


async def populate(
    client: HttpClient, ids: Identifiers, orgs: Organisations, count: int, day: date
) -> list[PlanState]:
    """Register `count` children in the directory and create a plan for each as the BUP
    `client` acts for."""
    gate = asyncio.Semaphore(SETUP_CONCURRENCY)

    async def one(fnr: str) -> PlanState:
        async with gate:
            await _create(client, registered_patient(fnr))
            subject = {"identifier": {"system": FNR_SYSTEM, "value": fnr}}
            plan, version = await _create(
                client, api_plan(subject, orgs.bups[0], orgs.kommuner[0], day)
            )
            return PlanState(plan, version)

    return list(await asyncio.gather(*(one(ids.fnr()) for _ in range(count))))


async def update(world: CareplanWorld, state: PlanState, recorder: Recorder) -> bool:
    """PUT one revision of a plan with If-Match; the state follows the answer."""
    body = revised(state.plan, next(world.revisions), world.day)
    description = body["activity"][0]["detail"]["description"]
    client = with_header(world.bups[world.orgs.bups[0]], "If-Match", state.etag)
    path = f"/CarePlan/{state.plan['id']}"
    done = await bench_request(
        client, recorder, "update", "PUT", path, body, updated_plan(description)
    )
    if done is None:
        return False
    state.plan, state.etag = done[0], etag(done[0], done[1].headers)
    return True


def expected_coordinator(index: int, world: CareplanWorld) -> Check:
    child, orgs = world.seeded[index], world.orgs
    wanted = {"team": child.team, "coordinator": orgs.coordinator_of(index)}

    def check(reply: Reply) -> dict[str, Any] | None:
        found = found_coordinator(reply, world.day)
        return found if found == wanted else None

    return check


async def ask_coordinator(world: CareplanWorld, index: int, recorder: Recorder) -> bool:
    """As the child's BUP: who coordinates today? Must be the seeded answer."""
    child = world.seeded[index]
    client = world.bups[world.orgs.bup_of(index)]
    path = coordinator_path(child.patient, world.day)
    check = expected_coordinator(index, world)
    return (
        await bench_request(client, recorder, "coordinator", "GET", path, None, check) is not None
    )


def update_worker(
    world: CareplanWorld, recorder: Recorder, client: int, clients: int, rng: random.Random
) -> Worker:
    """Revises its own share of the plans (`client`-th of every `clients`), in turn."""
    own = world.plans[client::clients]

    async def run(stop: asyncio.Event) -> None:
        for state in itertools.cycle(own):
            if stop.is_set():
                return
            await update(world, state, recorder)

    return run


def coordinator_worker(
    world: CareplanWorld, recorder: Recorder, client: int, clients: int, rng: random.Random
) -> Worker:
    """Asks who coordinates for random seeded children."""

    async def run(stop: asyncio.Event) -> None:
        while not stop.is_set():
            await ask_coordinator(world, rng.randrange(len(world.seeded)), recorder)

    return run


WORKERS = {"update": update_worker, "coordinator": coordinator_worker}


async def sanity(world: CareplanWorld) -> dict[str, Any]:
    """Before anything is measured: an update works, a coordinator answer is right, a BUP
    on no team finds nothing, a seeded plan can be read by its author."""
    recorder = Recorder(measuring=True)
    if not await update(world, world.plans[0], recorder):
        raise RuntimeError(f"a plan update fails before the measurement: {recorder.samples}")
    child = world.seeded[0]
    path = coordinator_path(child.patient, world.day)
    answer = await world.bups[world.orgs.bup_of(0)].call("GET", path)
    found = expected_coordinator(0, world)(answer) if answer.ok else None
    if found is None:
        raise RuntimeError(
            f"the coordinator search {path} answers {answer.status} {answer.body[:800]!r},"
            f" not CareTeam/{child.team} coordinated by {world.orgs.coordinator_of(0)}"
        )
    hidden = await world.bups[world.orgs.stranger].call("GET", path)
    if not hidden.ok or found_coordinator(hidden, world.day) is not None:
        raise RuntimeError(
            f"a BUP on no team gets {hidden.status} {hidden.body[:300]!r} for {path}:"
            " the access filter does not hold"
        )
    read = await world.bups[world.orgs.bup_of(0)].call("GET", f"/CarePlan/{child.plan}")
    if not read.ok:
        raise RuntimeError(f"a seeded plan cannot be read: {read.status} {read.body[:300]!r}")
    return {
        "updated_version": (world.plans[0].plan.get("meta") or {}).get("versionId"),
        "coordinator_path": path,
        "coordinator": found,
        "stranger_status": hidden.status,
        "seeded_plan_read_status": read.status,
    }
