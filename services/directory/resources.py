"""The resource types the directory owns, with their search parameters, keys and events.

Patient, RelatedPerson, Organization, Practitioner, PractitionerRole and HealthcareService
follow the HL7 Norway no-basis profiles. Care orders are recorded on the Patient as a
`Patient.contact` with relationship `omsorgsovertakelse` (project CodeSystem), the
barnevernstjeneste as `contact.organization` and the period; parental responsibility is a
RelatedPerson with a no-basis parental-responsibility relationship code.

Who may write which of these is the permission table's (`shared.access.permissions`):
organisations are the operator's register, parental responsibility the population
register's, care orders their holder's (`domain/care_orders.py`). A child's Patient and
RelatedPersons are access category `person`: released only to those with a relation to
the child (`shared.access.decision`), shaped by what each may know (`shaped`).
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import orjson

from services.directory.child_record import holders_held
from services.directory.domain import organisations, people
from services.directory.domain.care_orders import (
    care_order_contacts,
    holder_kept,
    in_force,
    merge_on_write,
    with_care_orders,
)
from services.directory.domain.named_records import named_references
from shared.access.authority import note_authority_change
from shared.access.decision import HIDE_CARE_ORDERS, SUBSET
from shared.access.permissions import may_know_care_orders
from shared.clock import today
from shared.codes import (
    CARE_ORDER_CODE,
    CONTACT_RELATIONSHIP_SYSTEM,
    HEALTH_KINDS,
    MUNICIPALITY_EXTENSION,
    ORGANISATION_KIND_SYSTEM,
    PERSON_CATEGORY,
    OrganisationKind,
    organisation_kinds,
)
from shared.directory_client import (
    check_her_id_at,
    check_her_id_searches,
    check_organisation_type,
    orgnr_in,
)
from shared.family import care_orders, indexed_care_orders, parental_responsibility
from shared.fhir.definitions import Change, EventSpec, Lookup, ResourceDefinition, WriteContext
from shared.fhir.elements import her_id_of, orgnr_of
from shared.fhir.errors import FhirError, Issue, error
from shared.fhir.parameters import OperationParameter
from shared.fhir.profiles import ProfileRules
from shared.fhir.references import reference_target
from shared.fhir.search_params import (
    IDENTIFIER_PARAM,
    ParamType,
    SearchParam,
    extension_values,
    walk,
)
from shared.fhir.search_query import MAX_COUNT, SearchQuery
from shared.identifiers import HERID_SYSTEM, HPR_SYSTEM, ORGNR_SYSTEM, PERSON_SYSTEMS
from shared.organisation_register import note_register_change
from shared.rules import refuse
from shared.transport.wire import Caller, FhirRequest

TOKEN, STRING, REFERENCE, DATE = (
    ParamType.TOKEN,
    ParamType.STRING,
    ParamType.REFERENCE,
    ParamType.DATE,
)


def _active() -> SearchParam:
    return SearchParam("active", TOKEN, ("active",), "Whether the record is in active use")


def local_reference(reference: Any, resource_type: str) -> tuple[str, str] | None:
    """(type, id) of a relative reference `Type/id` to this server; None for anything else
    (absolute URLs may name another server's resource with the same id)."""
    if not isinstance(reference, str) or "://" in reference:
        return None
    target = reference_target(reference)
    return target if target and target[0] == resource_type and reference.count("/") == 1 else None


def _care_order_organizations(patient: dict[str, Any]) -> list[Any]:
    return [
        contact.get("organization")
        for contact in patient.get("contact") or []
        if any(
            coding.get("system") == CONTACT_RELATIONSHIP_SYSTEM
            and coding.get("code") == CARE_ORDER_CODE
            for coding in walk(contact, ["relationship", "coding"])
        )
    ]


SUBSET_ELEMENTS = ("resourceType", "id", "meta", "identifier", "name", "birthDate", "gender",
                   "active")  # fmt: skip
"""What an exact look-up of a child shows (`SUBSET`): who it is, nothing of its care."""
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
             "code": "SUBSETTED"}  # fmt: skip
