"""How the gateway reads a request's token: one `Authorization` header, refusals in its
own words, and malformed HTTP answered without alarm.

Real requests to a running stack; the storage backend does not matter here, so SQLite
only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys

import jwt
import pytest
from aiohttp.http_exceptions import BadHttpMessage
from cryptography.hazmat.primitives.asymmetric import ec
from multidict import CIMultiDict

from services.gateway.bad_requests import BadRequestFilter
from shared.auth.local_keys import dpop_proof, issue_token
from tests.support import FHIR_JSON, Reply, Stack

ORGNR = "974760673"
SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"])


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


@SQLITE_ONLY
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


@SQLITE_ONLY
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


MALFORMED = {
    "a repeated Host header": b"GET /fhir/metadata HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    "a header over 8190 bytes": (
        b"GET /fhir/metadata HTTP/1.1\r\nHost: a\r\nX-Long: " + b"x" * 9000 + b"\r\n\r\n"
    ),
    "a method that is no HTTP token": b"G\x01T /fhir/metadata HTTP/1.1\r\nHost: a\r\n\r\n",
    "a Content-Length that is no number": (
        b"POST /fhir/Patient HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n{}"
    ),
}


@SQLITE_ONLY
@pytest.mark.parametrize("case", sorted(MALFORMED))
async def test_malformed_http_is_a_400_and_one_warning_line(
    stack: Stack, case: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="services.gateway.http")
    reader, writer = await asyncio.open_connection("127.0.0.1", stack.settings.http_port)
    try:
        writer.write(MALFORMED[case])
        await writer.drain()
        answer = await reader.read()  # the gateway closes the connection after it
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    assert status_line.split()[1:2] == ["400"], status_line
    # answered as every other error, in the gateway's words: not aiohttp's plain text
    # quoting the request's bytes, nor the versions of the software behind it
    assert headers["content-type"].startswith(FHIR_JSON), headers
    assert headers["server"] == "barnebro", headers
    outcome = json.loads(body)
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "structure"
    assert b"Host: b" not in body and b"xxxx" not in body, body
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    records = [r for r in caplog.records if r.name == "services.gateway.http"]
    assert records, "the malformed request is logged"
    for record in records:
        assert record.levelno == logging.WARNING, record.getMessage()
        assert record.exc_info is None and record.exc_text is None
        assert "\n" not in record.getMessage()
        assert "answered 400" in record.getMessage()


@SQLITE_ONLY
async def test_every_answer_names_barnebro_and_no_versions(stack: Stack) -> None:
    for path in ("fhir/metadata", "healthz", "fhir/Patient", "fhir/NoSuchType/1"):
        async with stack.session.get(f"http://127.0.0.1:{stack.settings.http_port}/{path}") as r:
            assert r.headers.getall("Server") == ["barnebro"], (path, r.headers)


def test_other_http_server_errors_keep_their_level_and_traceback() -> None:
    def record_of(exc: Exception) -> logging.LogRecord:
        try:
            raise exc
        except Exception:
            info = sys.exc_info()
        return logging.LogRecord(
            "services.gateway.http", logging.ERROR, __file__, 1, "Unhandled exception", (), info
        )

    failure = record_of(RuntimeError("a bug"))
    assert BadRequestFilter().filter(failure)
    assert failure.levelno == logging.ERROR and failure.exc_info is not None
    malformed = record_of(BadHttpMessage("Duplicate 'Host' header found."))
    assert BadRequestFilter().filter(malformed)
    assert malformed.levelno == logging.WARNING and malformed.exc_info is None
    assert malformed.getMessage() == (
        "Unhandled exception answered 400: Duplicate 'Host' header found."
    )


@SQLITE_ONLY
async def test_a_type_in_the_url_is_quoted_back_only_when_short(stack: Stack) -> None:
    token = stack.token()
    long = await get(stack, "A" * 3000, [f"Bearer {token}"])
    assert long.status == 404 and b"AAAA" not in long.body, long.body
    short = await get(stack, "Patientt", [f"Bearer {token}"])
    assert short.status == 404 and b"'Patientt' is not a FHIR resource type" in short.body
    auth = {"Authorization": f"Bearer {token}"}
    async with stack.session.post(f"{stack.base}/metadata", json={}, headers=auth) as posted:
        assert posted.status == 405 and posted.headers["Allow"] == "GET, HEAD"
        assert (await posted.json(content_type=None))["resourceType"] == "OperationOutcome"


@SQLITE_ONLY
async def test_an_expectation_other_than_100_continue_is_an_outcome(stack: Stack) -> None:
    for path in ("fhir/Patient", "no/such/path"):
        reader, writer = await asyncio.open_connection("127.0.0.1", stack.settings.http_port)
        try:
            writer.write(
                f"POST /{path} HTTP/1.1\r\nHost: a\r\nContent-Type: application/fhir+json\r\n"
                "Content-Length: 2\r\nExpect: SECRETXYZ\r\nConnection: close\r\n\r\n{}".encode()
            )
            await writer.drain()
            answer = await reader.read()
        finally:
            writer.close()
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split()[1] == b"417", head
        assert b"application/fhir+json" in head and b"Server: barnebro" in head, head
        assert json.loads(body)["resourceType"] == "OperationOutcome", body
        assert b"SECRETXYZ" not in answer, answer
