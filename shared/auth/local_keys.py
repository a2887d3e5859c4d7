"""The local stack's own signing key and development tokens.

`barnebro up` and `barnebro token` share a key pair in the data directory: the private key
signs tokens, the public JWKS is what the gateway verifies against. Production uses
HelseID's JWKS instead and never reads these files.
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

from shared.auth.scopes import ALL_SYSTEM_SCOPES
from shared.auth.tokens import (
    FHIR_USER_CLAIM,
    HPR_CLAIMS,
    KIND_CLAIM,
    ORGNR_CLAIMS,
    ROLES_CLAIM,
)

KEY_FILE = "signing-key.pem"
JWKS_FILE = "jwks.json"
KEY_ID = "barnebro-local-1"


def key_dir(data_dir: Path) -> Path:
    return data_dir / "auth"


def ensure_local_keys(data_dir: Path) -> Path:
    """Create the key pair if missing; return the JWKS file path."""
    directory = key_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    key_path, jwks_path = directory / KEY_FILE, directory / JWKS_FILE
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
    if not jwks_path.exists():
        private_key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private_key.public_key()))  # type: ignore[arg-type]
        jwk.update({"kid": KEY_ID, "use": "sig", "alg": "ES256"})
        jwks_path.write_text(json.dumps({"keys": [jwk]}, indent=2))
    return jwks_path


def issue_token(
    data_dir: Path,
    *,
    orgnr: str,
    kind: str,
    hpr: str | None = None,
    fhir_user: str | None = None,
    roles: list[str] | None = None,
    scope: str = ALL_SYSTEM_SCOPES,
    ttl: int = 3600,
    issuer: str = "barnebro-local",
    audience: str = "barnebro",
) -> str:
    """A signed development token with local and HelseID-style claim names."""
    ensure_local_keys(data_dir)
    private_key = (key_dir(data_dir) / KEY_FILE).read_bytes()
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "nbf": now,
        "exp": now + ttl,
        "jti": str(uuid.uuid4()),
        "sub": f"barnebro-dev-{orgnr}",
        "client_id": f"barnebro-dev-{orgnr}",
        "scope": scope,
        ORGNR_CLAIMS[1]: orgnr,
        KIND_CLAIM: kind,
    }
    if hpr:
        claims[HPR_CLAIMS[1]] = hpr
    if fhir_user:
        claims[FHIR_USER_CLAIM] = fhir_user
    if roles:
        claims[ROLES_CLAIM] = roles
    return jwt.encode(claims, private_key, algorithm="ES256", headers={"kid": KEY_ID})
