"""FHIR `Provenance`, derived at the edge from the statements a caller may read.

Who made each statement of a plan, a Goal, a care team or a referral, when and under which legal
regime is already part of the statement (`shared.fhir.statements`): the care plan service
stamps it on every write, a referral's statements are its requester's. A Provenance
resource is that answer in FHIR's own shape, one per statement of one version of its
target (`Provenance/<type code>.<id>.<version>.<element>`, the type code short so that the
id stays within FHIR's 64 characters), made from the target as the caller
reads it from the service that holds it. So it can never say more than its target: its
access is its target's (that service's consent step decides and audits the read), a
target the caller may not see answers exactly as a missing one, and there is nothing to
keep in step. Read by id, searched by `target` (`Type/id`, or a version) or `patient`, and
`_revinclude=Provenance:target` on a search of plans, Goals or referrals; never written.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import orjson

from shared.access.permissions import action_of, permission
from shared.auth.scopes import authorize_request
from shared.fhir.answers import not_found
from shared.fhir.elements import orgnr_of
from shared.fhir.errors import error
from shared.fhir.extensions import LEGAL_REGIME
from shared.fhir.resources import FHIR_JSON
from shared.fhir.statements import kind_regime, stamp_of, statements
from shared.identifiers import HPR_SYSTEM, ORGNR_SYSTEM
from shared.transport.wire import FhirRequest, FhirResponse

TARGET_TYPES = ("CarePlan", "Goal", "CareTeam", "ServiceRequest")
REVINCLUDE = "Provenance:target"
TYPES = "|".join(TARGET_TYPES)
ID_CODES = {"CarePlan": "cp", "Goal": "goal", "CareTeam": "ct", "ServiceRequest": "sr"}
"""The target's type in a Provenance id, short so that the id is a FHIR id (at most 64
characters): `sr.<uuid>.<version>.reasoncode-<n>` with six-digit version and index is 64;
with `ServiceRequest` in full, the first reason of a referral's first version was 66."""
ID_TYPES = {code: res_type for res_type, code in ID_CODES.items()}
ID = re.compile(
    rf"({'|'.join(ID_TYPES)})\.([A-Za-z0-9\-]{{1,36}})\.(\d{{1,6}})\.([a-z]+-?\d{{0,6}})"
)
TARGET = re.compile(rf"({TYPES})/([A-Za-z0-9\-.]{{1,64}})(?:/_history/(\d{{1,6}}))?")
TARGET_PATH_EXT = "http://hl7.org/fhir/StructureDefinition/targetPath"
REGIME_EXT = LEGAL_REGIME.url
PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
MAX_TARGETS = 100
"""Targets of one type a `patient` search derives Provenance from (the first page)."""

Dispatch = Callable[[FhirRequest, bytes], Awaitable[FhirResponse]]
Kinds = Callable[[str], Awaitable[str | None]]


def _slot(path: str) -> str:
    """`CarePlan.note[2]` → `note-2`; a Goal's own statement → `self`."""
    found = re.fullmatch(r"[A-Za-z]+\.([A-Za-z]+)\[(\d+)\]", path)
    return f"{found.group(1).lower()}-{found.group(2)}" if found else "self"


def _refuse_writes(request: FhirRequest) -> None:
    if request.interaction in ("read", "search", "create", "update", "patch", "delete"):
        permission(request.caller, "Provenance", action_of(request))  # writes: 405
    if request.interaction not in ("read", "search"):
        raise error(
            405,
            "not-supported",
            "Provenance is derived from the statements, each of one version of its target:"
            " it is never written and has no history of its own",
        )


def refused_in_transaction(request: FhirRequest) -> None:
    """A transaction runs in the one service that stores its entries, and Provenance is
    derived here: a write of it is refused as on its own (405), a read is sent on its own
    or in a batch (400)."""
    _refuse_writes(request)
    raise error(
        400,
        "not-supported",
        "Provenance is derived from its targets, not stored: read it on its own or in a"
        " batch, not in a transaction",
    )