CARE_ORDER_OPERATION = "$care-order"
CARE_ORDER_PARAMETERS = (
    OperationParameter("action", "code", "start, end or transfer the caller's care order", min=1),
    OperationParameter(
        "date", "date", "The first day (start, transfer) or the last day (end); default today"
    ),
    OperationParameter(
        "successor", "Identifier", "The new holder's organisasjonsnummer, for a transfer"
    ),
    OperationParameter("return", "OperationOutcome", "What was recorded", min=1, use="out"),
)
START_CARE_OPERATION = "$start-care"
START_CARE_PARAMETERS = (
    OperationParameter("reason", "string", "Why the child is taken into care (3-1000)", min=1),
    OperationParameter("return", "OperationOutcome", "What was recorded", min=1, use="out"),
)


async def own_organization(write: WriteContext) -> str | None:
    """`Organization/<id>` of the calling organisation, as registered here."""
    orgnr = write.request.caller.orgnr
    if not orgnr or write.request.caller.credential != "organisation":
        return None
    found = await write.uow.find("Organization", [("identifier", f"{ORGNR_SYSTEM}|{orgnr}")])
    return found[0].reference if found else None


async def _organisations_by_orgnr(resource: dict[str, Any], write: WriteContext) -> None:
    """An organisation a Patient names by HER-id (`managingOrganization`, a contact's
    `organization`) is stored by the organisasjonsnummer of the one registered with it, as
    every organisation reference is; an unknown HER-id is a 422, as is an unknown
    organisasjonsnummer named without a reference."""
    named = [("Patient.managingOrganization", resource.get("managingOrganization"))]
    named += [
        (f"Patient.contact[{index}].organization", contact.get("organization"))
        for index, contact in enumerate(resource.get("contact") or [])
        if isinstance(contact, dict)
    ]
    for where, reference in named:
        her_id, orgnr = her_id_of(reference), orgnr_of(reference)
        if orgnr is not None or her_id is not None:
            check_organisation_type(reference, where)
        elif isinstance(reference, dict) and reference.get("identifier") is not None:
            raise error(
                422,
                "business-rule",
                f"{where} names an organisation by organisasjonsnummer (nine digits,"
                f" {ORGNR_SYSTEM}) or HER-id ({HERID_SYSTEM}), or by reference alone",
                f"{where}.identifier",
            )
        literal = reference.get("reference") if isinstance(reference, dict) and orgnr else None
        target = local_reference(literal, "Organization")
        if target is not None:
            _same_organisation(orgnr, orgnr_in(await write.uow.lookup()(*target)), where)
        by_number_alone = isinstance(reference, dict) and not reference.get("reference")
        if her_id is None and orgnr is not None and by_number_alone:
            criterion = ("identifier", f"{ORGNR_SYSTEM}|{orgnr}")
            if not await write.uow.find("Organization", [criterion]):
                raise error(
                    422,
                    "business-rule",
                    f"No organisation is registered in the directory with organisasjonsnummer"
                    f" {orgnr}",
                    f"{where}.identifier",
                )
        if her_id is None or not isinstance(reference, dict):
            continue
        check_her_id_at(her_id, where)
        found = await write.uow.find("Organization", [("identifier", f"{HERID_SYSTEM}|{her_id}")])
        orgnr = orgnr_in(found[0].json()) if found else None
        target = local_reference(reference.get("reference"), "Organization")
        if orgnr is None or (target is not None and target[1] != found[0].res_id):
            raise error(
                422,
                "business-rule",
                f"No organisation is registered in the directory with HER-id {her_id}"
                if orgnr is None
                else f"{where}.reference names another organisation than its identifier",
                f"{where}.identifier",
            )
        reference["identifier"] = {"system": ORGNR_SYSTEM, "value": orgnr}
        reference.setdefault("type", "Organization")


