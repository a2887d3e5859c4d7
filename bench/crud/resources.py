"""The resources of the CRUD chain and the requests that create, read, update, search
and delete them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from bench.crud.identifiers import Identifiers
from bench.crud.world import CHAIN, CLIENT_KIND, OWN_ORGANIZATION, WRITERS
from bench.load import (
    HttpClient,
    Recorder,
    Reply,
    Worker,
)
from shared.codes import (
    MUNICIPALITY_EXTENSION,
    ORGANISATION_KIND_SYSTEM,
    PARENTAL_RESPONSIBILITY_SYSTEM,
    ROLE_SYSTEM,
)
from shared.identifiers import FNR_SYSTEM, HPR_SYSTEM, KOMMUNENUMMER_SYSTEM, ORGNR_SYSTEM


def _ref(refs: Mapping[str, str], resource_type: str) -> dict[str, str]:
    return {"reference": f"{resource_type}/{refs[resource_type]}"}


def organization(orgnr: str, name: str) -> dict[str, Any]:
    """A BUP's Organization as the operator registers it."""
    return {
        "resourceType": "Organization",
        "identifier": [{"system": ORGNR_SYSTEM, "value": orgnr}],
        "active": True,
        "type": [{"coding": [{"system": ORGANISATION_KIND_SYSTEM, "code": CLIENT_KIND}]}],
        "name": name,
        "telecom": [{"system": "phone", "value": "+47 22 00 00 00", "use": "work"}],
        "address": [
            {
                "extension": [
                    {
                        "url": MUNICIPALITY_EXTENSION,
                        "valueCoding": {"system": KOMMUNENUMMER_SYSTEM, "code": "0301"},
                    }
                ],
                "line": ["Sognsvannsveien 21"],
                "postalCode": "0372",
                "city": "Oslo",
            }
        ],
    }


def build_resource(resource_type: str, refs: Mapping[str, str], ids: Identifiers) -> dict[str, Any]:
    """A realistic, valid instance of `resource_type` referring to the ids in `refs`
    (`refs[OWN_ORGANIZATION]`: the writing client's own Organization)."""
    if resource_type == "Organization":
        orgnr = ids.orgnr()
        return organization(orgnr, f"BUP Benk {orgnr}")
    if resource_type == "Practitioner":
        return {
            "resourceType": "Practitioner",
            "identifier": [{"system": HPR_SYSTEM, "value": ids.hpr()}],
            "active": True,
            "name": [{"family": "Hansen", "given": ["Kari"]}],
            "gender": "female",
            "telecom": [{"system": "email", "value": "kari.hansen@example.no"}],
        }
    if resource_type == "PractitionerRole":
        return {
            "resourceType": "PractitionerRole",
            "active": True,
            "practitioner": _ref(refs, "Practitioner"),
            "organization": {"reference": f"Organization/{refs[OWN_ORGANIZATION]}"},
            "code": [{"coding": [{"system": ROLE_SYSTEM, "code": "behandler"}]}],
        }
    if resource_type == "Patient":
        return {
            "resourceType": "Patient",
            "identifier": [{"system": FNR_SYSTEM, "value": ids.fnr()}],
            "active": True,
            "name": [{"family": "Nordmann", "given": ["Ola"]}],
            "gender": "male",
            "managingOrganization": _ref(refs, "Organization"),
            "generalPractitioner": [_ref(refs, "PractitionerRole")],
            "address": [{"line": ["Storgata 1"], "postalCode": "0155", "city": "Oslo"}],
        }
    if resource_type == "RelatedPerson":
        return {
            "resourceType": "RelatedPerson",
            "identifier": [{"system": FNR_SYSTEM, "value": ids.fnr()}],
            "active": True,
            "patient": _ref(refs, "Patient"),
            "relationship": [
                {"coding": [{"system": PARENTAL_RESPONSIBILITY_SYSTEM, "code": "felles"}]}
            ],
            "name": [{"family": "Nordmann", "given": ["Kari"]}],
        }
    raise ValueError(f"no builder for {resource_type}")


def _parsed(reply: Reply) -> dict[str, Any] | None:
    """The resource a successful create returned, or None if it returned none."""
    try:
        data = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        return None
    return data if isinstance(data, dict) and isinstance(data.get("id"), str) else None


@dataclass(frozen=True)
class Actors:
    """The clients of a run (one aiohttp session) and the client's own Organization."""

    operator: HttpClient
    client: HttpClient
    register: HttpClient
    own_organization: str
    """The id of the client organisation's Organization (registered by the operator)."""

    def writer(self, resource_type: str) -> HttpClient:
        """The client that may write `resource_type` (``WRITERS``)."""
        clients = {"operator": self.operator, "client": self.client, "register": self.register}
        return clients[WRITERS[resource_type]]


