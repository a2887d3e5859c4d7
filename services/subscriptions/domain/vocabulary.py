"""The URLs and codes of subscriptions: the R5 Backport extensions on the R4B Subscription
and barnebro's own (the channel types with the nats channel, the signing secret, the
delivery state). `CODE_SYSTEMS` lists the code system for the consent service to serve."""

from __future__ import annotations

from shared.codes import CodedEnum
from shared.fhir.code_systems import CodeSystemSource
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


class ChannelType(CodedEnum):
    """How notifications reach a subscriber: the backport-channel-type codes barnebro
    takes (CodeSystem subscription-channel-type)."""

    REST_HOOK = (
        "rest-hook",
        "REST hook",
        "An HTTPS POST of each notification Bundle to the subscriber's endpoint, signed"
        " with HMAC-SHA256 by the subscription's secret",
    )
    NATS = (
        "nats",
        "NATS",
        "Each notification Bundle published on the subscribing organisation's own NATS subject",
    )


REST_HOOK = ChannelType.REST_HOOK.value
NATS = ChannelType.NATS.value
CHANNELS = tuple(kind.value for kind in ChannelType)
CODE_SYSTEMS = (CodeSystemSource(CHANNEL_TYPE_SYSTEM, "Subscription channel types", ChannelType),)
"""The subscriptions service's code system, served by the consent service."""
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