async def _general_practitioners_are_gps(resource: dict[str, Any], write: WriteContext) -> None:
    """An organisation named as the child's GP is a registered fastlege office: the
    referral service tells the GP of a discharge, so naming another organisation there
    would make it a party to the child's referrals."""
    for index, reference in enumerate(resource.get("generalPractitioner") or []):
        where = f"Patient.generalPractitioner[{index}]"
        orgnr, her_id = orgnr_of(reference), her_id_of(reference)
        target = local_reference(reference.get("reference"), "Organization")
        stated = reference.get("identifier") if isinstance(reference, dict) else None
        if orgnr is None and isinstance(stated, dict) and stated.get("system") == ORGNR_SYSTEM:
            raise error(
                422,
                "business-rule",
                f"{where} names an organisasjonsnummer of nine digits",
                f"{where}.identifier",
            )
        if orgnr is not None or her_id is not None:
            check_organisation_type(reference, where)
        if her_id is not None:
            check_her_id_at(her_id, where)
            criterion = ("identifier", f"{HERID_SYSTEM}|{her_id}")
        elif orgnr is not None:
            criterion = ("identifier", f"{ORGNR_SYSTEM}|{orgnr}")
        elif target is not None:
            criterion = ("_id", target[1])
        else:
            continue  # a Practitioner or PractitionerRole
        found = await write.uow.find("Organization", [criterion])
        named = found[0].json() if found else None
        kinds = organisation_kinds(named) if named else []
        mismatch = named is not None and target is not None and target[1] != named.get("id")
        in_use = named is not None and named.get("active") is not False
        if kinds != [OrganisationKind.FASTLEGE.value] or mismatch or not in_use:
            raise error(
                422,
                "business-rule",
                "Patient.generalPractitioner names a registered fastlege office in use (or a"
                " practitioner); this organisation is not one",
                where,
            )
        if her_id is not None:  # stored as every organisation reference is: by orgnr
            reference["identifier"] = {"system": ORGNR_SYSTEM, "value": orgnr_in(named)}
            reference.setdefault("type", "Organization")


async def _orgnr_at(reference: Any, lookup: Lookup, where: str) -> str | None:
    """The organisasjonsnummer of the registered Organization `reference` points to; an
    identifier beside the literal reference must name that same organisation (422), or a
    record would be found as another organisation's."""
    if not isinstance(reference, dict):
        return None
    target = local_reference(reference.get("reference"), "Organization")
    orgnr = orgnr_in(await lookup(*target)) if target else None
    her_id = her_id_of(reference)
    if her_id is not None:
        raise error(
            422,
            "business-rule",
            f"{where} names its organisation by reference (and organisasjonsnummer), not by HER-id",
            f"{where}.identifier",
        )
    _same_organisation(orgnr_of(reference), orgnr, where)
    return orgnr


def _same_organisation(stated: str | None, referenced: str | None, where: str) -> None:
    """An organisasjonsnummer beside a literal reference names the organisation the
    reference points to (`referenced`, None for none registered): 422 otherwise, or a
    record would be found as another organisation's."""
    if stated is not None and stated != referenced:
        raise error(
            422,
            "business-rule",
            f"{where}.identifier names organisation {stated}; its reference does not",
            f"{where}.identifier",
        )


class _Directory(ResourceDefinition):
    """Identifier and kommunenummer validation shared by every directory type."""

    def __init__(self, *, enforce_orgnr_check_digit: bool) -> None:
        self.enforce_orgnr_check_digit = enforce_orgnr_check_digit

    def prepare(self, resource: dict[str, Any], caller: Caller) -> list[Issue]:
        refuse(
            people.identifier_problems(
                resource, enforce_orgnr_check_digit=self.enforce_orgnr_check_digit
            )
        )
        organisations.check_municipalities(resource)
        return []

    async def check_search(self, query: SearchQuery, request: FhirRequest, lookup: Lookup) -> None:
        """A HER-id searched for is well formed (400), as where it is registered."""
        check_her_id_searches(query)

    async def verify_references(self, resource: dict[str, Any], lookup: Lookup) -> None:
        """The organisation a resource belongs to is named consistently, whoever writes it,
        and every record it names is registered here (`named_records`)."""
        if self.owner_element:
            await self.owners(resource, lookup)
        problems = [
            Issue("business-rule", message, expression=(where,))
            for where, text, types in named_references(self.resource_type, resource)
            if (message := await _unregistered(text, types, lookup)) is not None
        ]
        if problems:
            raise FhirError(422, problems)


