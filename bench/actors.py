"""Who a benchmark acts as: each write made with the credential a real deployment uses.

An organisation's kind is the operator's register's, never its token's: a token names only
the organisasjonsnummer, and the organisation takes part only once the operator has
registered it (an `Organization`, written only with the operator credential). Parental
responsibility (`RelatedPerson`) is the population register's, written only with the
register credential. Everything else an organisation writes with its own token. These
helpers make the three kinds of client on one aiohttp session (`HttpClient`), register
organisations as the operator before their first request, and build the `Caller` a
request of each would carry for the benchmarks that call a service in process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import orjson

from bench.load import HttpClient
from shared.auth.local_keys import CREDENTIAL_SCOPES, issue_credential, issue_token
from shared.transport.wire import Caller

OperatorCredential = Literal["operator", "register"]
ADMIT_CONCURRENCY = 8
"""Organisations registered at once (set-up only)."""


def organisation_client(
    base: HttpClient, data_dir: Path, orgnr: str, *, hpr: str | None = None
) -> HttpClient:
    """A client on `base`'s session with a token of the organisation `orgnr` (and the
    health person `hpr`, if given). Its kind is whatever the operator registered."""
    token = issue_token(data_dir, orgnr=orgnr, hpr=hpr)
    return HttpClient(base.session, base.base_url, token)


def credential_client(
    base: HttpClient, data_dir: Path, credential: OperatorCredential
) -> HttpClient:
    """A client on `base`'s session with the operator's or the population register's
    credential (signed with the operator key of the stack's data directory)."""
    token = issue_credential(data_dir, credential)
    return HttpClient(base.session, base.base_url, token)


async def admit(operator: HttpClient, organization: Mapping[str, Any]) -> str:
    """Register one Organization as the operator; its id. Raises when it is refused."""
    reply = await operator.call("POST", "/Organization", orjson.dumps(organization))
    created: Any = None
    if reply.ok:
        try:
            created = orjson.loads(reply.body)
        except orjson.JSONDecodeError:
            created = None
    if not isinstance(created, dict) or not isinstance(created.get("id"), str):
        raise RuntimeError(
            f"setup: the operator could not register an Organization:"
            f" {reply.status} {reply.body[:800]!r}"
        )
    return str(created["id"])


async def admit_all(operator: HttpClient, organizations: Sequence[Mapping[str, Any]]) -> list[str]:
    """Register several Organizations as the operator (a few at once); their ids, in order."""
    gate = asyncio.Semaphore(ADMIT_CONCURRENCY)

    async def one(organization: Mapping[str, Any]) -> str:
        async with gate:
            return await admit(operator, organization)

    return list(await asyncio.gather(*(one(o) for o in organizations)))


def organisation_caller(
    orgnr: str,
    kind: str,
    scopes: Sequence[str],
    *,
    hpr: str | None = None,
    client_id: str | None = None,
) -> Caller:
    """What the gateway hands a service for an organisation's token: the organisation,
    the kind its register entry states, the token's scopes (and HPR number)."""
    return Caller(
        credential="organisation",
        orgnr=orgnr,
        org_kind=kind,
        hpr=hpr,
        client_id=client_id or f"bench-{orgnr}",
        scopes=list(scopes),
    )


def person_caller(fhir_user: str, scopes: Sequence[str] = ()) -> Caller:
    """What the gateway hands a service for a person's token (a parent, `fhirUser`)."""
    return Caller(credential="person", fhir_user=fhir_user, scopes=list(scopes))


def credential_caller(credential: OperatorCredential) -> Caller:
    """What the gateway hands a service for an operator or register credential."""
    return Caller(
        credential=credential,
        client_id="barnebro-operator",
        scopes=CREDENTIAL_SCOPES[credential].split(),
    )
