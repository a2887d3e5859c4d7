"""DPoP (RFC 9449): the proof check on its own, and DPoP-bound tokens at the gateway.

The unit tests check `shared.auth.dpop.check_proof` and `verify_proof` with forged proofs;
the service tests send real requests to a running stack (and to a second gateway on the
same NATS, for replays), with tokens and proofs made as `barnebro token --dpop` and
`barnebro dpop-proof` make them.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from multidict import CIMultiDict
from yarl import URL as YarlURL

from services.cli import main
from services.gateway.authentication import public_url
from services.gateway.server import GatewayServer
from services.stack import free_port
from shared.auth.dpop import (
    InvalidProof,
    MemoryReplayStore,
    check_proof,
    make_proof,
    public_jwk,
    thumbprint,
    token_hash,
    verify_proof,
)
from shared.auth.local_keys import dpop_jkt, dpop_key, dpop_proof, issue_credential, issue_token
from tests.support import (
    FHIR_JSON,
    Reply,
    Stack,
    drop_test_resources,
    nats_url,
    start_stack,
    stop_stack,
)
from tests.support import test_settings as make_settings

URL = "https://barnebro.example/fhir/Patient"
TOKEN = "header.claims.signature"
ORGNR = "974760673"


def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def proof_claims() -> dict[str, Any]:
    """The claims of a valid proof for GET `URL` with `TOKEN`."""
    return {
        "jti": "a-unique-proof-id",
        "htm": "GET",
        "htu": URL,
        "iat": int(time.time()),
        "ath": token_hash(TOKEN),
    }


def forge(
    private: Any,
    *,
    alg: str = "ES256",
    header: dict[str, Any] | None = None,
    drop: tuple[str, ...] = (),
    **claims: Any,
) -> str:
    """A proof for GET `URL` with `TOKEN`, with claims or header members changed."""
    body = {**proof_claims(), **claims}
    for name in drop:
        body.pop(name)
    headers = {"typ": "dpop+jwt", "jwk": public_jwk(private), **(header or {})}
    return jwt.encode(body, private, algorithm=alg, headers=headers)


def check(proof: str, jkt: str, **changes: Any) -> None:
    arguments: dict[str, Any] = {
        "method": "GET",
        "url": URL,
        "access_token": TOKEN,
        "jkt": jkt,
        "now": time.time(),
        "max_age": 60,
        "skew": 5,
    }
    arguments.update(changes)
    check_proof(proof, **arguments)


# --- the proof check ----------------------------------------------------------------------


def test_thumbprint_is_rfc_7638s() -> None:
    example = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tS"
        "oc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65Y"
        "GjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrd"
        "kt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnq"
        "DKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }
    assert thumbprint(example) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


@pytest.mark.parametrize("alg", ["ES256", "PS256", "RS256", "EdDSA"])
def test_a_valid_proof_names_its_key(alg: str) -> None:
    private: Any = {
        "ES256": key,
        "PS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "EdDSA": ed25519.Ed25519PrivateKey.generate,
    }[alg]()
    jkt = thumbprint(public_jwk(private))
    proof = make_proof(
        private, method="GET", url=URL + "?name=x#f", access_token=TOKEN, algorithm=alg
    )
    checked = check_proof(
        proof,
        method="GET",
        url=URL,
        access_token=TOKEN,
        jkt=jkt,
        now=time.time(),
        max_age=60,
        skew=5,
    )
    assert checked.jkt == jkt


def test_htu_is_compared_normalised_without_query() -> None:
    private = key()
    jkt = thumbprint(public_jwk(private))
    check(forge(private, htu="HTTPS://Barnebro.Example:443/fhir/Patient?x=1"), jkt)
    check(forge(private, htu="https://barnebro.example/fhir/%50atient"), jkt)
    with pytest.raises(InvalidProof, match="htu"):
        check(forge(private, htu="https://barnebro.example:8443/fhir/Patient"), jkt)
    with pytest.raises(InvalidProof, match="htu"):
        check(forge(private, htu="http://barnebro.example/fhir/Patient"), jkt)


@pytest.mark.parametrize(
    ("htu", "url"),
    [
        (
            "https://barnebro.example/fhir/Organization/1",
            "https://barnebro.example/fhir/Organization%2F1",
        ),
        (
            "https://barnebro.example/fhir/Organization%2F1",
            "https://barnebro.example/fhir/Organization/1",
        ),
        ("https://barnebro.example/fhir/Patient%3F", "https://barnebro.example/fhir/Patient?"),
        ("https://barnebro.example/fhir/Patient%23", "https://barnebro.example/fhir/Patient"),
        ("https://barnebro.example/fhir/Patient", "https://barnebro.example/fhir/Patient/"),
        ("https://barnebro.example:8443/fhir/Patient", "https://barnebro.example/fhir/Patient"),
    ],
)
def test_percent_encoded_reserved_characters_stay_distinct(htu: str, url: str) -> None:
    private = key()
    with pytest.raises(InvalidProof, match="htu is not the request's URL"):
        check(forge(private, htu=htu), thumbprint(public_jwk(private)), url=url)


@pytest.mark.parametrize(
    ("htu", "url"),
    [
        (
            "https://barnebro.example/fhir/Organization%2f1",
            "https://barnebro.example/fhir/Organization%2F1",
        ),
        ("https://barnebro.example/fhir/%7Eteam/%41b", "https://barnebro.example/fhir/~team/Ab"),
        ("https://barnebro.example/fhir/x/../Patient", "https://barnebro.example/fhir/Patient"),
        (
            "https://barnebro.example/fhir/./%2E%2E/fhir/Patient",
            "https://barnebro.example/fhir/Patient",
        ),
        ("http://Barnebro.Example:80", "http://barnebro.example/"),
        ("http://barnebro.example:/fhir", "http://barnebro.example/fhir"),
        ("http://[::1]:8080/fhir/Patient#top", "http://[::1]:8080/fhir/Patient"),
    ],
)
def test_htu_is_compared_after_rfc_3986_normalisation(htu: str, url: str) -> None:
    private = key()
    check(forge(private, htu=htu), thumbprint(public_jwk(private)), url=url)


@pytest.mark.parametrize(
    ("htu", "said"),
    [
        (" " + URL, "not an absolute"),
        (URL + " ", "not an absolute"),
        (URL + "\n", "not an absolute"),
        (URL.replace("/fhir", "/fh\tir"), "not an absolute"),
        (URL.replace("Patient", "Pati%ent"), "not an absolute"),
        (URL.replace("Patient", "Pasiënt"), "not an absolute"),
        ("https://barnebro.example:99999/fhir/Patient", "not an absolute"),
        ("ftp://barnebro.example/fhir/Patient", "not an absolute"),
        ("https:///fhir/Patient", "not an absolute"),
        ("https://user@barnebro.example/fhir/Patient", "user-info"),
        ("https://user:secret@barnebro.example/fhir/Patient", "user-info"),
    ],
)
def test_an_htu_that_is_no_plain_url_is_refused(htu: str, said: str) -> None:
    private = key()
    with pytest.raises(InvalidProof, match=said):
        check(forge(private, htu=htu), thumbprint(public_jwk(private)))


FAILURES: dict[str, tuple[str, Any]] = {
    "wrong htm": ("htm", lambda k: forge(k, htm="POST")),
    "wrong htu": ("htu", lambda k: forge(k, htu="https://barnebro.example/fhir/Consent")),
    "stale iat": ("iat", lambda k: forge(k, iat=int(time.time()) - 61)),
    "future iat": ("iat", lambda k: forge(k, iat=int(time.time()) + 30)),
    "no iat": ("iat", lambda k: forge(k, drop=("iat",))),
    "no jti": ("jti", lambda k: forge(k, drop=("jti",))),
    "no ath": ("ath", lambda k: forge(k, drop=("ath",))),
    "wrong ath": ("ath", lambda k: forge(k, ath=token_hash("another.token.value"))),
    "typ wrong": ("typ", lambda k: forge(k, header={"typ": "JWT"})),
    "no jwk": ("jwk", lambda k: forge(k, header={"jwk": None})),
    "private jwk": (
        "private",
        lambda k: forge(k, header={"jwk": jwt.algorithms.ECAlgorithm.to_jwk(k, as_dict=True)}),
    ),
    "jwk of another key": ("signature", lambda k: forge(k, header={"jwk": public_jwk(key())})),
    "jwk not fitting alg": (
        "alg",
        lambda k: forge(k, header={"jwk": {**public_jwk(k), "crv": "P-384"}}),
    ),
    "jwk for encryption": (
        "use",
        lambda k: forge(k, header={"jwk": {**public_jwk(k), "use": "enc"}}),
    ),
    "jwk key_ops without verify": (
        "key_ops",
        lambda k: forge(k, header={"jwk": {**public_jwk(k), "key_ops": ["encrypt"]}}),
    ),
    "jwk key_ops not a list": (
        "key_ops",
        lambda k: forge(k, header={"jwk": {**public_jwk(k), "key_ops": "verify"}}),
    ),
    "jwk naming another alg": (
        "another alg",
        lambda k: forge(k, header={"jwk": {**public_jwk(k), "alg": "ES384"}}),
    ),
    "alg none": (
        "alg",
        lambda k: jwt.encode(
            proof_claims(),
            "",
            algorithm="none",
            headers={"typ": "dpop+jwt", "jwk": public_jwk(k)},
        ),
    ),
    "alg HS256": (
        "alg",
        lambda k: jwt.encode(
            proof_claims(),
            "a shared secret that proves nothing at all",
            algorithm="HS256",
            headers={"typ": "dpop+jwt", "jwk": public_jwk(k)},
        ),
    ),
    "not a JWT": ("JWT", lambda k: "not-a-proof"),
    "not ASCII": ("JWT", lambda k: "æøå.æøå.æøå"),
    "claims not an object": (
        "JSON object",
        lambda k: jwt.api_jws.encode(
            b"[1]", k, algorithm="ES256", headers={"typ": "dpop+jwt", "jwk": public_jwk(k)}
        ),
    ),
}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_each_bad_proof_is_refused(case: str) -> None:
    private = key()
    said, make = FAILURES[case]
    with pytest.raises(InvalidProof, match=said):
        check(make(private), thumbprint(public_jwk(private)))


def test_a_jwk_declared_for_signatures_with_the_proofs_alg_is_accepted() -> None:
    private = key()
    jwk = {**public_jwk(private), "use": "sig", "key_ops": ["verify"], "alg": "ES256"}
    check(forge(private, header={"jwk": jwk}), thumbprint(jwk))


def test_a_proof_by_another_key_than_the_tokens_is_refused() -> None:
    with pytest.raises(InvalidProof, match="bound to"):
        check(forge(key()), thumbprint(public_jwk(key())))


@pytest.mark.filterwarnings("ignore:The RSA key is 1024 bits")
def test_a_small_rsa_key_is_refused() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    with pytest.raises(InvalidProof, match="bits"):
        check(forge(private, alg="RS256"), thumbprint(public_jwk(private)))


def test_htu_is_the_public_url_behind_a_proxy() -> None:
    base = "https://api.example.no/barnebro/fhir"
    assert public_url(base, "/fhir/Patient/1") == f"{base}/Patient/1"
    assert public_url(base, "/fhir") == base
    assert public_url(base, "/consent/v1/decisions") == (
        "https://api.example.no/barnebro/consent/v1/decisions"
    )
    assert (
        public_url("https://fhir.example.no/R4", "/fhir/Task") == "https://fhir.example.no/R4/Task"
    )


async def test_a_proof_is_accepted_once() -> None:
    private = key()
    jkt, replays = thumbprint(public_jwk(private)), MemoryReplayStore()
    proof = forge(private)
    arguments: dict[str, Any] = {
        "method": "GET",
        "url": URL,
        "access_token": TOKEN,
        "jkt": jkt,
        "max_age": 60,
        "skew": 5,
        "replays": replays,
    }
    await verify_proof(proof, **arguments)
    with pytest.raises(InvalidProof, match="used before"):
        await verify_proof(proof, **arguments)
    await verify_proof(forge(private, jti="another-proof-id"), **arguments)


def run_cli(*argv: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(list(argv))
    return out.getvalue().strip()


def test_cli_mints_a_bound_token_and_signs_proofs(tmp_path: Path) -> None:
    token = run_cli("token", "--org", ORGNR, "--dpop", "--data-dir", str(tmp_path))
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["cnf"] == {"jkt": dpop_jkt(tmp_path)}
    assert (tmp_path / "auth" / "dpop-key.pem").stat().st_mode & 0o077 == 0
    proof = run_cli(
        "dpop-proof", "--method", "get", "--url", URL, "--token", token, "--data-dir", str(tmp_path)
    )
    check(proof, claims["cnf"]["jkt"], access_token=token)
    plain = run_cli("token", "--org", ORGNR, "--data-dir", str(tmp_path))
    assert "cnf" not in jwt.decode(plain, options={"verify_signature": False})
    credential = run_cli("token", "--credential", "operator", "--dpop", "--data-dir", str(tmp_path))
    assert jwt.decode(credential, options={"verify_signature": False})["cnf"] == claims["cnf"]


# --- at the gateway -----------------------------------------------------------------------


async def send(
    stack: Stack,
    method: str,
    url: str,
    authorization: str,
    proofs: list[str],
    gateway_port: int | None = None,
) -> Reply:
    """A request with exactly the given Authorization and DPoP headers, to `url` (or to the
    same path on another gateway's port)."""
    headers: CIMultiDict[str] = CIMultiDict({"Accept": FHIR_JSON, "Authorization": authorization})
    for proof in proofs:
        headers.add("DPoP", proof)
    target = url
    if gateway_port is not None:
        target = url.replace(f":{stack.settings.http_port}/", f":{gateway_port}/")
    async with stack.session.request(method, target, headers=headers) as resp:
        return Reply(resp.status, CIMultiDict(resp.headers), await resp.read())


def assert_refused(reply: Reply, code: str, scheme: str = "DPoP") -> None:
    assert reply.status == 401, reply.body
    challenge = reply.headers["WWW-Authenticate"]
    assert f'{scheme} realm="barnebro", error="{code}"' in challenge, challenge
    assert 'DPoP realm="barnebro"' in challenge and 'algs="ES256' in challenge, challenge
    assert reply.issues()[0]["code"] == "login"


async def test_dpop_bound_tokens_at_the_gateway(stack: Stack) -> None:
    await stack.admit(ORGNR, "bup")
    data_dir = stack.settings.data_dir
    token = issue_token(data_dir, orgnr=ORGNR, dpop=True)
    url = f"{stack.base}/Organization"
    bound = f"DPoP {token}"

    def proof(method: str = "GET", target: str = url, with_token: str | None = token) -> str:
        return dpop_proof(data_dir, method, target, with_token)

    first = proof()
    assert (await send(stack, "GET", url + "?name=x", bound, [first])).status == 200
    # the token is cached now; its proof is checked again on every request
    assert (await send(stack, "GET", url, bound, [proof()])).status == 200
    assert_refused(await send(stack, "GET", url, bound, [first]), "invalid_dpop_proof")

    other = key()
    refusals = {
        ("wrong htm", "htm"): proof("POST"),
        ("wrong htu", "htu"): proof(target=f"{stack.base}/Patient"),
        ("stale iat", "iat"): make_proof(
            dpop_key(data_dir), method="GET", url=url, access_token=token, now=time.time() - 120
        ),
        ("no ath", "ath"): proof(with_token=None),
        ("wrong ath", "ath"): proof(
            with_token=issue_token(data_dir, orgnr=ORGNR, dpop=True, ttl=60)
        ),
        ("jkt mismatch", "bound to"): make_proof(other, method="GET", url=url, access_token=token),
        ("typ wrong", "typ"): jwt.encode(
            jwt.decode(proof(), options={"verify_signature": False}),
            dpop_key(data_dir),
            algorithm="ES256",
            headers={"typ": "JWT", "jwk": public_jwk(dpop_key(data_dir))},
        ),
        ("alg none", "alg"): jwt.encode(
            jwt.decode(proof(), options={"verify_signature": False}),
            "",
            algorithm="none",
            headers={"typ": "dpop+jwt", "jwk": public_jwk(dpop_key(data_dir))},
        ),
        ("alg HS256", "alg"): jwt.encode(
            jwt.decode(proof(), options={"verify_signature": False}),
            "a shared secret that proves nothing at all",
            algorithm="HS256",
            headers={"typ": "dpop+jwt", "jwk": public_jwk(dpop_key(data_dir))},
        ),
        ("jwk for encryption", "use"): jwt.encode(
            jwt.decode(proof(), options={"verify_signature": False}),
            dpop_key(data_dir),
            algorithm="ES256",
            headers={"typ": "dpop+jwt", "jwk": {**public_jwk(dpop_key(data_dir)), "use": "enc"}},
        ),
        ("private key in jwk", "private"): jwt.encode(
            jwt.decode(proof(), options={"verify_signature": False}),
            dpop_key(data_dir),
            algorithm="ES256",
            headers={
                "typ": "dpop+jwt",
                "jwk": jwt.algorithms.ECAlgorithm.to_jwk(dpop_key(data_dir), as_dict=True),
            },
        ),
    }
    for (case, said), bad in refusals.items():
        reply = await send(stack, "GET", url, bound, [bad])
        assert reply.status == 401, case
        assert_refused(reply, "invalid_dpop_proof")
        assert said in reply.issues()[0]["diagnostics"], (case, reply.body)
    assert_refused(await send(stack, "GET", url, bound, [proof(), proof()]), "invalid_dpop_proof")
    assert_refused(await send(stack, "GET", url, bound, []), "invalid_dpop_proof")

    # a bound token is never a bearer token (RFC 9449 §7.2); an unbound one is no DPoP token
    assert_refused(
        await send(stack, "GET", url, f"Bearer {token}", [proof()]), "invalid_token", "Bearer"
    )
    plain = stack.token(orgnr=ORGNR)
    assert (await send(stack, "GET", url, f"Bearer {plain}", [])).status == 200
    unbound = proof(with_token=plain)
    assert_refused(await send(stack, "GET", url, f"DPoP {plain}", [unbound]), "invalid_token")

    metadata = await send(stack, "GET", f"{stack.base}/metadata", "", [])
    security = metadata.json()["rest"][0]["security"]["description"]
    assert "Authorization: DPoP" in security and "RFC 9449" in security

    missing = await send(stack, "GET", url, "", [])
    assert missing.status == 401
    assert missing.headers["WWW-Authenticate"].startswith('Bearer realm="barnebro", DPoP')
    assert "error=" not in missing.headers["WWW-Authenticate"]


async def test_an_encoded_slash_is_not_the_slash_a_proof_names(stack: Stack) -> None:
    """`/fhir/Organization%2F<id>` is another URL than `/fhir/Organization/<id>` (RFC 3986
    §6.2.2.2): a proof for the one does not pass for the other."""
    organization = await stack.admit(ORGNR, "bup")
    data_dir = stack.settings.data_dir
    token = issue_token(data_dir, orgnr=ORGNR, dpop=True)
    plain = f"{stack.base}/Organization/{organization}"
    encoded = f"{stack.base}/Organization%2F{organization}"

    async def read(url: str, proof_for: str) -> Reply:
        headers = {"Accept": FHIR_JSON, "Authorization": f"DPoP {token}",
                   "DPoP": dpop_proof(data_dir, "GET", proof_for, token)}  # fmt: skip
        async with stack.session.get(YarlURL(url, encoded=True), headers=headers) as resp:
            return Reply(resp.status, CIMultiDict(resp.headers), await resp.read())

    for url, proof_for in ((encoded, plain), (plain, encoded)):
        reply = await read(url, proof_for)
        assert_refused(reply, "invalid_dpop_proof")
        assert "htu" in reply.issues()[0]["diagnostics"], reply.body
    assert (await read(plain, plain)).status == 200
    assert (await read(encoded, encoded)).status != 401, "a proof naming the URL sent passes"


async def test_dpop_on_the_consent_api_and_for_operator_credentials(stack: Stack) -> None:
    await stack.admit(ORGNR, "bup")
    data_dir = stack.settings.data_dir
    token = issue_token(data_dir, orgnr=ORGNR, dpop=True)
    root = f"http://127.0.0.1:{stack.settings.http_port}"
    consents = f"{root}/consent/v1/patients/no-such-child/consents"
    as_bearer = await send(stack, "GET", consents, f"Bearer {stack.token(orgnr=ORGNR)}", [])
    as_dpop = await send(
        stack, "GET", consents, f"DPoP {token}", [dpop_proof(data_dir, "GET", consents, token)]
    )
    assert as_dpop.status == as_bearer.status != 401
    assert as_dpop.body == as_bearer.body
    wrong = dpop_proof(data_dir, "GET", f"{root}/fhir/Patient", token)
    assert_refused(
        await send(stack, "GET", consents, f"DPoP {token}", [wrong]), "invalid_dpop_proof"
    )

    operator = issue_credential(data_dir, "operator", dpop=True)
    url = f"{stack.base}/Organization"
    proof = dpop_proof(data_dir, "GET", url, operator)
    assert (await send(stack, "GET", url, f"DPoP {operator}", [proof])).status == 200
    assert_refused(
        await send(stack, "GET", url, f"Bearer {operator}", []), "invalid_token", "Bearer"
    )


@pytest.fixture
async def two_gateways(tmp_path: Path, backend: str) -> AsyncIterator[tuple[Stack, int]]:
    """A stack whose public base URL is its first gateway's, and a second gateway on the
    same NATS (as behind a load balancer): its port."""
    port = free_port()
    settings = make_settings(
        tmp_path,
        backend,
        nats_url(),
        http_port=port,
        public_base_url=f"http://127.0.0.1:{port}/fhir",
    )
    running = await start_stack(settings)
    second = GatewayServer(settings.model_copy(update={"http_port": free_port()}))
    try:
        await second.start()
        yield running, second.settings.http_port
    finally:
        await second.stop()
        await stop_stack(running)
        await drop_test_resources(settings)


async def test_a_proof_used_at_one_gateway_is_refused_at_another(
    two_gateways: tuple[Stack, int],
) -> None:
    stack, other_port = two_gateways
    await stack.admit(ORGNR, "bup")
    token = issue_token(stack.settings.data_dir, orgnr=ORGNR, dpop=True)
    url = f"{stack.base}/Organization"

    def proof() -> str:
        return dpop_proof(stack.settings.data_dir, "GET", url, token)

    used = proof()
    assert (await send(stack, "GET", url, f"DPoP {token}", [used])).status == 200
    replayed = await send(stack, "GET", url, f"DPoP {token}", [used], gateway_port=other_port)
    assert_refused(replayed, "invalid_dpop_proof")
    assert b"used before" in replayed.body
    fresh = await send(stack, "GET", url, f"DPoP {token}", [proof()], gateway_port=other_port)
    assert fresh.status == 200


@pytest.fixture
async def dpop_required(tmp_path: Path, backend: str) -> AsyncIterator[Stack]:
    settings = make_settings(tmp_path, backend, nats_url(), dpop="required")
    running = await start_stack(settings)
    try:
        yield running
    finally:
        await stop_stack(running)
        await drop_test_resources(settings)


async def test_required_refuses_every_bearer_integration_token(dpop_required: Stack) -> None:
    stack = dpop_required
    await stack.admit(ORGNR, "bup")  # as the operator, whose credential may be a bearer one
    url = f"{stack.base}/Organization"
    plain = await send(stack, "GET", url, f"Bearer {stack.token(orgnr=ORGNR)}", [])
    assert_refused(plain, "invalid_token")
    assert "Bearer" not in plain.headers["WWW-Authenticate"]
    token = issue_token(stack.settings.data_dir, orgnr=ORGNR, dpop=True)
    proof = dpop_proof(stack.settings.data_dir, "GET", url, token)
    assert (await send(stack, "GET", url, f"DPoP {token}", [proof])).status == 200