async def _unregistered(text: str, types: tuple[str, ...], lookup: Lookup) -> str | None:
    """What is wrong with a reference to a record of one of `types`, if anything."""
    target = reference_target(text)
    if target is not None and target[0] not in types:
        return f"{text!r} refers to a {target[0]}; this element names a {' or '.join(types)}"
    if target is None or local_reference(text, target[0]) is None:
        return (
            f"{text!r} is not a reference to a record of this server: name a registered"
            f" {' or '.join(types)} by its relative reference (Type/id)"
        )
    if await lookup(*target) is None:
        return f"{text!r} names no {target[0]} registered here"
    return None


def _child_authority(patient: dict[str, Any] | None) -> object:
    """What the consent service reads of a Patient (`services.consent.directory`)."""
    if patient is None:
        return None
    orders = [(o.organization, o.start, o.end) for o in care_orders(patient)]
    return patient.get("birthDate"), orders


def _parent_authority(person: dict[str, Any] | None) -> object:
    """What the consent service reads of a RelatedPerson (`services.consent.directory`)."""
    if person is None:
        return None
    return (
        person.get("patient"),
        person.get("active"),
        person.get("period"),
        sorted(parental_responsibility(person)),
    )


HIDDEN_FROM_PARTNERS = frozenset({"contact", "managingOrganization"})
"""What a child's record shows no school, kindergarten, PPT or NAV."""


