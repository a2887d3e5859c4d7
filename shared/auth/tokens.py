"""Verifying bearer tokens against a JWKS and turning them into a `Caller`.

Two kinds of token reach the gateway, told apart by their issuer:
- integration tokens (production: HelseID; locally: the stack's own key) name an
  organisation, and perhaps the person acting (HPR number, or a SMART `fhirUser`);
  nothing in them is trusted about what the organisation *is*: its kind comes from the
  operator's register (`services.gateway.callers`), and a `barnebro:org_kind` claim is
  never read;
- operator credentials, signed by a key only the operator holds (never HelseID's), for
  the operator who runs the register and for the population-register source
  (`barnebro:credential` = `operator` or `register`).

Signature (RS256 or ES256), issuer, audience and expiry are checked; verified tokens are
cached until they expire, so a client reusing its token costs one dictionary look-up. A
token bound to a DPoP key (`cnf.jkt`, RFC 9449) is verified the same way and comes with its
key's thumbprint: the gateway then checks a fresh proof on every request
(`shared.auth.dpop`), cached token or not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import orjson

from shared.fhir.errors import FhirError, Issue
from shared.transport.wire import Caller

ALGORITHMS = ["RS256", "ES256"]
ORGNR_CLAIMS = ("helseid://claims/client/claims/orgnr_parent", "barnebro:orgnr")
CHILD_ORGNR_CLAIM = "helseid://claims/client/claims/orgnr_child"
HPR_CLAIMS = ("helseid://claims/hpr/hpr_number", "barnebro:hpr")
FHIR_USER_CLAIM = "fhirUser"
ROLES_CLAIM = "barnebro:roles"
CREDENTIAL_CLAIM = "barnebro:credential"
CONFIRMATION_CLAIM = "cnf"
OPERATOR_CREDENTIALS = frozenset({"operator", "register"})

log = logging.getLogger(__name__)


REJECTIONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.InvalidSignatureError, "The token's signature does not verify"),
    (jwt.ExpiredSignatureError, "The token has expired"),
    (jwt.ImmatureSignatureError, "The token is not valid yet"),
    (jwt.InvalidIssuerError, "The token's issuer is not accepted here"),
    (jwt.InvalidAudienceError, "The token's audience is not this server"),
    (jwt.InvalidIssuedAtError, "The token's iat is not a time"),
    (jwt.DecodeError, "The token is malformed"),
    (jwt.InvalidAlgorithmError, "The token's algorithm is not accepted"),
)
"""What each verification failure is called in a refusal: our own words, never the JWT
library's, which change between versions and say more than a caller needs."""


class InvalidClaims(ValueError):
    """A token whose claims are well-formed but cannot name a caller; the message is ours."""


def unauthorized(message: str) -> FhirError:
    return FhirError(
        401, [Issue("login", message)], headers={"WWW-Authenticate": 'Bearer realm="barnebro"'}
    )


def rejection(exc: Exception) -> str:
    """The one short message for a token that failed verification with `exc`."""
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"The token has no {exc.claim} claim"
    if isinstance(exc, InvalidClaims):
        return f"The token's claims are not valid: {exc}"
    return next(
        (message for kind, message in REJECTIONS if isinstance(exc, kind)),
        "The token's claims are not valid",
    )


@dataclass(frozen=True)
class Verified:
    """A verified token's caller and, when the token is bound to a DPoP key, that key's
    RFC 7638 thumbprint (`cnf.jkt`)."""

    caller: Caller
    jkt: str | None = None


def _binding(claims: dict[str, Any]) -> str | None:
    confirmation = claims.get(CONFIRMATION_CLAIM)
    if confirmation is None:
        return None
    jkt = confirmation.get("jkt") if isinstance(confirmation, dict) else None
    if not isinstance(jkt, str) or not jkt:
        # e.g. bound to a TLS client certificate (x5t#S256): a binding that cannot be
        # checked here must not be ignored
        raise unauthorized("The token is bound to a key in a way this server cannot check")
    return jkt


def _scopes(claims: dict[str, Any]) -> list[str]:
    scope = claims.get("scope", "")
    return scope.split() if isinstance(scope, str) else [str(s) for s in scope]


def caller_from_claims(claims: dict[str, Any]) -> Caller:
    """The caller of an integration token: its organisation, the person acting and the
    scopes. The organisation's kind is left for the register to fill in."""
    orgnr = claims.get(CHILD_ORGNR_CLAIM) or next(
        (claims[c] for c in ORGNR_CLAIMS if claims.get(c)), None
    )
    hpr = next((claims[c] for c in HPR_CLAIMS if claims.get(c)), None)
    fhir_user = claims.get(FHIR_USER_CLAIM) or None
    return Caller(
        credential="person" if fhir_user else "organisation",
        orgnr=str(orgnr) if orgnr else None,
        hpr=str(hpr) if hpr else None,
        client_id=claims.get("client_id") or claims.get("sub"),
        scopes=_scopes(claims),
        fhir_user=fhir_user,
        roles=[str(role) for role in claims.get(ROLES_CLAIM) or []],
    )


