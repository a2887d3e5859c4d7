"""The local stack's own signing keys, development tokens and operator credentials.

`barnebro up` and `barnebro token` share two key pairs in the data directory:
- the integration key signs development tokens for organisations and persons (production
  uses HelseID's JWKS instead and never reads these files);
- the operator key signs operator and register credentials. In production the operator
  keeps this private key apart from every integration and gives the gateway only its
  public JWKS (`BARNEBRO_OPERATOR_JWKS_FILE`).

A third key stands for a client's DPoP key (RFC 9449): `barnebro token --dpop` binds a
token to it (`cnf.jkt`) and `barnebro dpop-proof` signs the proof of one request with it.
In production each client holds its own DPoP key and HelseID binds its tokens.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from shared.auth.dpop import make_proof, public_jwk, thumbprint
from shared.auth.scopes import ALL_SYSTEM_SCOPES
from shared.auth.tokens import (
    CONFIRMATION_CLAIM,
    CREDENTIAL_CLAIM,
    FHIR_USER_CLAIM,
    HPR_CLAIMS,
    ORGNR_CLAIMS,
    ROLES_CLAIM,
)

KEY_FILE = "signing-key.pem"
JWKS_FILE = "jwks.json"
KEY_ID = "barnebro-local-1"
OPERATOR_KEY_FILE = "operator-key.pem"
OPERATOR_JWKS_FILE = "operator-jwks.json"
OPERATOR_KEY_ID = "barnebro-operator-1"
OPERATOR_ISSUER = "barnebro-operator"
DPOP_KEY_FILE = "dpop-key.pem"
CREDENTIAL_SCOPES = {
    "operator": "system/*.cruds system/AuditEvent.cruds",
    "register": "system/*.cruds system/AuditEvent.cruds",
}
"""The scopes of operator credentials: all of them, so that what each may do is exactly its
column of the permission table (SMART scopes are how HelseID limits an integration)."""


def key_dir(data_dir: Path) -> Path:
    return data_dir / "auth"


def _ensure_private_key(key_path: Path) -> None:
    key_path.parent.mkdir(parents=True, exist_ok=True)
    if not key_path.exists():
        private = ec.generate_private_key(ec.SECP256R1())
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)


def _ensure_key_pair(data_dir: Path, key_file: str, jwks_file: str, key_id: str) -> Path:
    directory = key_dir(data_dir)
    key_path, jwks_path = directory / key_file, directory / jwks_file
    _ensure_private_key(key_path)
    if not jwks_path.exists():
        private_key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private_key.public_key()))  # type: ignore[arg-type]
        jwk.update({"kid": key_id, "use": "sig", "alg": "ES256"})
        jwks_path.write_text(json.dumps({"keys": [jwk]}, indent=2))
    return jwks_path


def ensure_local_keys(data_dir: Path) -> Path:
    """Create the integration key pair if missing; return its JWKS file path."""
    return _ensure_key_pair(data_dir, KEY_FILE, JWKS_FILE, KEY_ID)


def ensure_operator_keys(data_dir: Path) -> Path:
    """Create the operator key pair if missing; return its JWKS file path."""
    return _ensure_key_pair(data_dir, OPERATOR_KEY_FILE, OPERATOR_JWKS_FILE, OPERATOR_KEY_ID)


def dpop_key(data_dir: Path) -> ec.EllipticCurvePrivateKey:
    """The local DPoP key (P-256), created if missing."""
    key_path = key_dir(data_dir) / DPOP_KEY_FILE
    _ensure_private_key(key_path)
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def dpop_jkt(data_dir: Path) -> str:
    """The RFC 7638 thumbprint of the local DPoP key: the `cnf.jkt` of tokens bound to it."""
    return thumbprint(public_jwk(dpop_key(data_dir)))


def dpop_proof(data_dir: Path, method: str, url: str, token: str | None = None) -> str:
    """A DPoP proof for one request, signed with the local DPoP key."""
    return make_proof(dpop_key(data_dir), method=method, url=url, access_token=token)


def _sign(key_path: Path, key_id: str, claims: dict[str, object]) -> str:
    return jwt.encode(claims, key_path.read_bytes(), algorithm="ES256", headers={"kid": key_id})


def _times(ttl: int) -> dict[str, object]:
    now = int(time.time())
    return {"iat": now, "nbf": now, "exp": now + ttl, "jti": str(uuid.uuid4())}


def issue_token(
    data_dir: Path,
    *,
    orgnr: str,
    hpr: str | None = None,
    fhir_user: str | None = None,
    roles: list[str] | None = None,
    scope: str = ALL_SYSTEM_SCOPES,
    ttl: int = 3600,
    issuer: str = "barnebro-local",
    audience: str = "barnebro",
    dpop: bool = False,
) -> str:
    """A signed development token for an organisation (and the person acting), with the
    local and HelseID-style claim names. It says nothing about the organisation's kind:
    that is the register's."""
    ensure_local_keys(data_dir)
    claims: dict[str, object] = {
        "iss": issuer,
        "aud": audience,
        **_times(ttl),
        "sub": f"barnebro-dev-{orgnr or 'person'}",
        "client_id": f"barnebro-dev-{orgnr or 'person'}",
        "scope": scope,
    }
    if orgnr:
        claims[ORGNR_CLAIMS[1]] = orgnr
    if hpr:
        claims[HPR_CLAIMS[1]] = hpr
    if fhir_user:
        claims[FHIR_USER_CLAIM] = fhir_user
    if roles:
        claims[ROLES_CLAIM] = roles
    if dpop:
        claims[CONFIRMATION_CLAIM] = {"jkt": dpop_jkt(data_dir)}
    return _sign(key_dir(data_dir) / KEY_FILE, KEY_ID, claims)


def issue_credential(
    data_dir: Path,
    credential: str,
    *,
    ttl: int = 3600,
    issuer: str = OPERATOR_ISSUER,
    audience: str = "barnebro",
    subject: str = "barnebro-operator",
    dpop: bool = False,
) -> str:
    """An operator (`operator`) or population-register (`register`) credential signed
    with the operator key in the data directory."""
    if credential not in CREDENTIAL_SCOPES:
        raise ValueError(f"credential must be one of {sorted(CREDENTIAL_SCOPES)}")
    ensure_operator_keys(data_dir)
    claims: dict[str, object] = {
        "iss": issuer,
        "aud": audience,
        **_times(ttl),
        "sub": subject,
        "client_id": subject,
        "scope": CREDENTIAL_SCOPES[credential],
        CREDENTIAL_CLAIM: credential,
    }
    if dpop:
        claims[CONFIRMATION_CLAIM] = {"jkt": dpop_jkt(data_dir)}
    return _sign(key_dir(data_dir) / OPERATOR_KEY_FILE, OPERATOR_KEY_ID, claims)
