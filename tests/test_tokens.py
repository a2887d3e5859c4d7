"""Bearer tokens as HelseID issues them: RS256, keys from a JWKS URL, HelseID claim names."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from services.stack import free_port
from shared.auth.tokens import TokenVerifier
from shared.fhir.errors import FhirError

ISSUER = "https://helseid-sts.test.example"


@pytest.fixture
def signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
async def jwks_url(signing_key: rsa.RSAPrivateKey) -> AsyncIterator[str]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(signing_key.public_key()))
    jwk.update({"kid": "helseid-1", "alg": "RS256", "use": "sig"})
    served = {"count": 0}

    async def jwks(request: web.Request) -> web.Response:
        served["count"] += 1
        return web.json_response({"keys": [jwk]})

    app = web.Application()
    app.router.add_get("/jwks", jwks)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}/jwks"
    finally:
        await runner.cleanup()


def helseid_token(key: rsa.RSAPrivateKey, **claims: object) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": "barnebro", "exp": now + 300, "iat": now,
            "scope": "system/Patient.rs", **claims}  # fmt: skip
    return jwt.encode(body, key, algorithm="RS256", headers={"kid": "helseid-1"})


async def test_rs256_token_verified_with_keys_from_a_jwks_url(
    signing_key: rsa.RSAPrivateKey, jwks_url: str
) -> None:
    verifier = TokenVerifier(issuer=ISSUER, audience="barnebro", jwks_url=jwks_url)
    caller = await verifier.verify(
        helseid_token(
            signing_key,
            **{
                "helseid://claims/client/claims/orgnr_parent": "974760673",
                "helseid://claims/client/claims/orgnr_child": "912345675",
                "helseid://claims/hpr/hpr_number": "565501872",
                "client_id": "bup-epj",
            },
        )
    )
    assert caller.orgnr == "912345675", "the unit (orgnr_child) is the acting organisation"
    assert caller.hpr == "565501872"
    assert caller.client_id == "bup-epj"
    assert caller.scopes == ["system/Patient.rs"]
    assert caller.org_kind is None, "HelseID does not say the kind; the gateway looks it up"

    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(FhirError) as forged:
        await verifier.verify(helseid_token(other_key))
    assert forged.value.status == 401
    with pytest.raises(FhirError) as expired:
        await verifier.verify(helseid_token(signing_key, exp=int(time.time()) - 5))
    assert expired.value.status == 401


def without(claim: str, token: str, key: rsa.RSAPrivateKey) -> str:
    claims = jwt.decode(token, options={"verify_signature": False})
    del claims[claim]
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "helseid-1"})


REJECTED: dict[str, tuple[Any, str]] = {
    "not a JWT": (lambda k: "garbage", "The token is malformed"),
    "segments of junk": (lambda k: "a.b.c", "The token is malformed"),
    "not ASCII": (lambda k: "æøå.æøå.æøå", "The token is malformed"),
    "signed by another key": (
        lambda k: helseid_token(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "The token's signature does not verify",
    ),
    "expired": (
        lambda k: helseid_token(k, exp=int(time.time()) - 5),
        "The token has expired",
    ),
    "not valid yet": (
        lambda k: helseid_token(k, nbf=int(time.time()) + 300),
        "The token is not valid yet",
    ),
    "another issuer": (
        lambda k: helseid_token(k, iss="https://elsewhere.example"),
        "The token's issuer is not accepted here",
    ),
    "another audience": (
        lambda k: helseid_token(k, aud="someone-else"),
        "The token's audience is not this server",
    ),
    "no exp": (lambda k: without("exp", helseid_token(k), k), "The token has no exp claim"),
    "exp not a number": (lambda k: helseid_token(k, exp="soon"), "The token is malformed"),
    "HS256": (
        lambda k: jwt.encode(
            {"iss": ISSUER}, "a shared secret that proves nothing at all", algorithm="HS256"
        ),
        "The token's algorithm is not accepted",
    ),
    "client_id not a string": (
        lambda k: helseid_token(k, client_id=123),
        "The token's claims are not valid",
    ),
}


@pytest.mark.parametrize("case", sorted(REJECTED))
async def test_each_rejection_is_told_in_our_own_words(
    signing_key: rsa.RSAPrivateKey, jwks_url: str, case: str
) -> None:
    """The JWT library's wording ("Not enough segments", "Signature verification failed")
    never reaches the caller: each failure has one short message, and stays a 401."""
    make, said = REJECTED[case]
    verifier = TokenVerifier(issuer=ISSUER, audience="barnebro", jwks_url=jwks_url)
    with pytest.raises(FhirError) as refused:
        await verifier.verify(make(signing_key))
    assert refused.value.status == 401
    assert [issue.diagnostics for issue in refused.value.issues] == [said]
    assert refused.value.headers["WWW-Authenticate"] == 'Bearer realm="barnebro"'