class PatientDefinition(_Directory):
    resource_type = "Patient"
    documentation = "The child (or adult) receiving care; no-basis-Patient"
    profile = ProfileRules(identifier_systems=tuple(sorted(PERSON_SYSTEMS)))
    data_category = PERSON_CATEGORY
    operations = (
        ("care-order", "https://fhir.barnebro.no/OperationDefinition/care-order"),
        ("start-care", "https://fhir.barnebro.no/OperationDefinition/start-care"),
    )
    operation_parameters = MappingProxyType(
        {"care-order": CARE_ORDER_PARAMETERS, "start-care": START_CARE_PARAMETERS}
    )
    search_params = (
        IDENTIFIER_PARAM,
        _active(),
        SearchParam("name", STRING, ("name",), "Any part of the name"),
        SearchParam("family", STRING, ("name.family",), "Family name"),
        SearchParam("given", STRING, ("name.given",), "Given name"),
        SearchParam("birthdate", DATE, ("birthDate",), "Date of birth"),
        SearchParam("gender", TOKEN, ("gender",), "Administrative gender"),
        SearchParam(
            "general-practitioner",
            REFERENCE,
            ("generalPractitioner",),
            "The fastlege (Practitioner, PractitionerRole or Organization)",
            targets=("Practitioner", "PractitionerRole", "Organization"),
        ),
        SearchParam(
            "organization",
            REFERENCE,
            ("managingOrganization",),
            "Managing organisation (not searched by a school, kindergarten, PPT or NAV; never"
            " followed by _include)",
            targets=("Organization",),
            includable=False,
        ),
        SearchParam(
            "care-order-organization",
            REFERENCE,
            documentation="The barnevernstjeneste that holds (or held) a care order for the"
            " child: searched only by that barnevernstjeneste, never followed by _include",
            targets=("Organization",),
            extract=_care_order_organizations,
            includable=False,
        ),
    )

    def prepare(self, resource: dict[str, Any], caller: Caller) -> list[Issue]:
        refuse(
            people.identifier_problems(
                resource, enforce_orgnr_check_digit=self.enforce_orgnr_check_digit
            )
        )
        organisations.check_municipalities(resource)
        refuse(people.reconcile_birth_date(resource, people.person_numbers(resource)))
        refuse(people.care_order_problems(resource))
        return []

    async def verify_references(self, resource: dict[str, Any], lookup: Lookup) -> None:
        """A care order must name a registered barnevernstjeneste: it decides who may
        consent for the child."""
        await super().verify_references(resource, lookup)
        problems = []
        for index, order in indexed_care_orders(resource):
            if not in_force(resource["contact"][index], today()):
                continue  # history: its holder may have left the register since
            target = local_reference(order.organization, "Organization")
            holder = await lookup(*target) if target else None
            if holder is None or organisation_kinds(holder) != [
                OrganisationKind.BARNEVERNSTJENESTE.value
            ]:
                problems.append(
                    Issue(
                        "business-rule",
                        f"A care order must name a registered barnevernstjeneste;"
                        f" {order.organization} is not one",
                        expression=(f"Patient.contact[{index}].organization",),
                    )
                )
        if problems:
            raise FhirError(422, problems)

    async def check_write(self, resource: dict[str, Any], write: WriteContext) -> list[Issue]:
        """Who the child is, is the population register's: a client's update keeps its
        person numbers and birth date. Care orders are their holder's: a client's write
        keeps everyone else's as stored and may add, change or end only its own."""
        caller = write.request.caller
        if caller.credential == "service":
            return []
        if caller.credential != "register":
            if write.before is not None:
                refuse(people.person_fact_changes(write.before, resource))
            else:
                numbers = people.person_numbers(resource)
                refuse(people.unconfirmed_birth_date(resource, numbers))
        await _organisations_by_orgnr(resource, write)
        await _general_practitioners_are_gps(resource, write)
        kind = caller.org_kind == OrganisationKind.BARNEVERNSTJENESTE.value
        merged = merge_on_write(
            care_order_contacts(write.before),
            care_order_contacts(resource),
            holder=await own_organization(write) if kind else None,
            may_know=may_know_care_orders(caller),
        )
        refuse(merged.problems)
        await holders_held(write.uow, merged.orders)
        with_care_orders(resource, merged.orders)
        return []

    async def check_delete(self, resource: dict[str, Any], write: WriteContext) -> None:
        """A child's record that others' facts rest on is kept: its care orders (only their
        holder ends them) and its parents (the population register's)."""
        if care_order_contacts(resource):
            raise error(
                409,
                "business-rule",
                "A Patient with a care order is not deleted: the care order is its holder's",
            )
        if await write.uow.find("RelatedPerson", [("patient", f"Patient/{resource['id']}")]):
            raise error(
                409,
                "business-rule",
                "A Patient whose parental responsibility is registered is not deleted: the"
                " population register's records refer to it",
            )

    async def check_search(self, query: SearchQuery, request: FhirRequest, lookup: Lookup) -> None:
        """Who holds a care order is searched only by the holder, for itself: a search by
        it would tell anyone else which children are under one (barnevernsloven §13-1). The
        managing organisation is not searched by those who may not know of barnevern."""
        check_her_id_searches(query)
        for criterion in query.criteria:
            caller = request.caller
            if criterion.param.name == "organization" and not may_know_care_orders(caller):
                raise error(
                    403,
                    "forbidden",
                    "organization (the managing organisation) is not searched by a school,"
                    " kindergarten, PPT or NAV",
                    "organization",
                )
            if criterion.param.name != "care-order-organization":
                continue
            if caller.credential == "service":
                continue
            own = caller.org_kind == OrganisationKind.BARNEVERNSTJENESTE.value
            for value in criterion.values:
                text = str(value) if "/" in str(value) else f"Organization/{value}"
                target = local_reference(text, "Organization")
                allowed = own and target and not criterion.modifier
                holder = await lookup(*target) if allowed and target else None
                if holder is None or orgnr_in(holder) != caller.orgnr:
                    raise error(
                        403,
                        "forbidden",
                        "care-order-organization is searched only by a barnevernstjeneste,"
                        " naming itself (Organization/<its id>, or its id)",
                        "care-order-organization",
                    )

    def shaped(self, body: bytes, obligations: tuple[str, ...]) -> bytes:
        if SUBSET not in obligations and HIDE_CARE_ORDERS not in obligations:
            return body
        patient = orjson.loads(body)
        if SUBSET in obligations:
            patient = {k: v for k, v in patient.items() if k in SUBSET_ELEMENTS}
            patient["meta"] = {"tag": [SUBSETTED]}  # no version: it would tell of changes
        elif not HIDDEN_FROM_PARTNERS.isdisjoint(patient):
            # Not only the care orders: a contact or a managing organisation (a
            # barnevernstjeneste, an institution, in any wording) may tell of barnevern.
            patient = {k: v for k, v in patient.items() if k not in HIDDEN_FROM_PARTNERS}
        else:
            return body
        return orjson.dumps(patient)

    def unique_keys(self, resource: dict[str, Any]) -> list[tuple[str, str]]:
        systems = people.person_number_systems(resource)
        return [("person-number", f"{system}|{value}") for value, system in systems.items()]

    def patient_of(self, resource: dict[str, Any], resource_id: str) -> str | None:
        return resource_id

    async def after_write(self, change: Change, context: WriteContext) -> None:
        # A care order ended or a birth date corrected takes effect before the answer.
        if change.before is not None and _child_authority(change.before) != _child_authority(
            change.after
        ):
            note_authority_change(change.resource_id)

    def events(self, change: Change) -> list[EventSpec]:
        events = [EventSpec(change.kind, {})]
        events += [
            EventSpec(name, order.as_data())
            for name, order in people.care_order_changes(change.before, change.after)
        ]
        return events


