"""What a Subscription asks for, read from the R4B resource with the backport extensions:
topic, filters, channel, endpoint, content, heartbeat, timeout, batch size, headers and
the signing secret. Every problem is reported at once, naming the element."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import SplitResult, urlsplit

from yarl import URL

from services.subscriptions.domain.criteria import Criterion, parse_criteria
from services.subscriptions.domain.topics import BY_URL, Topic
from services.subscriptions.domain.vocabulary import (
    CHANNEL_TYPE_EXT,
    CHANNELS,
    CONTENTS,
    FILTER_CRITERIA_EXT,
    HEARTBEAT_EXT,
    MAX_COUNT_EXT,
    MAX_HEADERS,
    NATS,
    PAYLOAD_CONTENT_EXT,
    RESERVED_HEADER_PREFIXES,
    RESERVED_HEADERS,
    REST_HOOK,
    SIGNING_SECRET_EXT,
    TIMEOUT_EXT,
)
from shared.fhir.elements import extension_value, extensions
from shared.rules import Problem

DEFAULT_TIMEOUT = 10
MAX_TIMEOUT = 120
DEFAULT_MAX_COUNT = 20
MAX_MAX_COUNT = 500
MAX_HEARTBEAT = 86_400
MIN_SECRET = 32
JSON_TYPES = ("application/fhir+json", "application/json")


@dataclass(frozen=True)
class SubscriptionSettings:
    topic: Topic
    criteria: tuple[Criterion, ...]
    channel: str
    endpoint: str | None
    content: str
    heartbeat: int | None
    timeout: int
    max_count: int
    headers: tuple[tuple[str, str], ...]
    secret: str | None


def instant_of(value: Any) -> datetime | None:
    """An instant with its time zone (`...Z` or `+01:00`), or None for anything else
    (including a leap second, which FHIR allows and Python cannot hold)."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _bad(message: str, where: str, status: int = 422, code: str = "value") -> Problem:
    return Problem(status, code, message, where)


def channel_type(channel: dict[str, Any]) -> str | None:
    """The channel a Subscription.channel asks for: the Backport channel-type coding, or
    `channel.type`."""
    for ext in extensions(channel.get("_type") or {}, CHANNEL_TYPE_EXT):
        coding = ext.get("valueCoding") or {}
        if coding.get("code"):
            return str(coding["code"])
    found = channel.get("type")
    return str(found) if found else None


def _number(
    holder: dict[str, Any],
    url: str,
    kind: str,
    low: int,
    high: int,
    where: str,
    problems: list[Problem],
) -> int | None:
    value = extension_value(holder, url, kind)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        problems.append(_bad(f"{url.rsplit('/', 1)[-1]} must be {low} to {high}", where))
        return None
    return value


HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}")
"""An HTTP header name (RFC 9110 token)."""
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_INSTANT = 10**15


def _headers(channel: dict[str, Any], problems: list[Problem]) -> tuple[tuple[str, str], ...]:
    found = []
    given = channel.get("header") or []
    if len(given) > MAX_HEADERS:
        problems.append(_bad(f"At most {MAX_HEADERS} headers", "Subscription.channel.header"))
        return ()
    names = [str(text).partition(":")[0].strip().lower() for text in given]
    if len(set(names)) != len(names):
        problems.append(_bad("Each header at most once", "Subscription.channel.header"))
        return ()
    for text in given:
        name, colon, value = str(text).partition(":")
        name = name.strip()
        if (
            not colon
            or not HEADER_NAME.fullmatch(name)
            or CONTROL.search(value)
            or len(value) > 4000
        ):
            problems.append(
                _bad(f"Header {text!r} must be 'Name: value'", "Subscription.channel.header")
            )
        elif not value.isascii():
            problems.append(
                _bad(
                    f"Header {name} must be ASCII (encode other characters, e.g. as"
                    " percent-encoded UTF-8): HTTP sends header values as bytes",
                    "Subscription.channel.header",
                )
            )
        elif name.lower() in RESERVED_HEADERS or name.lower().startswith(RESERVED_HEADER_PREFIXES):
            problems.append(
                _bad(f"Header {name} is set by the server", "Subscription.channel.header")
            )
        else:
            found.append((name, value.strip()))
    return tuple(found)


