"""DPoP proofs (RFC 9449): checking the proof a client sends with a bound access token,
and making one (the `barnebro dpop-proof` command and the tests).

A token bound to a key (`cnf.jkt`, the key's RFC 7638 thumbprint) is worth nothing to
whoever steals it without that key: each request carries a fresh proof, a JWT signed with
the key, that names the request's method and URL, when it was made, a unique id, and a hash
of the token. `check_proof` does every check of RFC 9449 §4.3 that needs nothing but the
request; `verify_proof` adds the one that needs memory (each proof is used once), behind the
`ReplayStore` protocol so that all gateway instances share it (NATS key-value in
production, `shared.auth.dpop_replay`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from yarl import URL

PROOF_TYPE = "dpop+jwt"
ALGORITHMS = ("ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512",
              "EdDSA")  # fmt: skip
"""Asymmetric algorithms only: a proof signed with a shared secret (HS*) or none proves
nothing about who holds a key."""
CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"),
                      "OKP": ("crv", "kty", "x")}  # fmt: skip
MIN_RSA_BITS = 2048
Mode = Literal["bound", "required"]
"""`bound`: a token that names a key (`cnf`) must come with DPoP, one that names none may
be a bearer token; `required`: every integration token must be DPoP-bound."""


class InvalidProof(ValueError):
    """A DPoP proof that fails a check; the message says which, never more."""


@dataclass(frozen=True)
class Proof:
    """What a valid proof establishes: the key's thumbprint and the proof's unique id."""

    jkt: str
    jti: str


class ReplayStore(Protocol):
    """Remembers the proofs already used, for as long as they could still be accepted."""

    async def first_use(self, key: str) -> bool:
        """True the first time `key` is seen (and remember it), False after."""
        ...


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 JWK SHA-256 thumbprint: the required members only, sorted, compact."""
    members = THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None or not all(isinstance(jwk.get(m), str) for m in members):
        raise InvalidProof("the proof's jwk is not an EC, RSA or OKP public key")
    canonical = orjson.dumps({m: jwk[m] for m in members}, option=orjson.OPT_SORT_KEYS)
    return b64url(hashlib.sha256(canonical).digest())


def token_hash(access_token: str) -> str:
    """The `ath` of an access token: base64url of its SHA-256."""
    return b64url(hashlib.sha256(access_token.encode("ascii")).digest())


URI = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://([^/?#]*)([^?#]*)(?:\?[^#]*)?(?:#.*)?")
"""scheme://authority path [?query] [#fragment] (RFC 3986 Appendix B, authority required)."""
URI_CHARACTERS = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*")
"""Unreserved and reserved characters and percent-encodings: nothing else is in a URI."""
UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
DEFAULT_PORTS = {"http": 80, "https": 443}


def normalised_url(url: str) -> str:
    """A URL as proofs compare it (RFC 9449 §4.3): scheme, host, port and path only, after
    RFC 3986 syntax-based normalisation (§6.2.2): scheme and host in lower case, no default
    port, percent-encodings in upper case and decoded only where they stand for unreserved
    characters (`%2F` stays distinct from `/`), no dot segments. A string that is not a URI
    (whitespace, control characters, a stray `%`) or that has user-info is refused."""
    match = URI.fullmatch(url) if URI_CHARACTERS.fullmatch(url) else None
    if match is None or match[1].lower() not in DEFAULT_PORTS:
        raise InvalidProof("the proof's htu is not an absolute http(s) URL")
    scheme, authority, path = match[1].lower(), match[2], match[3]
    if "@" in authority:
        raise InvalidProof("the proof's htu must not have user-info")
    host, port = _host_and_port(authority)
    if not host:
        raise InvalidProof("the proof's htu is not an absolute http(s) URL")
    shown_port = "" if port in (None, DEFAULT_PORTS[scheme]) else f":{port}"
    return f"{scheme}://{_percent_normalised(host.lower())}{shown_port}" + _without_dot_segments(
        _percent_normalised(path) or "/"
    )


