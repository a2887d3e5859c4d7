"""The URLs and codes of subscriptions: the R5 Backport extensions on the R4B Subscription
and barnebro's own (the nats channel, the signing secret, the delivery state)."""

from __future__ import annotations

from shared.fhir.extensions import SUBSCRIPTION_SIGNING_SECRET

BACKPORT = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition/"
FILTER_CRITERIA_EXT = BACKPORT + "backport-filter-criteria"
CHANNEL_TYPE_EXT = BACKPORT + "backport-channel-type"
PAYLOAD_CONTENT_EXT = BACKPORT + "backport-payload-content"
HEARTBEAT_EXT = BACKPORT + "backport-heartbeat-period"
TIMEOUT_EXT = BACKPORT + "backport-timeout"
MAX_COUNT_EXT = BACKPORT + "backport-max-count"

SIGNING_SECRET_EXT = SUBSCRIPTION_SIGNING_SECRET.url
"""On Subscription.channel: the partner's secret for the HMAC-SHA256 signature."""
CHANNEL_TYPE_SYSTEM = "https://barnebro.no/fhir/CodeSystem/subscription-channel-type"
ERROR_SYSTEM = "https://barnebro.no/fhir/CodeSystem/subscription-error"

REST_HOOK = "rest-hook"
NATS = "nats"
CHANNELS = (REST_HOOK, NATS)
CONTENTS = ("empty", "id-only", "full-resource")

SIGNATURE_HEADER = "X-Barnebro-Signature"
"""`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" with the subscription's secret>`."""
SUBSCRIPTION_HEADER = "X-Barnebro-Subscription"

RESERVED_HEADER_PREFIXES = ("proxy-", "x-forwarded-", "x-barnebro-")
"""Whole families of headers a partner may not set: proxies' own, forwarding claims (such
as X-Forwarded-Client-Cert, how some receivers learn who called them) and the server's."""
MAX_HEADERS = 20
RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "transfer-encoding",
        "connection",
        # Hop-by-hop, and what proxies act on: a partner's header must not change how
        # the request travels or claim where it came from.
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "expect",
        "proxy-authorization",
        "proxy-authenticate",
        "proxy-connection",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-host",
        "x-forwarded-proto",
        "via",
        "x-real-ip",
        "true-client-ip",
        "x-client-ip",
        "x-original-url",
        "x-rewrite-url",
        "x-http-method-override",
        "max-forwards",
        "content-encoding",
        SIGNATURE_HEADER.lower(),
        SUBSCRIPTION_HEADER.lower(),
    }
)
