"""Authentication, scopes, and what the gateway does when services are missing, slow or
split across a transaction."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import jwt
import nats
import orjson
import pytest
from nats.aio.msg import Msg

from shared.access.permissions import TABLE, Actor, Rule, cells
from shared.auth.local_keys import KEY_FILE, key_dir
from shared.fhir.definitions import ResourceDefinition
from shared.fhir.search_params import ParamType, SearchParam
from shared.runtime import ServiceRuntime, ServiceSpec
from shared.transport.service_host import register_capabilities
from tests.support import Stack, outbox_ids


def sign(stack: Stack, claims: dict[str, Any], algorithm: str = "ES256") -> str:
    key = (key_dir(stack.settings.data_dir) / KEY_FILE).read_bytes()
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": "barnebro-local-1"})


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": "barnebro-local",
        "aud": "barnebro",
        "exp": now + 60,
        "iat": now,
        "scope": "system/*.cruds",
    }
    base.update(overrides)
    return base


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_missing_or_bad_tokens_are_401(stack: Stack) -> None:
    missing = await stack.call("GET", "Patient", authenticated=False)
    assert missing.status == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert missing.issues()[0]["code"] == "login"
    for token in (
        "not-a-jwt",
        sign(stack, claims(exp=int(time.time()) - 10)),
        sign(stack, claims(aud="someone-else")),
        sign(stack, claims(iss="https://evil.example")),
        jwt.encode(claims(), "a-shared-secret-that-is-long-enough-for-hs256", algorithm="HS256"),
        stack.token()[:-4] + "AAAA",
    ):
        reply = await stack.call("GET", "Patient", token=token)
        assert reply.status == 401, token
    assert (await stack.call("GET", "metadata", authenticated=False)).status == 200


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_scopes_are_enforced_per_interaction_and_type(stack: Stack) -> None:
    read_only = stack.token(scope="system/Patient.rs")
    assert (await stack.call("GET", "Patient", token=read_only)).status == 200
    denied = await stack.call("POST", "Patient", {"resourceType": "Patient"}, token=read_only)
    assert denied.status == 403
    assert "system/Patient.c" in denied.issues()[0]["diagnostics"]
    other_type = await stack.call("GET", "Organization", token=read_only)
    assert other_type.status == 403
    v1 = stack.token(scope="system/Practitioner.write system/Practitioner.read")
    created = await stack.call("POST", "Practitioner", {"resourceType": "Practitioner"}, token=v1)
    assert created.status == 201
    batch = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": "Patient"}},
            {"request": {"method": "GET", "url": "Organization"}},
        ],
    }
    reply = await stack.call("POST", "", batch, token=read_only)
    assert [e["response"]["status"] for e in reply.json()["entry"]] == ["200", "403"]


async def last_actor(stack: Stack) -> dict[str, Any]:
    assert stack.directory.db is not None
    async with stack.directory.db.reader() as conn:
        row = await conn.fetchrow("SELECT payload FROM outbox ORDER BY seq DESC LIMIT 1")
    assert row is not None
    actor: dict[str, Any] = orjson.loads(bytes(row[0]))["data"]["actor"]
    return actor


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_helseid_claim_names_reach_the_service_with_the_kind_from_the_directory(
    stack: Stack,
) -> None:
    helseid = claims(
        **{
            "helseid://claims/client/claims/orgnr_parent": "974760673",
            "helseid://claims/hpr/hpr_number": "565501872",
            "client_id": "epj-bup",
            "barnebro:org_kind": "barnevernstjeneste",  # never read: the register decides
        }
    )
    refused = await stack.call(
        "POST", "Practitioner", {"resourceType": "Practitioner"}, token=sign(stack, helseid)
    )
    assert refused.status == 403, "an organisation the directory does not know may do nothing"
    assert "974760673 is not registered in barnebro" in refused.issues()[0]["diagnostics"]
    assert await outbox_ids(stack) == set(), "nothing was written"

    bup = {
        "resourceType": "Organization",
        "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.101", "value": "974760673"}],
        "type": [{"coding": [{"system": "https://fhir.barnebro.no/CodeSystem/organisation-kind",
                              "code": "bup"}]}],
    }  # fmt: skip
    registered = await stack.call("POST", "Organization", bup, token=stack.operator_token())
    assert registered.status == 201
    assert stack.gateway.gateway is not None
    stack.gateway.gateway.kinds.forget()
    again = claims(**{**helseid, "jti": "second"})
    created = await stack.call(
        "POST", "Practitioner", {"resourceType": "Practitioner"}, token=sign(stack, again)
    )
    assert created.status == 201
    assert await last_actor(stack) == {
        "orgnr": "974760673",
        "org_kind": "bup",
        "hpr": "565501872",
        "client_id": "epj-bup",
        "scopes": ["system/*.cruds"],
    }, "the kind is the register's, whatever the token says"


class ObservationDefinition(ResourceDefinition):
    resource_type = "Observation"
    search_params = (SearchParam("code", ParamType.TOKEN, ("code",)),)


def permit_observations(monkeypatch: pytest.MonkeyPatch) -> None:
    """Give the test service's type its row in the permission table, as every service's
    type has one (a type missing from the table is refused to every caller):
    organisations of every kind read and write it."""
    orgs = (Actor.HEALTH, Actor.BARNEVERNSTJENESTE, Actor.BARNEVERN, Actor.PARTNER)
    actions = ("read", "search", "create", "update")
    monkeypatch.setitem(TABLE, "Observation", {a: cells(Rule.ALL, *orgs) for a in actions})


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_transaction_across_two_services_is_refused(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = stack.settings.model_copy(update={"data_dir": tmp_path / "other"})
    other = ServiceRuntime(ServiceSpec("observations", [ObservationDefinition()]), settings)
    await other.start()
    try:
        await stack.gateway.gateway.registry.refresh()  # type: ignore[union-attr]
        observation = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
        }
        unlisted = await stack.call("POST", "Observation", observation)
        assert unlisted.status == 403, "a type missing from the permission table is refused"
        assert "may not create Observation" in unlisted.issues()[0]["diagnostics"]
        permit_observations(monkeypatch)
        alone = await stack.call("POST", "Observation", observation)
        assert alone.status == 201, alone.body
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": {"resourceType": "Practitioner"},
                 "request": {"method": "POST", "url": "Practitioner"}},
                {"resource": observation, "request": {"method": "POST", "url": "Observation"}},
            ],
        }  # fmt: skip
        refused = await stack.call("POST", "", bundle)
        assert refused.status == 400
        diagnostics = refused.issues()[0]["diagnostics"]
        assert "directory" in diagnostics and "observations" in diagnostics
        left = (await stack.call("GET", "Practitioner?_total=accurate")).json()
        assert left["total"] == 0
        batch = {**bundle, "type": "batch"}
        both = await stack.call("POST", "", batch)
        assert [e["response"]["status"] for e in both.json()["entry"]] == ["201", "201"]
    finally:
        await other.stop()
    gone = await stack.call("GET", "Observation")
    assert gone.status == 503
    assert gone.headers["Retry-After"] == "1"
    assert gone.issues()[0]["code"] == "transient"


class ClientIdObservationDefinition(ObservationDefinition):
    update_create = True


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_update_creates_where_the_service_allows_client_ids(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    permit_observations(monkeypatch)
    settings = stack.settings.model_copy(update={"data_dir": tmp_path / "other"})
    other = ServiceRuntime(ServiceSpec("observations", [ClientIdObservationDefinition()]), settings)
    await other.start()
    try:
        assert stack.gateway.gateway is not None
        await stack.gateway.gateway.registry.refresh()
        body = {"resourceType": "Observation", "id": "obs-1", "status": "final",
                "code": {"text": "x"}}  # fmt: skip
        first = await stack.call("PUT", "Observation/obs-1", body)
        assert first.status == 201 and first.headers["ETag"] == 'W/"1"'
        second = await stack.call("PUT", "Observation/obs-1", body)
        assert second.status == 200 and second.headers["ETag"] == 'W/"2"'
        statement = (await stack.call("GET", "metadata", authenticated=False)).json()
        observation = next(
            r for r in statement["rest"][0]["resource"] if r["type"] == "Observation"
        )
        assert observation["updateCreate"] is True
    finally:
        await other.stop()


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_service_that_does_not_answer_gives_504(stack: Stack) -> None:
    settings = stack.settings
    nc = await nats.connect(settings.nats_url)
    hanging: list[Msg] = []

    async def never_answer(msg: Msg) -> None:
        hanging.append(msg)

    await nc.subscribe(f"{settings.nats_prefix}.fhir.Observation", cb=never_answer)
    await register_capabilities(
        nc,
        settings.registry_bucket,
        "slow",
        {"service": "slow", "resources": [{"type": "Observation"}]},
    )
    assert stack.gateway.gateway is not None
    await stack.gateway.gateway.registry.refresh()
    stack.gateway.gateway.forwarder._timeout = 0.5
    try:
        started = time.monotonic()
        reply = await stack.call("GET", "Observation")
        assert reply.status == 504
        assert time.monotonic() - started < 5
        assert "did not answer" in reply.issues()[0]["diagnostics"]
        assert len(hanging) == 1
    finally:
        await nc.close()


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_many_concurrent_requests_are_all_answered(stack: Stack) -> None:
    await stack.admit("974760673", "bup")  # registered before, so only the requests race
    replies = await asyncio.gather(
        *(
            stack.call("POST", "Practitioner", {"resourceType": "Practitioner",
                                                "name": [{"family": f"C{i}"}]})
            for i in range(100)
        )
    )  # fmt: skip
    assert [r.status for r in replies] == [201] * 100
    total = (await stack.call("GET", "Practitioner?_total=accurate&_count=0")).json()["total"]
    assert total == 100


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a_register_that_cannot_answer_gives_503_never_not_registered(
    stack: Stack,
) -> None:
    """The caller's kind comes from the directory; a directory that fails is the
    deployment's trouble (503, try again), never the caller's "not registered" (403)."""
    bearer = stack.token(orgnr="974760673", kind="bup")
    # Consents are the consent service's, which keeps running without the directory.
    assert (await stack.call("GET", "Consent", token=bearer)).status == 200
    assert stack.gateway.gateway is not None
    stack.gateway.gateway.kinds.forget()
    await stack.directory.stop()
    try:
        reply = await stack.call("GET", "Consent", token=bearer)
        assert reply.status == 503, reply.body
        assert reply.headers.get("Retry-After") == "1"
        assert "register of organisations cannot answer" in reply.issues()[0]["diagnostics"]
    finally:
        await stack.directory.start()
    await stack.gateway.gateway.registry.refresh()
    assert (await stack.call("GET", "Consent", token=bearer)).status == 200