def _host_and_port(authority: str) -> tuple[str, int | None]:
    literal_end = authority.rfind("]") + 1  # an IP literal holds colons of its own
    host, _, port = authority[literal_end:].partition(":")
    host = authority[:literal_end] + host
    if not port:
        return host, None
    if not port.isdigit() or int(port) > 65535:
        raise InvalidProof("the proof's htu is not an absolute http(s) URL")
    return host, int(port)


def _percent_normalised(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        char = chr(int(match[1], 16))
        return char if char in UNRESERVED else f"%{match[1].upper()}"

    return re.sub(r"%([0-9A-Fa-f]{2})", one, text)


def _without_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4 for an absolute path: `.` and `..` segments resolved."""
    segments = path.split("/")[1:]
    kept: list[str] = []
    for segment in segments:
        if segment == "..":
            if kept:
                kept.pop()
        elif segment != ".":
            kept.append(segment)
    trailing = segments[-1] in (".", "..")
    return "/" + "/".join(kept) + ("/" if trailing and kept else "")


def _public_key(header: dict[str, Any]) -> Any:
    jwk, alg = header.get("jwk"), header["alg"]
    if not isinstance(jwk, dict):
        raise InvalidProof("the proof's header has no jwk")
    if PRIVATE_MEMBERS & jwk.keys():
        raise InvalidProof("the proof's jwk must be a public key without private parts")
    kty = jwk.get("kty")
    expected = "EC" if alg.startswith("ES") else "OKP" if alg == "EdDSA" else "RSA"
    if kty != expected or (alg in CURVES and jwk.get("crv") != CURVES[alg]):
        raise InvalidProof("the proof's jwk does not fit its alg")
    _check_intended_use(jwk, alg)
    try:
        key = jwt.PyJWK(jwk, algorithm=alg).key
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise InvalidProof("the proof's jwk is not a valid key") from exc
    public = (ec.EllipticCurvePublicKey, rsa.RSAPublicKey, ed25519.Ed25519PublicKey,
              ed448.Ed448PublicKey)  # fmt: skip
    if not isinstance(key, public):
        raise InvalidProof("the proof's jwk must be a public key without private parts")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise InvalidProof(f"the proof's RSA key must have at least {MIN_RSA_BITS} bits")
    return key


def _check_intended_use(jwk: dict[str, Any], alg: str) -> None:
    """A key whose own members say it is not for verifying signatures with `alg` (RFC 7517
    §4.2-4.4: `use`, `key_ops`, `alg`) does not sign a proof."""
    if "use" in jwk and jwk["use"] != "sig":
        raise InvalidProof("the proof's jwk has a use other than sig")
    key_ops = jwk.get("key_ops", ["verify"])
    if not isinstance(key_ops, list) or "verify" not in key_ops:
        raise InvalidProof("the proof's jwk has key_ops without verify")
    if "alg" in jwk and jwk["alg"] != alg:
        raise InvalidProof("the proof's jwk names another alg than the proof")


def check_proof(
    proof: str,
    *,
    method: str,
    url: str,
    access_token: str,
    jkt: str,
    now: float,
    max_age: float,
    skew: float,
) -> Proof:
    """Check a DPoP proof against the request and the token it comes with (RFC 9449 §4.3
    and §7.1), all but replay; the key's thumbprint must be the token's `cnf.jkt`."""
    try:
        header = jwt.get_unverified_header(proof)
    except (jwt.PyJWTError, ValueError) as exc:  # ValueError: not even ASCII
        raise InvalidProof("the proof is not a JWT") from exc
    if header.get("typ") != PROOF_TYPE:
        raise InvalidProof(f"the proof's typ must be {PROOF_TYPE}")
    if header.get("alg") not in ALGORITHMS:
        raise InvalidProof(f"the proof's alg must be one of {' '.join(ALGORITHMS)}")
    key = _public_key(header)
    try:
        claims = jwt.decode(
            proof,
            key,
            algorithms=[header["alg"]],
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False,
                     "verify_aud": False, "verify_iss": False, "verify_sub": False,
                     "verify_jti": False},
        )  # fmt: skip
    except jwt.InvalidSignatureError as exc:
        raise InvalidProof("the proof's signature does not verify with its jwk") from exc
    except (jwt.PyJWTError, ValueError) as exc:
        raise InvalidProof("the proof's claims are not a JSON object") from exc
    jti, htm, htu, iat = (claims.get(name) for name in ("jti", "htm", "htu", "iat"))
    if not isinstance(jti, str) or not 8 <= len(jti) <= 256:
        raise InvalidProof("the proof needs a unique jti")
    if htm != method:
        raise InvalidProof("the proof's htm is not the request's method")
    if not isinstance(htu, str):
        raise InvalidProof("the proof needs an htu")
    if normalised_url(htu) != _request_url(url):
        raise InvalidProof("the proof's htu is not the request's URL")
    if isinstance(iat, bool) or not isinstance(iat, int | float):
        raise InvalidProof("the proof needs an iat")
    if not now - max_age <= iat <= now + skew:
        raise InvalidProof("the proof's iat is too old or in the future")
    ath = claims.get("ath")
    if not isinstance(ath, str) or not hmac.compare_digest(ath, token_hash(access_token)):
        raise InvalidProof("the proof's ath is not the hash of the access token")
    key_thumbprint = thumbprint(header["jwk"])
    if not hmac.compare_digest(key_thumbprint, jkt):
        raise InvalidProof("the proof's key is not the key the token is bound to")
    return Proof(jkt=key_thumbprint, jti=jti)


def _request_url(url: str) -> str:
    try:
        return normalised_url(url)
    except InvalidProof as exc:  # no proof can name a URL that is not one
        raise InvalidProof("the proof's htu is not the request's URL") from exc


async def verify_proof(
    proof: str,
    *,
    method: str,
    url: str,
    access_token: str,
    jkt: str,
    max_age: float,
    skew: float,
    replays: ReplayStore,
    now: float | None = None,
) -> Proof:
    """`check_proof`, then once only: a proof seen before (by any instance) is refused."""
    checked = check_proof(
        proof, method=method, url=url, access_token=access_token, jkt=jkt,
        now=time.time() if now is None else now, max_age=max_age, skew=skew,
    )  # fmt: skip
    key = hashlib.sha256(f"{checked.jkt}:{checked.jti}".encode()).hexdigest()
    if not await replays.first_use(key):
        raise InvalidProof("the proof has been used before")
    return checked


class MemoryReplayStore:
    """A replay store in one process's memory (unit tests; never for several instances)."""

    def __init__(self) -> None:
        self.seen: set[str] = set()

    async def first_use(self, key: str) -> bool:
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def public_jwk(private_key: Any) -> dict[str, Any]:
    """The public JWK of a private key (EC, RSA or Ed25519), as a proof's header carries it."""
    public = private_key.public_key()
    if isinstance(public, ec.EllipticCurvePublicKey):
        data = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, rsa.RSAPublicKey):
        data = jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
    else:
        data = jwt.algorithms.OKPAlgorithm.to_jwk(public, as_dict=True)
    return {k: v for k, v in data.items() if k in ("kty", "crv", "x", "y", "n", "e")}


def make_proof(
    private_key: Any,
    *,
    method: str,
    url: str,
    access_token: str | None = None,
    algorithm: str = "ES256",
    now: float | None = None,
) -> str:
    """A DPoP proof for one request, signed with `private_key` (the client's side)."""
    claims: dict[str, Any] = {
        "jti": str(uuid.uuid4()),
        "htm": method.upper(),
        "htu": str(URL(url).with_query(None).with_fragment(None)),
        "iat": int(time.time() if now is None else now),
    }
    if access_token is not None:
        claims["ath"] = token_hash(access_token)
    headers = {"typ": PROOF_TYPE, "jwk": public_jwk(private_key)}
    return jwt.encode(claims, private_key, algorithm=algorithm, headers=headers)