class ProvenanceView:
    """Answers every interaction on `Provenance` from the targets as the caller reads them."""

    def __init__(self, dispatch: Dispatch, kind_of: Kinds) -> None:
        self._dispatch = dispatch
        self._kind_of = kind_of

    async def answer(self, request: FhirRequest) -> FhirResponse:
        _refuse_writes(request)
        if request.interaction == "read":
            found = await self._by_id(request, request.id or "")
            if found is None:
                raise not_found("Provenance", request.id or "")
            return _json(200, found)
        return _json(200, _bundle(request, await self._search(request)))

    async def revinclude(self, request: FhirRequest, body: bytes) -> FhirResponse:
        """A search of plans, Goals or referrals with `_revinclude=Provenance:target`: the
        matches, then the Provenance of each as included entries."""
        as_provenance = request.model_copy(
            update={"resource_type": "Provenance", "interaction": "search", "id": None}
        )
        authorize_request(as_provenance)  # the included type's scope, as for any include
        permission(request.caller, "Provenance", "search")
        if any(key in ("_summary", "_elements") for key, _ in request.params):
            raise error(
                400,
                "not-supported",
                "_revinclude=Provenance:target is derived from whole statements; it is not"
                " combined with _summary or _elements",
            )
        params = [(k, v) for k, v in request.params if (k, v) != ("_revinclude", REVINCLUDE)]
        answer = await self._dispatch(request.model_copy(update={"params": params}), body)
        if answer.status != 200:
            return answer
        bundle = orjson.loads(answer.body)
        included = []
        for entry in bundle.get("entry") or []:
            if (entry.get("search") or {}).get("mode") == "match":
                included += await self._derived(entry["resource"], None)
        bundle["entry"] = [*(bundle.get("entry") or []), *(_entry(request, p, "include")
                                                           for p in included)]  # fmt: skip
        for link in bundle.get("link") or []:  # the next page includes them too
            link["url"] += ("&" if "?" in link["url"] else "?") + urlencode(
                [("_revinclude", REVINCLUDE)]
            )
        return FhirResponse(status=200, headers=answer.headers, body=orjson.dumps(bundle))

    async def _by_id(self, request: FhirRequest, res_id: str) -> dict[str, Any] | None:
        parsed = ID.fullmatch(res_id)
        if parsed is None:
            return None
        code, target_id, version, slot = parsed.groups()
        res_type = ID_TYPES[code]
        target = await self._read(request, res_type, target_id, version)
        if target is None:
            return None
        return next((p for p in await self._derived(target, slot) if p["id"] == res_id), None)

    async def _search(self, request: FhirRequest) -> list[dict[str, Any]]:
        params = dict(request.params)
        unknown = sorted(set(params) - {"_id", "target", "patient", "_count", "_total"})
        if unknown or len(params) != len(request.params):
            raise error(
                400,
                "not-supported",
                "Provenance is searched by one of _id, target (Type/id or Type/id/_history/v)"
                f" or patient (Patient/id); not {unknown or 'a repeated parameter'}",
            )
        if "_id" in params:
            found = await self._by_id(request, params["_id"])
            return [found] if found else []
        if "target" in params:
            reference = params["target"]
            parsed = TARGET.fullmatch(reference)
            if parsed is None:
                return []
            target = await self._read(request, *parsed.groups())
            return await self._derived(target, None) if target else []
        if "patient" in params:
            patient = params["patient"]
            if not re.fullmatch(r"Patient/[A-Za-z0-9\-.]{1,64}", patient):
                raise error(400, "invalid", "patient is Patient/<id>", "patient")
            derived = []
            for res_type in TARGET_TYPES:
                for target in await self._targets(request, res_type, patient):
                    derived += await self._derived(target, None)
            return derived
        raise error(400, "required", "Provenance is searched by _id, target or patient")

    async def _read(
        self, request: FhirRequest, res_type: str, res_id: str, version: str | None
    ) -> dict[str, Any] | None:
        """The target as the caller reads it, with its own scopes (a token that may not
        read the target's type may not read its provenance); None for one it may not see
        or that is not there (the two alike)."""
        read = request.model_copy(
            update={
                "interaction": "vread" if version else "read",
                "resource_type": res_type,
                "id": res_id,
                "version": version,
                "params": [],
            }
        )
        answer = await self._dispatch(read, b"")
        return orjson.loads(answer.body) if answer.status == 200 else None

    async def _targets(
        self, request: FhirRequest, res_type: str, patient: str
    ) -> list[dict[str, Any]]:
        search = request.model_copy(
            update={
                "interaction": "search",
                "resource_type": res_type,
                "id": None,
                "params": [("patient", patient), ("_count", str(MAX_TARGETS))],
            }
        )
        answer = await self._dispatch(search, b"")
        if answer.status != 200:
            return []
        entries = orjson.loads(answer.body).get("entry") or []
        return [e["resource"] for e in entries if (e.get("search") or {}).get("mode") == "match"]

    async def _derived(self, target: dict[str, Any], slot: str | None) -> list[dict[str, Any]]:
        """The Provenance of each statement of `target` (only `slot`'s, when given)."""
        res_type, res_id = str(target.get("resourceType")), str(target.get("id"))
        version = str((target.get("meta") or {}).get("versionId") or "1")
        found = []
        writer: dict[str, Any] | None = None  # asked once, for the statements without a stamp
        for path, statement in statements(target):
            if slot is not None and _slot(path) != slot:
                continue
            said = stamp_of(statement)
            if not said:
                writer = await self._requesters(target) if writer is None else writer
                said = writer
            found.append(
                _provenance(f"{ID_CODES[res_type]}.{res_id}.{version}.{_slot(path)}",
                            f"{res_type}/{res_id}/_history/{version}", path, said,
                            str((target.get("meta") or {}).get("lastUpdated") or ""))
            )  # fmt: skip
        return found

    async def _requesters(self, target: dict[str, Any]) -> dict[str, Any]:
        """A statement without a stamp of its own is its record's writer's: a referral's
        requester, under the law of its kind."""
        orgnr = orgnr_of(target.get("requester"))
        if orgnr is None:
            return {}
        said: dict[str, Any] = {"organization": orgnr}
        regime = kind_regime(await self._kind_of(orgnr))
        if regime:
            said["regime"] = regime
        if target.get("authoredOn"):
            said["at"] = target["authoredOn"]
        return said