def _endpoint(
    channel: dict[str, Any], kind: str | None, allow_http: bool, problems: list[Problem]
) -> str | None:
    endpoint = channel.get("endpoint")
    where = "Subscription.channel.endpoint"
    if kind == NATS and endpoint is not None:
        problems.append(
            _bad(
                "The nats channel delivers to the subscribing organisation's own subject"
                " (<prefix>.partner.<its orgnr>); give no endpoint",
                where,
            )
        )
        return None
    if kind != REST_HOOK:
        return None
    if not isinstance(endpoint, str) or not endpoint:
        problems.append(
            _bad("A rest-hook needs an endpoint (an https URL)", where, code="required")
        )
        return None
    schemes = ("https", "http") if allow_http else ("https",)
    try:
        parts = urlsplit(endpoint)
        _ = parts.port  # an out-of-range port raises here
    except ValueError:
        parts = urlsplit("")
    if (
        parts.scheme not in schemes
        or not parts.hostname
        or CONTROL.search(endpoint)
        or " " in endpoint
        or len(endpoint) > 2000
        or not _one_reading(endpoint, parts)
    ):
        problems.append(
            _bad(f"Endpoint {endpoint!r} must be an absolute {' or '.join(schemes)} URL", where)
        )
        return None
    if parts.username or parts.password:
        problems.append(_bad("Put credentials in channel.header, not in the endpoint", where))
        return None
    return endpoint


BRACKETED_HOST = re.compile(r"\[[0-9A-Fa-f:.]+\](:[0-9]+)?")


def _one_reading(endpoint: str, parts: SplitResult) -> bool:
    """Whether every URL parser reads the same host as the one checked: no empty userinfo
    (credentials are refused on their own), no zone id, nothing around a bracketed
    address, a real port, and a URL the HTTP client (yarl) parses too."""
    netloc = parts.netloc
    if "@" in netloc and not (parts.username or parts.password):
        return False
    if "%" in netloc or parts.port == 0:
        return False
    if "[" in netloc and not BRACKETED_HOST.fullmatch(netloc):
        return False
    try:
        URL(endpoint)
    except ValueError:
        return False
    return True


def read_settings(
    subscription: dict[str, Any], *, allow_http: bool
) -> tuple[SubscriptionSettings | None, list[Problem]]:
    """The settings of a Subscription, or every problem with it."""
    problems: list[Problem] = []
    url = subscription.get("criteria")
    topic = BY_URL.get(url) if isinstance(url, str) else None
    if topic is None:
        known = ", ".join(sorted(BY_URL))
        problems.append(
            _bad(f"Unknown topic {url!r}: criteria must be one of {known}", "Subscription.criteria")
        )
    texts = [
        str(e.get("valueString"))
        for e in extensions(subscription.get("_criteria") or {}, FILTER_CRITERIA_EXT)
        if e.get("valueString")
    ]
    criteria: list[Criterion] = []
    if topic is not None:
        criteria, wrong = parse_criteria(topic, texts)
        problems += wrong
    channel = subscription.get("channel") or {}
    kind = channel_type(channel)
    if kind not in CHANNELS:
        problems.append(
            _bad(
                f"Channel {kind!r} is not offered; use one of {list(CHANNELS)}",
                "Subscription.channel.type",
            )
        )
    endpoint = _endpoint(channel, kind, allow_http, problems)
    payload = channel.get("payload")
    if payload is not None and payload not in JSON_TYPES:
        problems.append(
            _bad(
                f"Payload {payload!r} is not offered: use application/fhir+json",
                "Subscription.channel.payload",
            )
        )
    content = extension_value(channel.get("_payload") or {}, PAYLOAD_CONTENT_EXT, "valueCode")
    content = content or "id-only"
    if content not in CONTENTS:
        problems.append(
            _bad(
                f"Content {content!r} must be one of {list(CONTENTS)}",
                "Subscription.channel.payload",
            )
        )
    where = "Subscription.channel.extension"
    heartbeat = _number(
        channel, HEARTBEAT_EXT, "valueUnsignedInt", 0, MAX_HEARTBEAT, where, problems
    )
    timeout = _number(channel, TIMEOUT_EXT, "valueUnsignedInt", 1, MAX_TIMEOUT, where, problems)
    max_count = _number(
        channel, MAX_COUNT_EXT, "valuePositiveInt", 1, MAX_MAX_COUNT, where, problems
    )
    headers = _headers(channel, problems)
    secret = extension_value(channel, SIGNING_SECRET_EXT, "valueString")
    if kind == REST_HOOK and (not isinstance(secret, str) or len(secret) < MIN_SECRET):
        problems.append(
            _bad(
                f"A rest-hook needs a signing secret of at least {MIN_SECRET} characters"
                f" (extension {SIGNING_SECRET_EXT} on channel)",
                where,
                code="required",
            )
        )
    end = subscription.get("end")
    if end is not None and instant_of(end) is None:
        problems.append(
            _bad(f"end {end!r} must be an instant with a time zone", "Subscription.end")
        )
    if problems or topic is None or kind is None:
        return None, problems
    return (
        SubscriptionSettings(
            topic=topic,
            criteria=tuple(criteria),
            channel=kind,
            endpoint=endpoint,
            content=str(content),
            heartbeat=heartbeat or None,
            timeout=timeout or DEFAULT_TIMEOUT,
            max_count=max_count or DEFAULT_MAX_COUNT,
            headers=headers,
            secret=secret if kind == REST_HOOK else None,
        ),
        [],
    )


__all__ = ["NATS", "REST_HOOK", "SubscriptionSettings", "channel_type", "read_settings"]
