"""The HMAC-SHA256 signature of a rest-hook notification, and how a partner checks it.

Header `X-Barnebro-Signature: t=<unix seconds>,v1=<hex>`, where `<hex>` is the HMAC-SHA256
of `<t>.<body>` under the subscription's signing secret. The timestamp is signed too, so
a partner that refuses old timestamps (say, older than five minutes) cannot be replayed
an old notification.
"""

from __future__ import annotations

import hashlib
import hmac


def sign(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret: str, body: bytes, header: str, now: int, tolerance: int = 300) -> bool:
    """Whether `header` signs `body` under `secret` within `tolerance` seconds of `now`."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))