CAPABILITY = {
    "type": "Provenance",
    "documentation": "Derived from the statements of plans, Goals and referrals the caller may"
    " read: who made each, when, under which regime, and what it quotes. Never written.",
    "interaction": [{"code": "read"}, {"code": "search-type"}],
    "searchParam": [
        {"name": "target", "type": "reference", "documentation": "Type/id or Type/id/_history/v"},
        {"name": "patient", "type": "reference", "documentation": "Patient/id"},
    ],
}
"""The CapabilityStatement's entry for Provenance (no service owns it)."""


def _provenance(
    res_id: str, target: str, path: str, said: dict[str, Any], updated: str
) -> dict[str, Any]:
    agents: list[dict[str, Any]] = []
    if said.get("organization"):
        agents.append(_agent("author", ORGNR_SYSTEM, said["organization"], said.get("role")))
    if said.get("practitioner"):
        agents.append(_agent("performer", HPR_SYSTEM, said["practitioner"], None))
    if said.get("quotedBy"):
        agents.append(_agent("enterer", ORGNR_SYSTEM, said["quotedBy"], None))
    if said.get("quotedByPractitioner"):
        agents.append(_agent("enterer", HPR_SYSTEM, said["quotedByPractitioner"], None))
    resource: dict[str, Any] = {
        "resourceType": "Provenance",
        "id": res_id,
        "target": [{"reference": target,
                    "extension": [{"url": TARGET_PATH_EXT, "valueString": path}]}],
        "recorded": said.get("quotedAt") or said.get("at") or updated,
        "agent": agents or [{"who": {"display": "unknown"}}],
    }  # fmt: skip
    if said.get("at"):
        resource["occurredDateTime"] = said["at"]
    if said.get("regime"):
        resource["extension"] = [{"url": REGIME_EXT, "valueCode": said["regime"]}]
    if said.get("source"):
        resource["entity"] = [{"role": "quotation", "what": {"reference": said["source"]}}]
    return resource


def _agent(kind: str, system: str, value: str, roles: list[str] | None) -> dict[str, Any]:
    agent: dict[str, Any] = {
        "type": {"coding": [{"system": PARTICIPANT, "code": kind}]},
        "who": {"identifier": {"system": system, "value": value}},
    }
    if roles:
        agent["role"] = [{"coding": [{"code": role}]} for role in roles]
    return agent


def _entry(request: FhirRequest, resource: dict[str, Any], mode: str) -> dict[str, Any]:
    return {
        "fullUrl": f"{request.base_url}/Provenance/{resource['id']}",
        "resource": resource,
        "search": {"mode": mode},
    }


def _bundle(request: FhirRequest, found: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": len(found),
        "link": [{"relation": "self", "url": _self_url(request)}],
        "entry": [_entry(request, p, "match") for p in found],
    }


def _self_url(request: FhirRequest) -> str:
    path = f"{request.base_url}/Provenance"
    return f"{path}?{urlencode(request.params)}" if request.params else path


def _json(status: int, data: dict[str, Any]) -> FhirResponse:
    return FhirResponse(status=status, headers={"Content-Type": FHIR_JSON}, body=orjson.dumps(data))