class RelatedPersonDefinition(_Directory):
    resource_type = "RelatedPerson"
    documentation = (
        "A parent or other person related to the patient, with parental responsibility as"
        " the population register states it (written only by the register source);"
        " no-basis-RelatedPerson"
    )
    data_category = PERSON_CATEGORY
    search_params = (
        IDENTIFIER_PARAM,
        _active(),
        SearchParam("patient", REFERENCE, ("patient",), "The patient", targets=("Patient",)),
        SearchParam(
            "relationship",
            TOKEN,
            ("relationship",),
            "Relationship, including parental responsibility",
        ),
        SearchParam("name", STRING, ("name",), "Any part of the name"),
    )

    added_keys = ("related-person",)

    def prepare(self, resource: dict[str, Any], caller: Caller) -> list[Issue]:
        super().prepare(resource, caller)
        refuse(people.parental_responsibility_problems(resource))
        refuse(people.unnamed_holder_problems(resource))
        return []

    def unique_keys(self, resource: dict[str, Any]) -> list[tuple[str, str]]:
        """One record per person and child: the consent rules count the holders of
        parental responsibility by record, so a second record of the same parent would
        let one parent count as both, and outlive the first one's end. A holder always has
        a person number (`people.unnamed_holder_problems`), so every holder has a key."""
        target = reference_target(resource.get("patient"))
        if target is None or target[0] != "Patient":
            return []
        systems = people.person_number_systems(resource)
        return [
            ("related-person", f"Patient/{target[1]}|{system}|{value}")
            for value, system in systems.items()
        ]

    async def verify_references(self, resource: dict[str, Any], lookup: Lookup) -> None:
        """Parental responsibility is read for one child: the Patient must be registered
        here (a relative reference)."""
        reference = (resource.get("patient") or {}).get("reference")
        target = local_reference(reference, "Patient")
        if target is None or await lookup(*target) is None:
            raise _unregistered_child(reference)

    def patient_of(self, resource: dict[str, Any], resource_id: str) -> str | None:
        target = reference_target(resource.get("patient"))
        return target[1] if target and target[0] == "Patient" else None

    async def check_write(self, resource: dict[str, Any], write: WriteContext) -> list[Issue]:
        """The child is still registered, under its lock: a concurrent deletion of the
        Patient (which takes the same lock and refuses while parents are registered)
        either came first, and this write is refused, or waits for it and is refused."""
        patient = self.patient_of(resource, str(resource.get("id") or ""))
        uow = write.uow
        child = await uow.read_for_update("Patient", patient, patient=patient) if patient else None
        if child is None or child.deleted:
            raise _unregistered_child((resource.get("patient") or {}).get("reference"))
        return []

    async def after_write(self, change: Change, context: WriteContext) -> None:
        # Parental responsibility ended or moved takes effect before the answer.
        if change.before is not None and _parent_authority(change.before) != _parent_authority(
            change.after
        ):
            for version in (change.before, change.after):
                patient = self.patient_of(version, change.resource_id) if version else None
                if patient is not None:
                    note_authority_change(patient)

    def events(self, change: Change) -> list[EventSpec]:
        events = [EventSpec(change.kind, {})]
        before = parental_responsibility(change.before)
        after = parental_responsibility(change.after)
        if before != after:
            events.append(
                EventSpec("parental-responsibility-changed", {"before": before, "after": after})
            )
        return events


