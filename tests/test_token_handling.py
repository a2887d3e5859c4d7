"""How the gateway reads a request's token: one `Authorization` header, refusals in its
own words, and malformed HTTP answered without alarm.

Real requests to a running stack; the storage backend does not matter here, so SQLite
only.
"""

from __future__ import annotations

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from multidict import CIMultiDict

from shared.auth.local_keys import dpop_proof, issue_token
from tests.support import FHIR_JSON, Reply, Stack

ORGNR = "974760673"
pytestmark = pytest.mark.parametrize("backend", ["sqlite"])


async def get(
    stack: Stack, path: str, authorizations: list[str], proofs: tuple[str, ...] = ()
) -> Reply:
    """A GET with exactly the given `Authorization` and `DPoP` headers, in that order."""
    headers: CIMultiDict[str] = CIMultiDict({"Accept": FHIR_JSON})
    for value in authorizations:
        headers.add("Authorization", value)
    for proof in proofs:
        headers.add("DPoP", proof)
    async with stack.session.get(f"{stack.base}/{path}", headers=headers) as resp:
        return Reply(resp.status, CIMultiDict(resp.headers), await resp.read())


async def test_refusals_are_told_in_the_gateways_own_words(stack: Stack) -> None:
    await stack.admit(ORGNR, "bup")
    valid = stack.token(orgnr=ORGNR)
    header, claims, _ = valid.split(".")
    other_key = ec.generate_private_key(ec.SECP256R1())
    decoded = jwt.decode(valid, options={"verify_signature": False})
    forged = jwt.encode(decoded, other_key, algorithm="ES256", headers={"kid": "barnebro-local-1"})
    expired = issue_token(stack.settings.data_dir, orgnr=ORGNR, ttl=-10)
    told = {
        "garbage": "The token is malformed",
        f"{header}.{claims}": "The token is malformed",
        forged: "The token's signature does not verify",
        expired: "The token has expired",
    }
    for token, said in told.items():
        reply = await get(stack, "Organization", [f"Bearer {token}"])
        assert reply.status == 401, (token, reply.body)
        assert [issue["diagnostics"] for issue in reply.issues()] == [said], reply.body
        challenge = reply.headers["WWW-Authenticate"]
        assert 'Bearer realm="barnebro", error="invalid_token"' in challenge, challenge
    assert (await get(stack, "Organization", [f"Bearer {valid}"])).status == 200


async def test_two_authorization_headers_are_refused_whatever_their_order(stack: Stack) -> None:
    await stack.admit(ORGNR, "bup")
    valid = f"Bearer {stack.token(orgnr=ORGNR)}"
    data_dir = stack.settings.data_dir
    bound = issue_token(data_dir, orgnr=ORGNR, dpop=True)
    url = f"{stack.base}/Organization"
    assert (await get(stack, "Organization", [valid])).status == 200
    pairs = [
        [valid, "Bearer garbage"],
        ["Bearer garbage", valid],
        [valid, valid],
        [f"DPoP {bound}", valid],
    ]
    for pair in pairs:
        reply = await get(stack, "Organization", pair, (dpop_proof(data_dir, "GET", url, bound),))
        assert reply.status == 400, (pair, reply.body)
        issue = reply.issues()[0]
        assert issue["code"] == "invalid"
        assert issue["diagnostics"] == "Exactly one Authorization header is allowed"
        assert 'error="invalid_request"' in reply.headers["WWW-Authenticate"]
    # one bound token with its proof is fine; two proofs stay refused
    proof = dpop_proof(data_dir, "GET", url, bound)
    assert (await get(stack, "Organization", [f"DPoP {bound}"], (proof,))).status == 200
    twice = await get(stack, "Organization", [f"DPoP {bound}"], (proof, proof))
    assert twice.status == 401
    assert 'error="invalid_dpop_proof"' in twice.headers["WWW-Authenticate"]
