"""Submitting a referral: the checks and derived elements of a new ServiceRequest.

The referrer refers in its own name and must be of a kind that refers; the receiver must
be registered and receive referrals; the child is named by fødselsnummer or D-nummer and
must be registered in the directory (the server adds the reference). Attachments must be
about the same child; what a referral to BUP lacks becomes warnings and a completeness
marker. A re-referral (`replaces`) points to a closed referral of the same child, whose
history its receiver inherits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from services.referral.domain import completeness
from services.referral.domain.model import Problem
from services.referral.domain.referrers import receiver_problem, referrer_problem
from services.referral.domain.vocabulary import (
    ATTACHMENT_SYSTEM,
    COMPLETENESS_EXT,
    COMPLETENESS_SYSTEM,
    FORLOP_COORDINATOR_EXT,
)
from services.referral.records import organisation_reference, patient_id
from shared.fhir.definitions import Lookup
from shared.fhir.errors import Issue, error
from shared.fhir.references import reference_target
from shared.outside_reads import OutsideReads
from shared.rules import refuse
from shared.transport.wire import Caller

PRIORITIES = frozenset({"routine", "urgent", "stat"})
INTENTS = frozenset({"order", "original-order"})


@dataclass(frozen=True)
class Parties:
    requester: str
    requester_kind: str | None
    performer: str
    performer_kind: str | None


async def check_parties(resource: dict[str, Any], caller: Caller, context: OutsideReads) -> Parties:
    directory = context.require_directory()
    requester = await directory.addressed_orgnr(
        resource.get("requester"), "ServiceRequest.requester"
    )
    if requester is None:
        requester = caller.orgnr
        if requester is None:
            raise error(
                422,
                "required",
                "ServiceRequest.requester must name the referring organisation by"
                " organisasjonsnummer or HER-id",
                "ServiceRequest.requester",
            )
        resource["requester"] = organisation_reference(requester)
    if caller.orgnr != requester:
        raise error(
            403,
            "forbidden",
            f"An organisation refers in its own name: the token is for {caller.orgnr}, the"
            f" requester is {requester}",
            "ServiceRequest.requester",
        )
    requester_kind = caller.org_kind or await directory.kind_in_use(requester)
    performers = resource.get("performer") or []
    performer = (
        await directory.addressed_orgnr(performers[0], "ServiceRequest.performer[0]")
        if len(performers) == 1
        else None
    )
    if performer is None:
        raise error(
            422,
            "required",
            "ServiceRequest.performer must name exactly one receiving organisation by"
            " organisasjonsnummer or HER-id",
            "ServiceRequest.performer",
        )
    performer_kind = await directory.kind_in_use(performer)
    await directory.check_organisation_references(
        [(resource.get("requester"), "ServiceRequest.requester"),
         (performers[0], "ServiceRequest.performer[0]")]
    )  # fmt: skip
    problems = [
        p for p in (referrer_problem(requester_kind), receiver_problem(performer_kind)) if p
    ]
    if performer_kind is None:
        problems = [
            Problem(
                422,
                "business-rule",
                f"The receiving organisation {performer} is not registered in the directory,"
                " or is out of use there (active: false)",
                "ServiceRequest.performer",
            )
        ]
    refuse(problems)
    return Parties(requester, requester_kind, performer, performer_kind)


def check_form(resource: dict[str, Any]) -> None:
    """The elements every referral has, whatever its receiver."""
    problems = []
    if resource.get("intent") not in INTENTS:
        problems.append(
            Problem(422, "value", "ServiceRequest.intent must be order", "ServiceRequest.intent")
        )
    resource.setdefault("priority", "routine")
    if resource["priority"] not in PRIORITIES:
        problems.append(
            Problem(
                422,
                "value",
                f"ServiceRequest.priority must be one of {', '.join(sorted(PRIORITIES))}",
                "ServiceRequest.priority",
            )
        )
    if not resource.get("reasonCode") and not resource.get("reasonReference"):
        problems.append(
            Problem(
                422,
                "required",
                "A referral says why: ServiceRequest.reasonCode (a code or text) or"
                " reasonReference",
                "ServiceRequest.reasonCode",
            )
        )
    refuse(problems)


def _local(reference: Any, resource_type: str) -> str | None:
    target = reference_target(reference)
    return target[1] if target is not None and target[0] == resource_type else None


async def attachment_types(
    resource: dict[str, Any], patient: str, lookup: Lookup
) -> tuple[list[str], list[str]]:
    """The DocumentReference ids among `supportingInfo` and their attachment types; each
    must exist and be about the same patient."""
    ids, types = [], []
    for index, info in enumerate(resource.get("supportingInfo") or []):
        where = f"ServiceRequest.supportingInfo[{index}]"
        doc_id = _local(info, "DocumentReference")
        if doc_id is None:
            continue
        document = await lookup("DocumentReference", doc_id)
        if document is None:
            raise error(422, "not-found", f"DocumentReference/{doc_id} is not known", where)
        if patient_id(document.get("subject")) != patient:
            raise error(
                422,
                "business-rule",
                f"DocumentReference/{doc_id} is about another patient than the referral",
                where,
            )
        ids.append(doc_id)
        types += [
            str(coding.get("code"))
            for coding in (document.get("type") or {}).get("coding") or []
            if coding.get("system") == ATTACHMENT_SYSTEM
        ]
    return ids, types


def forlop_coordinator_roles(resource: dict[str, Any]) -> list[str]:
    """The roles of the forløpskoordinatorer a referral names."""
    roles = []
    for ext in resource.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == FORLOP_COORDINATOR_EXT:
            for part in ext.get("extension") or []:
                if part.get("url") == "role" and part.get("valueCode"):
                    roles.append(str(part["valueCode"]))
    return roles


def in_forlop(resource: dict[str, Any]) -> bool:
    """A referral made within a forløp links to its plan (`basedOn` a CarePlan)."""
    return any(
        (reference_target(r) or ("",))[0] == "CarePlan" for r in resource.get("basedOn") or []
    )


def mark_completeness(
    resource: dict[str, Any], receiver_kind: str | None, types: list[str]
) -> list[Issue]:
    """Set the completeness marker; the warnings for what is missing."""
    gaps = completeness.missing(receiver_kind, types) + completeness.missing_coordinators(
        receiver_kind, in_forlop(resource), forlop_coordinator_roles(resource)
    )
    resource["extension"] = [
        e for e in resource.get("extension") or [] if e.get("url") != COMPLETENESS_EXT
    ] + [
        {"url": COMPLETENESS_EXT, "valueCoding": {"system": COMPLETENESS_SYSTEM, "code": code}}
        for code in completeness.markers(gaps)
    ]
    return [
        Issue(
            "incomplete",
            f"The referral is accepted but incomplete: {why}. Incomplete referrals are the"
            " main cause of rejection",
            severity="warning",
            expression=("ServiceRequest",),
        )
        for _, why in gaps
    ]