def _unregistered_child(reference: object) -> FhirError:
    return error(
        422,
        "business-rule",
        f"RelatedPerson.patient must reference a registered Patient as Patient/<id>;"
        f" {reference!r} is not one",
        "RelatedPerson.patient",
    )


class OrganizationDefinition(_Directory):
    resource_type = "Organization"
    documentation = "An organisation with its kind and kommunenummer; no-basis-Organization"
    profile = ProfileRules(
        required=("type",),
        bindings=(("type", ORGANISATION_KIND_SYSTEM),),
        identifier_systems=(ORGNR_SYSTEM, HERID_SYSTEM),
    )
    search_params = (
        IDENTIFIER_PARAM,
        _active(),
        SearchParam("name", STRING, ("name", "alias"), "Name or alias"),
        SearchParam("type", TOKEN, ("type",), "Organisation kind (project CodeSystem)"),
        SearchParam(
            "partof", REFERENCE, ("partOf",), "Parent organisation", targets=("Organization",)
        ),
        SearchParam(
            "municipality",
            TOKEN,
            documentation="Kommunenummer of an address (no-basis municipality extension)",
            extract=extension_values(MUNICIPALITY_EXTENSION, "valueCoding", "address"),
        ),
    )

    def prepare(self, resource: dict[str, Any], caller: Caller) -> list[Issue]:
        super().prepare(resource, caller)
        organisations.check_organisation_kind(resource)
        organisations.check_institution_location(resource)
        return []

    added_keys = ("her-id",)

    def unique_keys(self, resource: dict[str, Any]) -> list[tuple[str, str]]:
        return organisations.organisation_keys(resource)

    async def check_delete(self, resource: dict[str, Any], write: WriteContext) -> None:
        holder = f"Organization/{resource['id']}"
        named = await write.uow.find(
            "Patient", [("care-order-organization", holder)], count=MAX_COUNT
        )
        patients = [stored.json() for stored in named]
        refuse(holder_kept(holder, patients, all_read=len(named) < MAX_COUNT, day=today()))

    async def after_write(self, change: Change, context: WriteContext) -> None:
        # Services forget what they kept of this Organization once this commits.
        note_register_change(change.resource_id)

    def events(self, change: Change) -> list[EventSpec]:
        events = [EventSpec(change.kind, {})]
        if organisations.is_institution(change.after) and not organisations.is_institution(
            change.before
        ):
            municipalities = [
                code for _, code in organisations.municipality_codes(change.after or {})
            ]
            events.append(EventSpec("institution-registered", {"municipalities": municipalities}))
        return events


