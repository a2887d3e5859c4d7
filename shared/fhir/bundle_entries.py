"""Reading the entries of batch and transaction Bundles, once, strictly.

The gateway (to route and authorise each entry) and a service (to run a transaction)
read entries the same way: `Type`, `Type?query`, `Type/id` or `Type/id/_history/vid`, a
method that fits the URL, and preconditions that are strings. Anything else is a 400
naming the entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson

from shared.fhir.errors import FhirError, Issue, error
from shared.fhir.resources import ID_PATTERN
from shared.fhir.search_query import query_criteria
from shared.transport.wire import FhirRequest, FhirResponse, Interaction

METHOD_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3}
"""The order in which a transaction's entries run (FHIR R4 §3.1.0.11.2)."""


@dataclass(frozen=True)
class EntryRequest:
    method: str
    resource_type: str
    id: str | None
    version: str | None
    params: list[tuple[str, str]]
    if_match: str | None
    if_none_exist: str | None

    @property
    def interaction(self) -> Interaction:
        if self.method == "GET":
            if self.version is not None:
                return "vread"
            return "read" if self.id else "search"
        return {"POST": "create", "PUT": "update"}.get(self.method, "delete")  # type: ignore[return-value]

    def to_request(self, base: FhirRequest) -> FhirRequest:
        """The single interaction this entry asks for, on behalf of the Bundle's caller."""
        return base.model_copy(
            update={
                "interaction": self.interaction,
                "resource_type": self.resource_type,
                "id": self.id,
                "version": self.version,
                "params": self.params,
                "if_match": self.if_match,
                "if_none_exist": self.if_none_exist,
            }
        )


def at_entry(index: int, exc: FhirError) -> FhirError:
    """`exc` of one entry, each issue prefixed with the entry it is about."""
    where = f"Bundle.entry[{index}]"
    issues = [
        Issue(i.code, f"{where}: {i.diagnostics}", i.severity, i.expression) for i in exc.issues
    ]
    return FhirError(exc.status, issues)


def _invalid(index: int, message: str) -> Exception:
    return error(400, "invalid", message, f"Bundle.entry[{index}].request")


def parse_entry(index: int, entry: Any) -> EntryRequest:
    request = entry.get("request") if isinstance(entry, dict) else None
    if isinstance(request, dict) and request.get("method") == "PATCH":
        raise error(
            400,
            "not-supported",
            "PATCH is not supported in a batch or transaction: send PATCH /fhir/{type}/{id}"
            " on its own",
            f"Bundle.entry[{index}].request.method",
        )
    if not isinstance(request, dict) or request.get("method") not in METHOD_ORDER:
        raise _invalid(index, "Each entry needs request.method GET, POST, PUT or DELETE")
    method, url = request["method"], request.get("url")
    if not isinstance(url, str) or not url.strip("/"):
        raise _invalid(index, "request.url must name a resource type")
    for precondition in ("ifMatch", "ifNoneExist"):
        if precondition in request and not isinstance(request[precondition], str):
            raise _invalid(index, f"request.{precondition} must be a string")
    path, _, query = url.partition("?")
    parts = path.strip("/").split("/")
    resource_type = parts[0]
    res_id = parts[1] if len(parts) > 1 else None
    version = parts[3] if len(parts) == 4 and parts[2] == "_history" else None
    if not resource_type.isalpha() or (len(parts) not in (1, 2) and version is None):
        raise _invalid(index, f"request.url {url!r} is not Type, Type/id or Type/id/_history/v")
    if res_id is not None and not ID_PATTERN.fullmatch(res_id):
        raise _invalid(index, f"{res_id!r} is not a valid FHIR id")
    if version is not None and method != "GET":
        raise _invalid(index, "Only GET may name a version")
    conditional_update = method == "PUT" and res_id is None and bool(query)
    if query and (method != "GET" or res_id is not None) and not conditional_update:
        raise error(
            400,
            "not-supported",
            "Conditional delete and query URLs other than a search or a conditional update"
            " (PUT Type?criteria) are not supported",
            f"Bundle.entry[{index}].request",
        )
    if method in ("PUT", "DELETE") and res_id is None and not conditional_update:
        raise _invalid(index, f"{method} needs Type/id" + (" or Type?criteria" * (method == "PUT")))
    if method == "POST" and res_id is not None:
        raise _invalid(index, "POST takes the resource type only; ids are assigned")
    if method in ("POST", "PUT") and not isinstance(entry.get("resource"), dict):
        raise error(400, "invalid", "The entry has no resource", f"Bundle.entry[{index}]")
    if conditional_update:
        where = f"Bundle.entry[{index}].request.url"
        params = query_criteria(query, f"The conditional update's {where}", where)
    else:
        params = parse_qsl(query, keep_blank_values=True)
    return EntryRequest(
        method,
        resource_type,
        res_id,
        version,
        params,
        request.get("ifMatch"),
        request.get("ifNoneExist"),
    )


def entry_result(response: FhirResponse) -> dict[str, Any]:
    """The response entry of a batch- or transaction-response for one interaction."""
    result: dict[str, Any] = {"response": {"status": str(response.status)}}
    for header, field in (("Location", "location"), ("ETag", "etag")):
        if header in response.headers:
            result["response"][field] = response.headers[header]
    if response.body:
        body = orjson.Fragment(response.body)
        if response.status >= 400:
            result["response"]["outcome"] = body
        else:
            result["resource"] = body
    if response.outcome and response.status < 400:
        result["response"]["outcome"] = orjson.Fragment(response.outcome)
    return result


def bundle_entries(
    bundle: dict[str, Any], expected_type: str
) -> list[tuple[dict[str, Any], EntryRequest]]:
    """Every entry of a batch or transaction with its parsed request."""
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != expected_type:
        raise error(400, "invalid", f"Expected a Bundle of type {expected_type}")
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise error(400, "invalid", "Bundle.entry must be a list", "Bundle.entry")
    return [(entry, parse_entry(index, entry)) for index, entry in enumerate(entries)]