async def create(
    actors: Actors,
    resource_type: str,
    refs: Mapping[str, str],
    ids: Identifiers,
    recorder: Recorder,
) -> dict[str, Any] | None:
    path = f"/{resource_type}"
    known = {OWN_ORGANIZATION: actors.own_organization, **refs}
    body = orjson.dumps(build_resource(resource_type, known, ids))
    reply = await actors.writer(resource_type).call("POST", path, body)
    resource = _parsed(reply) if reply.ok else None
    if reply.ok and resource is None:
        recorder.failure("create", "POST", path, reply.status, b"no resource with an id returned")
        return None
    recorder.record("create", resource_type, "POST", path, reply)
    return resource


async def run_chain(
    actors: Actors, ids: Identifiers, recorder: Recorder, stop: asyncio.Event
) -> bool:
    """One iteration: create the chain, read, update and delete each; True if all 20 worked.
    Every request about a type is made by that type's writer (``WRITERS``).

    Returns early (False) when `stop` is set. When a create fails, the resources already
    created are still read, updated and deleted.
    """
    refs: dict[str, str] = {}
    created: list[tuple[str, dict[str, Any]]] = []
    complete = True
    for resource_type in CHAIN:
        if stop.is_set():
            return False
        resource = await create(actors, resource_type, refs, ids, recorder)
        if resource is None:
            complete = False
            break
        refs[resource_type] = resource["id"]
        created.append((resource_type, resource))
    for resource_type, resource in created:
        if stop.is_set():
            return False
        path = f"/{resource_type}/{resource['id']}"
        reply = await actors.writer(resource_type).call("GET", path)
        complete &= recorder.record("read", resource_type, "GET", path, reply)
    for resource_type, resource in created:
        if stop.is_set():
            return False
        path = f"/{resource_type}/{resource['id']}"
        changed = {**resource, "active": False}
        reply = await actors.writer(resource_type).call("PUT", path, orjson.dumps(changed))
        complete &= recorder.record("update", resource_type, "PUT", path, reply)
    for resource_type, resource in reversed(created):
        if stop.is_set():
            return False
        path = f"/{resource_type}/{resource['id']}"
        reply = await actors.writer(resource_type).call("DELETE", path)
        complete &= recorder.record("delete", resource_type, "DELETE", path, reply)
    return complete


def crud_worker(actors: Actors, ids: Identifiers, recorder: Recorder) -> Worker:
    async def run(stop: asyncio.Event) -> None:
        while not stop.is_set():
            if await run_chain(actors, ids, recorder, stop) and recorder.measuring:
                recorder.chains += 1

    return run


@dataclass(frozen=True)
class SampleRead:
    """A real Patient read: the paths to read and the bytes and headers one returned."""

    paths: list[str]
    body: bytes
    headers: dict[str, str]


async def seed_patients(actors: Actors, ids: Identifiers, count: int) -> SampleRead:
    """Create `count` Patients (with their organisation and fastlege) for the read phase;
    the client registers them, so it reads them on its relation to each child."""
    client = actors.client
    recorder = Recorder(measuring=True)
    refs: dict[str, str] = {}
    for resource_type in ("Organization", "Practitioner", "PractitionerRole"):
        resource = await create(actors, resource_type, refs, ids, recorder)
        if resource is None:
            raise RuntimeError(
                f"could not create the read phase's {resource_type}: {recorder.samples}"
            )
        refs[resource_type] = resource["id"]
    paths = []
    for _ in range(count):
        resource = await create(actors, "Patient", refs, ids, recorder)
        if resource is None:
            raise RuntimeError(f"could not create the read phase's Patients: {recorder.samples}")
        paths.append(f"/Patient/{resource['id']}")
    reply = await client.call("GET", paths[0])
    if not reply.ok:
        raise RuntimeError(f"could not read {paths[0]}: {reply.status} {reply.body[:500]!r}")
    keep = ("Content-Type", "ETag", "Last-Modified")
    headers = {name: reply.headers[name] for name in keep if name in reply.headers}
    return SampleRead(paths, reply.body, headers)


async def wait_until_served(writers: Mapping[str, HttpClient], limit: float = 60.0) -> float:
    """Wait until the gateway routes every type in `writers` (type → the client that asks
    for it); return the seconds waited.

    The stack counts as started once the gateway answers /healthz, but the gateway learns
    which service owns a type from the registry, which the directory fills only when it
    is up: until then a request gets 404 "not supported". The benchmark must not count that.
    """
    started = time.perf_counter()
    deadline = started + limit
    for resource_type, client in writers.items():
        while True:
            reply = await client.call("GET", f"/{resource_type}?_count=1")
            if reply.ok:
                break
            if time.perf_counter() > deadline:
                raise RuntimeError(
                    f"the stack does not serve {resource_type} after {limit:g} s:"
                    f" {reply.status} {reply.body[:500]!r}"
                )
            await asyncio.sleep(0.1)
    return time.perf_counter() - started