class PractitionerDefinition(_Directory):
    resource_type = "Practitioner"
    documentation = "Health personnel and others who take part in care; no-basis-Practitioner"
    profile = ProfileRules(identifier_systems=(HPR_SYSTEM,))
    search_params = (
        IDENTIFIER_PARAM,
        _active(),
        SearchParam("name", STRING, ("name",), "Any part of the name"),
        SearchParam("family", STRING, ("name.family",), "Family name"),
        SearchParam("given", STRING, ("name.given",), "Given name"),
    )

    def prepare(self, resource: dict[str, Any], caller: Caller) -> list[Issue]:
        """An HPR number names health personnel (Helsepersonellregisteret): only a health
        organisation registers a practitioner by it (or the operator), so no one else can
        take a health person's number first."""
        super().prepare(resource, caller)
        health = caller.credential == "organisation" and caller.org_kind in HEALTH_KINDS
        if organisations.hpr_keys(resource) and not (
            health or caller.credential in ("operator", "service")
        ):
            raise error(
                403,
                "forbidden",
                "A practitioner is registered by HPR-nummer only by a health organisation",
                "Practitioner.identifier",
            )
        return []

    def unique_keys(self, resource: dict[str, Any]) -> list[tuple[str, str]]:
        return organisations.hpr_keys(resource)


class PractitionerRoleDefinition(_Directory):
    resource_type = "PractitionerRole"
    documentation = "A practitioner's role at an organisation (project role codes)"
    owner_element = "organization"

    async def owners(self, resource: dict[str, Any], lookup: Lookup) -> list[str] | None:
        orgnr = await _orgnr_at(
            resource.get("organization"), lookup, "PractitionerRole.organization"
        )
        return [orgnr] if orgnr else []

    search_params = (
        IDENTIFIER_PARAM,
        _active(),
        SearchParam(
            "practitioner",
            REFERENCE,
            ("practitioner",),
            "The practitioner",
            targets=("Practitioner",),
        ),
        SearchParam(
            "organization",
            REFERENCE,
            ("organization",),
            "The organisation",
            targets=("Organization",),
        ),
        SearchParam("role", TOKEN, ("code",), "Role (project CodeSystem care-role)"),
        SearchParam(
            "service",
            REFERENCE,
            ("healthcareService",),
            "Services provided in this role",
            targets=("HealthcareService",),
        ),
    )

    def prepare(self, resource: dict[str, Any], caller: Caller) -> list[Issue]:
        super().prepare(resource, caller)
        organisations.check_roles(resource)
        return []


class HealthcareServiceDefinition(_Directory):
    resource_type = "HealthcareService"
    documentation = "A service an organisation provides (e.g. a municipal follow-up team)"
    owner_element = "providedBy"

    async def owners(self, resource: dict[str, Any], lookup: Lookup) -> list[str] | None:
        orgnr = await _orgnr_at(resource.get("providedBy"), lookup, "HealthcareService.providedBy")
        return [orgnr] if orgnr else []

    search_params = (
        IDENTIFIER_PARAM,
        _active(),
        SearchParam(
            "organization",
            REFERENCE,
            ("providedBy",),
            "The organisation providing the service",
            targets=("Organization",),
        ),
        SearchParam("name", STRING, ("name",), "Name of the service"),
        SearchParam("service-type", TOKEN, ("type",), "Type of service"),
    )


def directory_definitions(*, enforce_orgnr_check_digit: bool) -> list[ResourceDefinition]:
    kinds: list[type[_Directory]] = [
        PatientDefinition,
        RelatedPersonDefinition,
        OrganizationDefinition,
        PractitionerDefinition,
        PractitionerRoleDefinition,
        HealthcareServiceDefinition,
    ]
    return [kind(enforce_orgnr_check_digit=enforce_orgnr_check_digit) for kind in kinds]
