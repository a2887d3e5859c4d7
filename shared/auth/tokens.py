"""Verifying bearer tokens against a JWKS and turning them into a `Caller`.

Production tokens come from HelseID; the local stack signs its own. Signature (RS256 or
ES256), issuer, audience and expiry are checked; verified tokens are cached until they
expire, so a client reusing its token costs one dictionary look-up per request.
"""

from __future__ import annotations

import asyncio
import time
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
KIND_CLAIM = "barnebro:org_kind"
FHIR_USER_CLAIM = "fhirUser"
ROLES_CLAIM = "barnebro:roles"


def unauthorized(message: str) -> FhirError:
    return FhirError(
        401, [Issue("login", message)], headers={"WWW-Authenticate": 'Bearer realm="barnebro"'}
    )


def caller_from_claims(claims: dict[str, Any]) -> Caller:
    scope = claims.get("scope", "")
    scopes = scope.split() if isinstance(scope, str) else [str(s) for s in scope]
    orgnr = claims.get(CHILD_ORGNR_CLAIM) or next(
        (claims[c] for c in ORGNR_CLAIMS if claims.get(c)), None
    )
    hpr = next((claims[c] for c in HPR_CLAIMS if claims.get(c)), None)
    return Caller(
        orgnr=str(orgnr) if orgnr else None,
        org_kind=claims.get(KIND_CLAIM),
        hpr=str(hpr) if hpr else None,
        client_id=claims.get("client_id") or claims.get("sub"),
        scopes=scopes,
        fhir_user=claims.get(FHIR_USER_CLAIM) or None,
        roles=[str(role) for role in claims.get(ROLES_CLAIM) or []],
    )


class TokenVerifier:
    """Checks JWTs against keys from a JWKS URL (refreshed on unknown key id) or file."""

    def __init__(
        self, *, issuer: str, audience: str, jwks_url: str = "", jwks_file: str = ""
    ) -> None:
        if not (jwks_url or jwks_file):
            raise ValueError("Set BARNEBRO_JWKS_URL or BARNEBRO_JWKS_FILE")
        self._issuer = issuer
        self._audience = audience
        self._jwks_url = jwks_url
        self._jwks_file = jwks_file
        self._keys: dict[str, Any] = {}
        self._fetched_at = -float("inf")
        self._lock = asyncio.Lock()
        self._cache: dict[str, tuple[float, Caller]] = {}

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
                        failure = FhirError(
                            503,
                            [Issue("transient", f"The signing keys cannot be loaded: {exc}")],
                            headers={"Retry-After": "5"},
                        )
                        raise failure from exc
        key = self._keys.get(kid)
        if key is None and len(self._keys) == 1 and not kid:
            key = next(iter(self._keys.values()))
        if key is None:
            raise unauthorized("The token is signed with an unknown key")
        return key

    async def verify(self, token: str) -> Caller:
        now = time.time()
        cached = self._cache.get(token)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise unauthorized(f"The bearer token is malformed: {exc}") from exc
        if header.get("alg") not in ALGORITHMS:
            raise unauthorized(f"Token algorithm {header.get('alg')!r} is not accepted")
        key = await self._key(str(header.get("kid") or ""))
        if key.algorithm_name != header["alg"]:
            raise unauthorized("The token's algorithm does not match its signing key")
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[header["alg"]],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iss", "aud"]},
            )
            caller = caller_from_claims(claims)
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise unauthorized(f"The bearer token was rejected: {exc}") from exc
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[token] = (float(claims["exp"]), caller)
        return caller
