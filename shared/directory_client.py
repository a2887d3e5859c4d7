"""Reading the directory service from another service, over NATS.

Services ask the directory (Patient, RelatedPerson, Organization, …) the way the gateway
does, as a FHIR request with the service's own system caller, so the directory's scope
checks apply. Each answer is read fresh for each unit of work (and asked once in it,
`shared.directory_answers`): rules about who may do what must follow the directory at
once when it changes.

Whether a client has a relation to a child is asked of the directory as that client
(`relation`, `resolve_subject(..., as_caller=...)`): the directory decides it in one
place, and a child without one answers exactly as a missing child.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson

from shared.access.permissions import Rule, permission
from shared.codes import organisation_kinds
from shared.directory_answers import answered_once
from shared.fhir.answers import not_found
from shared.fhir.elements import her_id_of, organisation_reference
from shared.fhir.elements import orgnr_of as orgnr_of_reference
from shared.fhir.errors import FhirError, Issue, error
from shared.fhir.references import reference_target
from shared.fhir.search_params import ParamType
from shared.fhir.search_query import Criterion, SearchQuery
from shared.identifiers import (
    HERID_SYSTEM,
    ORGNR_SYSTEM,
    PERSON_SYSTEMS,
    InvalidIdentifier,
    validate_identifier,
)
from shared.transport.forwarding import Sender
from shared.transport.wire import Caller, FhirRequest, request_subject


def service_caller(service: str, *resource_types: str) -> Caller:
    """The caller a service reads the directory as: read and search of `resource_types`."""
    return Caller(
        credential="service",
        client_id=f"barnebro-{service}",
        scopes=[f"system/{resource_type}.rs" for resource_type in resource_types],
    )


def token(system: str, value: str) -> str:
    """A token search value for exactly this identifier (a comma in it is escaped, so it
    cannot turn one value into several)."""
    return f"{system}|{value.replace(',', chr(92) + ',')}"


def orgnr_in(organization: dict[str, Any] | None) -> str | None:
    """The organisasjonsnummer on an Organization."""
    return next(
        (
            str(i["value"])
            for i in (organization or {}).get("identifier") or []
            if i.get("system") == ORGNR_SYSTEM and i.get("value")
        ),
        None,
    )


class DirectoryClient:
    def __init__(self, forwarder: Sender, prefix: str, base_url: str, caller: Caller) -> None:
        self._forwarder = forwarder
        self._prefix = prefix
        self._base_url = base_url
        self._caller = caller

    async def ask(self, request: FhirRequest) -> tuple[int, Any]:
        """The directory's status and answer (parsed anew for each caller, who may change
        it); within `one_answer_per_question`, a read or search answered before is not sent
        again. No answer (5xx) is a 503, never taken for "not there" or "no relation"."""
        status, body = await answered_once(request, self._send)
        if status >= 500:
            raise error(503, "transient", f"The directory could not answer ({status})")
        return status, orjson.loads(body) if body else None

    async def _send(self, request: FhirRequest) -> tuple[int, bytes]:
        subject = request_subject(self._prefix, request.resource_type or "")
        response = await self._forwarder.send(subject, request, b"")
        return response.status, response.body

    def request(self, caller: Caller | None = None, **fields: Any) -> FhirRequest:
        return FhirRequest(base_url=self._base_url, caller=caller or self._caller, **fields)

    async def read(self, resource_type: str, res_id: str) -> dict[str, Any] | None:
        """The current version of a directory resource; None if it is not there."""
        status, resource = await self.ask(
            self.request(interaction="read", resource_type=resource_type, id=res_id)
        )
        return resource if status == 200 and isinstance(resource, dict) else None

    async def search(self, resource_type: str, params: list[tuple[str, str]]) -> list[Any]:
        """The matches of a directory search (first page); 503 if it cannot answer."""
        status, bundle = await self.ask(
            self.request(interaction="search", resource_type=resource_type, params=params)
        )
        if status != 200:
            raise error(503, "transient", f"The directory could not search {resource_type}")
        return [
            entry["resource"]
            for entry in bundle.get("entry", [])
            if entry.get("search", {}).get("mode") == "match"
        ]

    async def orgnr_of(self, reference: str) -> str | None:
        """The organisasjonsnummer of a registered Organization (`Organization/<id>`)."""
        res_type, _, res_id = reference.partition("/")
        if res_type != "Organization":
            return None
        return orgnr_in(await self.read("Organization", res_id))

    async def relation(self, caller: Caller, patient_id: str) -> bool:
        """Whether `caller` has a relation to the child: the directory releases its record
        to the caller (deciding and auditing as for any read)."""
        reader = caller.model_copy(update={"scopes": ["system/Patient.r"]})
        status, _ = await self.ask(
            self.request(reader, interaction="read", resource_type="Patient", id=patient_id)
        )
        return status == 200

    async def require_relation(self, caller: Caller, patient_id: str) -> None:
        """404, exactly as for a child that is not registered, without a relation."""
        if not await self.relation(caller, patient_id):
            raise not_found("Patient", patient_id)

    async def organisation(self, orgnr: str) -> dict[str, Any] | None:
        """The Organization registered under `orgnr`."""
        found = await self.search("Organization", [("identifier", token(ORGNR_SYSTEM, orgnr))])
        return next((o for o in found if orgnr_in(o) == orgnr), None)

    async def addressed_orgnr(self, reference: Any, where: str) -> str | None:
        """The organisasjonsnummer of the organisation a Reference names by identifier:
        an organisasjonsnummer as given, or a HER-id (NHN's address register) looked up in
        the directory. A HER-id is rewritten to the organisasjonsnummer it is registered
        with, so every stored reference names organisations one way; an invalid or unknown
        HER-id is a 422, as an unknown organisasjonsnummer is."""
        her_id = her_id_of(reference)
        if her_id is None:
            orgnr = orgnr_of_reference(reference)
            if orgnr is not None:
                check_organisation_type(reference, where)
            return orgnr
        check_organisation_type(reference, where)
        check_her_id_at(her_id, where)
        registered = await self.organisation_with_her_id(her_id)
        orgnr = orgnr_in(registered)
        if registered is None or orgnr is None:
            raise error(
                422,
                "business-rule",
                f"No organisation is registered in the directory with HER-id {her_id}",
                f"{where}.identifier",
            )
        given = reference_target(reference)
        if given is not None and given != ("Organization", registered.get("id")):
            raise error(
                422,
                "business-rule",
                f"{where}.reference names another organisation than its identifier"
                f" (HER-id {her_id})",
                where,
            )
        reference["identifier"] = organisation_reference(orgnr)["identifier"]
        reference.setdefault("type", "Organization")
        return orgnr

    async def organisation_with_her_id(self, her_id: str) -> dict[str, Any] | None:
        """The Organization registered with this HER-id."""
        found = await self.search("Organization", [("identifier", token(HERID_SYSTEM, her_id))])
        registered = [o for o in found if her_id in _identifier_values(o, HERID_SYSTEM)]
        return registered[0] if len(registered) == 1 else None

    async def search_by_orgnr(self, query: SearchQuery) -> None:
        """An organisation searched for by HER-id (`performer:identifier=<HER-id system>|
        <id>`) is found as by its organisasjonsnummer, the way references store it; an
        unknown HER-id finds nothing, as an unknown organisasjonsnummer does."""
        for index, criterion in enumerate(query.criteria):
            her_ids = her_id_values(criterion)
            if not her_ids:
                continue
            values = list(criterion.values)
            for her_id in her_ids:
                orgnr = orgnr_in(await self.organisation_with_her_id(her_id))
                if orgnr is not None:
                    values.append((ORGNR_SYSTEM, orgnr))
            query.criteria[index] = replace(criterion, values=tuple(values))

    async def address_organisations(self, references: list[tuple[Any, str]]) -> None:
        """Every organisation these references (reference, FHIRPath) name by HER-id, named
        by organisasjonsnummer instead, as `addressed_orgnr` does for one; an organisation
        named by either is of type Organization (422 otherwise)."""
        for reference, where in references:
            await self.addressed_orgnr(reference, where)

    async def organisation_kind(self, orgnr: str) -> str | None:
        """The kind (`Organization.type`) of the organisation registered under `orgnr`."""
        kinds = organisation_kinds(await self.organisation(orgnr))
        return kinds[0] if kinds else None

    async def kind_in_use(self, orgnr: str) -> str | None:
        """The kind of the organisation registered under `orgnr` if it is in use; None for
        one the register has taken out of use (`active: false`), as for one not there: a
        new referral or party cannot be addressed to it."""
        organisation = await self.organisation(orgnr)
        if organisation is None or organisation.get("active") is False:
            return None
        kinds = organisation_kinds(organisation)
        return kinds[0] if kinds else None

    async def check_organisation_references(self, references: list[tuple[Any, str]]) -> None:
        """An organisation named by organisasjonsnummer may carry a literal reference too,
        but only to that same organisation: a reference to another one would credit a
        record to an organisation the identifier does not name. (reference, FHIRPath)."""
        problems = []
        for reference, where in references:
            orgnr = orgnr_of_reference(reference)
            given = reference_target(reference) if isinstance(reference, dict) else None
            if orgnr is None or given is None:
                continue
            registered = await self.organisation(orgnr)
            if registered is None or given != ("Organization", registered.get("id")):
                problems.append(
                    Issue(
                        "business-rule",
                        f"{where}.reference names another organisation than its identifier"
                        f" ({orgnr}); leave the reference out or make it Organization/<the"
                        " id registered for that number>",
                        expression=(where,),
                    )
                )
        if problems:
            raise FhirError(422, problems)

    async def patient_by_identifier(
        self, system: str, value: str, as_caller: Caller | None = None
    ) -> dict[str, Any] | None:
        """The Patient registered with this identifier, if exactly one is; as `as_caller`
        finds it when given (in full with a relation, as a look-up's subset without)."""
        params = [("identifier", token(system, value))]
        if as_caller is not None:
            reader = as_caller.model_copy(update={"scopes": ["system/Patient.s"]})
            status, bundle = await self.ask(
                self.request(reader, interaction="search", resource_type="Patient", params=params)
            )
            if status != 200:
                return None
            matches = [
                e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"
            ]
        else:
            matches = await self.search("Patient", params)
        found = [
            patient
            for patient in matches
            if {"system": system, "value": value}
            in [{"system": i.get("system"), "value": i.get("value")}
                for i in patient.get("identifier") or []]
        ]  # fmt: skip
        return found[0] if len(found) == 1 else None

    async def resolve_subject(
        self, resource: dict[str, Any], element: str, as_caller: Caller | None = None
    ) -> str:
        """The registered Patient a resource's `element` names by identifier (fødselsnummer,
        D-nummer or hjelpenummer); the literal reference is added. Returns the Patient id.

        With `as_caller` (a client's write), the child is found as that client finds it;
        where the permission table makes the write `related`, a child the client has no
        relation to is refused exactly as one that is not registered."""
        where = f"{resource.get('resourceType')}.{element}"
        subject = resource.get(element)
        identifier = subject.get("identifier") if isinstance(subject, dict) else None
        if (
            not isinstance(subject, dict)
            or not isinstance(identifier, dict)
            or (identifier.get("system") not in PERSON_SYSTEMS)
        ):
            raise error(
                422,
                "required",
                f"{element} must name the child by identifier (fødselsnummer or D-nummer)",
                f"{where}.identifier",
            )
        system, value = str(identifier["system"]), str(identifier.get("value") or "")
        try:
            validate_identifier(system, value)
        except InvalidIdentifier as exc:
            raise error(422, "value", f"{element}: {exc}", where) from exc
        patient = await self.patient_by_identifier(system, value, as_caller)
        if as_caller is not None and patient is not None and _subset(patient):
            rule = permission(as_caller, str(resource.get("resourceType")), "create")
            patient = None if rule is Rule.RELATED else patient
        if patient is None:
            raise error(
                422,
                "business-rule",
                f"No patient is registered in the directory with {system}|{value}"
                + (" that this organisation has a relation to" if as_caller else ""),
                where,
            )
        given = reference_target(subject)
        if given is not None and given != ("Patient", patient["id"]):
            raise error(
                422,
                "business-rule",
                f"{element}.reference is not the patient with that identifier",
                where,
            )
        subject["reference"] = f"Patient/{patient['id']}"
        subject.setdefault("type", "Patient")
        return str(patient["id"])


def her_id_values(criterion: Criterion) -> list[str]:
    """The HER-ids a search criterion names an organisation by (`<param>:identifier` with
    the HER-id system); a malformed one is a 400."""
    if criterion.modifier != "identifier" or "Organization" not in criterion.param.targets:
        return []
    return _searched_her_ids(criterion)


def check_her_id_searches(query: SearchQuery) -> None:
    """Every HER-id a search names (an `identifier` token or `<param>:identifier`) is well
    formed: a malformed one is a 400, as a malformed organisasjonsnummer would be."""
    for criterion in query.criteria:
        if criterion.param.type is ParamType.TOKEN or criterion.modifier == "identifier":
            _searched_her_ids(criterion)


def _searched_her_ids(criterion: Criterion) -> list[str]:
    found = []
    for system, value in criterion.values:
        if system != HERID_SYSTEM or not value:
            continue
        try:
            validate_identifier(HERID_SYSTEM, value)
        except InvalidIdentifier as exc:
            name = criterion.param.name + (f":{criterion.modifier}" if criterion.modifier else "")
            raise error(400, "value", f"{name}: {exc}", name) from exc
        found.append(value)
    return found


def refuse_her_id_searches(query: SearchQuery) -> None:
    """Where a service cannot ask the directory, a reference searched by HER-id is a 400
    saying to search by organisasjonsnummer (which is how references are stored), not an
    empty answer that looks like none."""
    for criterion in query.criteria:
        if her_id_values(criterion):
            name = f"{criterion.param.name}:identifier"
            raise error(
                400,
                "not-supported",
                f"{name}: an organisation is searched here by organisasjonsnummer"
                f" ({ORGNR_SYSTEM}|<orgnr>), not by HER-id",
                name,
            )


def check_her_id_at(her_id: str, where: str) -> None:
    """A HER-id a reference at `where` gives is well formed (422 otherwise)."""
    try:
        validate_identifier(HERID_SYSTEM, her_id)
    except InvalidIdentifier as exc:
        raise error(422, "value", f"{where}.identifier: {exc}", f"{where}.identifier") from exc


def check_organisation_type(reference: Any, where: str) -> None:
    """A reference naming an organisation by identifier is of type Organization: stored
    under another type it would be read as, and found as, something else."""
    stated = reference.get("type") if isinstance(reference, dict) else None
    if stated is not None and stated != "Organization":
        raise error(
            422,
            "value",
            f"{where}.type is {stated!r}; an organisation is named here, so it is Organization"
            " (or left out)",
            f"{where}.type",
        )


def _identifier_values(resource: dict[str, Any], system: str) -> list[str]:
    return [
        str(i.get("value")) for i in resource.get("identifier") or [] if i.get("system") == system
    ]


def _subset(patient: dict[str, Any]) -> bool:
    """Whether the directory released only a look-up's subset of the child's record."""
    return any(
        tag.get("code") == "SUBSETTED" for tag in (patient.get("meta") or {}).get("tag") or []
    )
