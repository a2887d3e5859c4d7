"""Who is calling: the access token of a request, as a bearer token or DPoP-bound.

`Authorization: Bearer <JWT>` or `Authorization: DPoP <JWT>` with one `DPoP` proof header
(RFC 9449). The token is verified (and cached) by `shared.auth.tokens`; the proof is new on
every request and checked on every request, by `shared.auth.dpop`, against the URL the
client used: the configured public base URL, never the `Host` header. Which tokens may come
as bearer tokens is `BARNEBRO_DPOP`'s: never one bound to a key (RFC 9449 §7.2), and under
`required` no integration token at all.

Every refusal is a 401 whose `WWW-Authenticate` offers the schemes the client may use
(DPoP with its algorithms), the error on the scheme it used; a request with more than one
`Authorization` header is a 400 with the same challenges.
"""

from __future__ import annotations

import nats.errors
from aiohttp import web

from services.gateway.gateway import Gateway
from shared.auth.dpop import ALGORITHMS, InvalidProof, Mode, verify_proof
from shared.auth.tokens import OPERATOR_CREDENTIALS, Verified
from shared.fhir.errors import FhirError, Issue

DPOP_HEADER = "DPoP"
REALM = 'realm="barnebro"'


def challenge(mode: Mode, used: str = "", code: str = "") -> str:
    """The `WWW-Authenticate` value: Bearer (unless DPoP is required) and DPoP, the error
    code on the scheme the client used (on DPoP when it used one not offered)."""
    offered = ["DPoP"] if mode == "required" else ["Bearer", "DPoP"]
    at = used if used in offered else "DPoP"
    parts = []
    for scheme in offered:
        params = [REALM]
        if code and scheme == at:
            params.append(f'error="{code}"')
        if scheme == "DPoP":
            params.append(f'algs="{" ".join(ALGORITHMS)}"')
        parts.append(f"{scheme} {', '.join(params)}")
    return ", ".join(parts)


def refused(mode: Mode, used: str, code: str, message: str) -> FhirError:
    return FhirError(
        401, [Issue("login", message)], headers={"WWW-Authenticate": challenge(mode, used, code)}
    )


def public_url(base_url: str, path: str) -> str:
    """The URL the client called, as its proof's `htu` must name it: the public FHIR base
    URL (which ends with the gateway's `/fhir`, or stands for it behind a proxy) and the
    path the gateway received."""
    if path == "/fhir" or path.startswith("/fhir/"):
        return base_url + path.removeprefix("/fhir")
    return base_url.removesuffix("/fhir") + path


async def authenticate(
    gateway: Gateway, request: web.Request, authorizations: list[str]
) -> Verified:
    """The verified token of a request whose `Authorization` headers are `authorizations`:
    none or one. More than one is a malformed request (RFC 6750 §3.1 `invalid_request`,
    400), whichever comes first: a server that read only one would let a client (or a proxy
    that adds its own) choose which token counts."""
    mode: Mode = gateway.settings.dpop
    if len(authorizations) > 1:
        raise FhirError(
            400,
            [Issue("invalid", "Exactly one Authorization header is allowed")],
            headers={"WWW-Authenticate": challenge(mode, "", "invalid_request")},
        )
    scheme, _, token = (authorizations[0] if authorizations else "").partition(" ")
    token = token.strip()
    used = {"bearer": "Bearer", "dpop": "DPoP"}.get(scheme.lower(), "")
    if not used or not token:
        offered = "DPoP <JWT> with a DPoP proof" + (" or Bearer <JWT>" if mode == "bound" else "")
        raise refused(mode, "", "", f"A token is required: Authorization: {offered}")
    try:
        verified = await gateway.verifier.verified(token)
    except FhirError as exc:
        if exc.status == 401:
            exc.headers = {"WWW-Authenticate": challenge(mode, used, "invalid_token")}
        raise
    if used == "Bearer":
        if verified.jkt is not None:
            raise refused(
                mode, used, "invalid_token",
                "The token is bound to a DPoP key: send it as Authorization: DPoP <JWT> with a"
                " DPoP proof",
            )  # fmt: skip
        if mode == "required" and verified.caller.credential not in OPERATOR_CREDENTIALS:
            raise refused(mode, used, "invalid_token", "The token must be DPoP-bound")
        return verified
    if verified.jkt is None:
        raise refused(mode, used, "invalid_token", "The token is not bound to a DPoP key")
    proofs = request.headers.getall(DPOP_HEADER, [])
    if len(proofs) != 1:
        raise refused(mode, used, "invalid_dpop_proof", "Exactly one DPoP proof is required")
    settings = gateway.settings
    try:
        await verify_proof(
            proofs[0],
            method=request.method,
            url=public_url(settings.base_url, request.rel_url.raw_path),
            access_token=token,
            jkt=verified.jkt,
            max_age=settings.dpop_max_age,
            skew=settings.dpop_clock_skew,
            replays=gateway.replays,
        )
    except InvalidProof as exc:
        message = f"The DPoP proof is invalid: {exc}"
        raise refused(mode, used, "invalid_dpop_proof", message) from exc
    except (nats.errors.Error, TimeoutError) as exc:
        raise FhirError(
            503,
            [Issue("transient", "Used DPoP proofs cannot be checked now; try again")],
            headers={"Retry-After": "2"},
        ) from exc
    return verified
