"""How a service answers one FHIR interaction: status, version headers and body.

Reads answer with the stored bytes as they are; writes honour `Prefer: return`. Building
the answer is separate from deciding it, so the router and a transaction answer alike.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Any

import orjson

from shared.fhir.errors import FhirError, Issue, error, information, operation_outcome
from shared.fhir.resources import FHIR_JSON, ID_PATTERN, version_number
from shared.store.resource_store import StoredResource
from shared.transport.wire import FhirRequest, FhirResponse


def http_date(instant: str) -> str:
    return format_datetime(datetime.fromisoformat(instant.replace("Z", "+00:00")), usegmt=True)


def version_headers(stored: StoredResource, base_url: str) -> dict[str, str]:
    return {
        "ETag": stored.etag,
        "Last-Modified": http_date(stored.last_updated),
        "Location": f"{base_url}/{stored.res_type}/{stored.res_id}/_history/{stored.version}",
    }


ENTITY_TAG = r'(?:W/)?"([^"\x00-\x20\x7f]*)"'
ENTITY_TAGS = re.compile(rf"\s*{ENTITY_TAG}\s*(?:,\s*{ENTITY_TAG}\s*)*")


@dataclass(frozen=True)
class IfMatch:
    """An `If-Match` precondition (RFC 9110 §13.1.1), from a header or a Bundle entry's
    `request.ifMatch`: `*` (any current version) or a list of entity tags, which match
    when one of them names the current version (`W/"3"`; the server's ETags are weak
    and compared weakly, as FHIR does)."""

    versions: frozenset[int] | None
    """The versions named; None for `*`."""

    def matches(self, current: StoredResource | None) -> bool:
        if current is None:
            return False
        if self.versions is None:
            return not current.deleted
        return current.version in self.versions


def parse_if_match(value: str) -> IfMatch:
    """`*` or a list of entity tags (400 for anything else); a tag that is no version of
    ours (`"abc"`) is a valid one that never matches."""
    if value.strip() == "*":
        return IfMatch(None)
    if ENTITY_TAGS.fullmatch(value) is None:
        quoted = orjson.dumps(value if len(value) <= 60 else f"{value[:57]}...").decode()
        raise error(400, "invalid", f'If-Match {quoted} is not * or a list of ETags such as W/"3"')
    tags = re.findall(ENTITY_TAG, value)
    return IfMatch(frozenset(v for v in map(version_number, tags) if v is not None))


def checked_id(res_id: str | None) -> str:
    if res_id is None or not ID_PATTERN.fullmatch(res_id):
        raise error(400, "invalid", f"{res_id!r} is not a valid FHIR id")
    return res_id


def not_found(resource_type: str, res_id: str) -> FhirError:
    """The one answer for a resource that is missing or that the caller may not see."""
    return error(404, "not-found", f"{resource_type}/{res_id} is not known")


def resource_response(
    stored: StoredResource | None, resource_type: str, res_id: str, base_url: str
) -> FhirResponse:
    """A read or vread: the stored bytes, 404 when absent, 410 when deleted."""
    if stored is None:
        raise not_found(resource_type, res_id)
    if stored.deleted:
        exc = error(410, "deleted", f"{resource_type}/{res_id} was deleted")
        exc.headers["ETag"] = stored.etag
        raise exc
    headers = version_headers(stored, base_url)
    headers.pop("Location")
    headers["Content-Type"] = FHIR_JSON
    return FhirResponse(status=200, headers=headers, body=stored.body or b"")


def json_response(status: int, data: dict[str, Any]) -> FhirResponse:
    """A FHIR JSON answer built by the service (a Bundle, an OperationOutcome)."""
    return FhirResponse(status=status, headers={"Content-Type": FHIR_JSON}, body=orjson.dumps(data))


def written(
    request: FhirRequest, stored: StoredResource, status: int, warnings: list[Issue]
) -> FhirResponse:
    """A create's or update's answer as `Prefer: return` asks: the resource (default),
    nothing, or an OperationOutcome; warnings travel beside the resource."""
    headers = version_headers(stored, request.base_url)
    outcome = orjson.dumps(operation_outcome(warnings)) if warnings else b""
    if request.prefer_return == "minimal":
        return FhirResponse(status=status, headers=headers, outcome=outcome)
    headers["Content-Type"] = FHIR_JSON
    if request.prefer_return == "OperationOutcome":
        issues = [*warnings, information(f"{stored.res_type}/{stored.res_id} stored")]
        return FhirResponse(
            status=status, headers=headers, body=orjson.dumps(operation_outcome(issues))
        )
    return FhirResponse(status=status, headers=headers, body=stored.body or b"", outcome=outcome)