def operator_caller_from_claims(claims: dict[str, Any]) -> Caller:
    """The caller of an operator credential: `operator` or `register`, for no organisation."""
    credential = claims.get(CREDENTIAL_CLAIM)
    if credential not in OPERATOR_CREDENTIALS:
        raise InvalidClaims(f"{CREDENTIAL_CLAIM} must be one of {sorted(OPERATOR_CREDENTIALS)}")
    return Caller(
        credential=credential,
        client_id=claims.get("client_id") or claims.get("sub"),
        scopes=_scopes(claims),
    )


class TokenVerifier:
    """Checks JWTs against keys from a JWKS URL (refreshed on unknown key id) or file."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str = "",
        jwks_file: str = "",
        caller_of: Callable[[dict[str, Any]], Caller] = caller_from_claims,
    ) -> None:
        if not (jwks_url or jwks_file):
            raise ValueError("Set BARNEBRO_JWKS_URL or BARNEBRO_JWKS_FILE")
        self.issuer = issuer
        self._audience = audience
        self._jwks_url = jwks_url
        self._jwks_file = jwks_file
        self._caller_of = caller_of
        self._keys: dict[str, Any] = {}
        self._fetched_at = -float("inf")
        self._lock = asyncio.Lock()
        self._cache: dict[str, tuple[float, Verified]] = {}

    async def _load_keys(self) -> None:
        if self._jwks_file:
            data = orjson.loads(await asyncio.to_thread(Path(self._jwks_file).read_bytes))
        else:
            timeout = aiohttp.ClientTimeout(total=10)
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(self._jwks_url) as response,
            ):
                response.raise_for_status()
                data = await response.json(content_type=None)
        keys = jwt.PyJWKSet.from_dict(data).keys
        self._keys = {key.key_id or "": key for key in keys}
        self._fetched_at = time.monotonic()

    async def _key(self, kid: str) -> Any:
        if kid not in self._keys and time.monotonic() - self._fetched_at > 30:
            async with self._lock:
                if kid not in self._keys and time.monotonic() - self._fetched_at > 30:
                    try:
                        await self._load_keys()
                    except (OSError, aiohttp.ClientError, ValueError, jwt.PyJWTError) as exc:
                        self._fetched_at = time.monotonic()  # do not hammer a failing JWKS
                        log.warning("cannot load the signing keys of %s: %s", self.issuer, exc)
                        failure = FhirError(
                            503,
                            [Issue("transient", "The signing keys cannot be loaded now")],
                            headers={"Retry-After": "5"},
                        )
                        raise failure from exc
        key = self._keys.get(kid)
        if key is None and len(self._keys) == 1 and not kid:
            key = next(iter(self._keys.values()))
        if key is None:
            raise unauthorized("The token is signed with an unknown key")
        return key

    def cached(self, token: str) -> Verified | None:
        """A token this verifier has verified and that has not expired."""
        cached = self._cache.get(token)
        return cached[1] if cached is not None and cached[0] > time.time() else None

    async def verify(self, token: str) -> Caller:
        return (await self.verified(token)).caller

    async def verified(self, token: str) -> Verified:
        cached = self.cached(token)
        if cached is not None:
            return cached
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError) as exc:
            raise unauthorized("The token is malformed") from exc
        if header.get("alg") not in ALGORITHMS:
            raise unauthorized("The token's algorithm is not accepted")
        key = await self._key(str(header.get("kid") or ""))
        if key.algorithm_name != header["alg"]:
            raise unauthorized("The token's algorithm does not match its signing key")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[header["alg"]],
                audience=self._audience,
                issuer=self.issuer,
                options={"require": ["exp", "iss", "aud"]},
            )
            verified = Verified(self._caller_of(claims), _binding(claims))
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise unauthorized(rejection(exc)) from exc
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[token] = (float(claims["exp"]), verified)
        return verified


class Verifiers:
    """The integration verifier, and the operator's when one is configured; a token goes
    to the one its issuer names (read unverified only to choose: the chosen verifier then
    checks the issuer with the signature)."""

    def __init__(self, integration: TokenVerifier, operator: TokenVerifier | None) -> None:
        if operator is not None and operator.issuer == integration.issuer:
            raise ValueError(
                "BARNEBRO_OPERATOR_ISSUER must differ from BARNEBRO_JWT_ISSUER: operator"
                " credentials must never be confused with integration tokens"
            )
        self.integration = integration
        self.operator = operator

    async def verify(self, token: str) -> Caller:
        return (await self.verified(token)).caller

    async def verified(self, token: str) -> Verified:
        if self.operator is not None:
            cached = self.integration.cached(token) or self.operator.cached(token)
            if cached is not None:
                return cached  # verified before: no need to read its issuer again
            try:
                issuer = jwt.decode(token, options={"verify_signature": False}).get("iss")
            except (jwt.PyJWTError, ValueError) as exc:
                raise unauthorized("The token is malformed") from exc
            if issuer == self.operator.issuer:
                return await self.operator.verified(token)
        return await self.integration.verified(token)
