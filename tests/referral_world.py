"""A populated world for referral scenarios: the referral service on the test stack,
organisations of each kind that takes part, children with a fødselsnummer and a GP, and
helpers to submit a referral as a transaction and move its Task."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from services.referral.domain.vocabulary import (
    ATTACHMENT_SYSTEM,
    CLOSE_REASON_SYSTEM,
    CRITERION_EXT,
    FRIST_EXT,
    LEGAL_CRITERION_SYSTEM,
    NO_SHOWS_EXT,
    OUTPUT_SYSTEM,
    REJECTION_REASON_SYSTEM,
    STEP_SYSTEM,
)
from shared.codes import CARE_ORDER_CODE, CONTACT_RELATIONSHIP_SYSTEM
from shared.identifiers import FNR_SYSTEM, ORGNR_SYSTEM
from shared.runtime import ServiceRuntime
from tests.support import Reply, Stack, fodselsnummer, parent, wait_for
from tests.support import organisation as any_organisation

GP, BUP, BVT, INSTITUSJON, KOMMUNE, LEGEVAKT, SKOLE, BUP2 = (
    "889640782", "910000012", "974760673", "910000047", "910000055", "910000020",
    "910000039", "910000063",
)  # fmt: skip
KINDS = {GP: "fastlege", BUP: "bup", BVT: "barnevernstjeneste",
         INSTITUSJON: "barneverninstitusjon", KOMMUNE: "kommune-helse",
         LEGEVAKT: "legevakt", SKOLE: "skole", BUP2: "bup"}  # fmt: skip
ALL_ATTACHMENTS = ("kommunal-kartlegging", "barnets-stemme", "somatisk-vurdering")
_children = itertools.count()


def _individual() -> int:
    """Individual numbers 500-899 (births 2000-2039), varied so that the children of one
    test get different fødselsnummer however many tests ran before."""
    return 500 + (next(_children) * 7) % 400


def org_reference(orgnr: str) -> dict[str, Any]:
    return {"type": "Organization", "identifier": {"system": ORGNR_SYSTEM, "value": orgnr}}


def organisation(orgnr: str) -> dict[str, Any]:
    return any_organisation(KINDS[orgnr], f"{KINDS[orgnr]} {orgnr}", orgnr, "0301")


@dataclass
class Child:
    id: str
    fnr: str
    parents: tuple[str, ...] = ()

    @property
    def identifier(self) -> dict[str, str]:
        return {"system": FNR_SYSTEM, "value": self.fnr}


@dataclass
class Referral:
    id: str
    task_id: str
    child: Child
    response: dict[str, Any] = field(default_factory=dict)

    @property
    def ref(self) -> str:
        return f"ServiceRequest/{self.id}"


def attachment(child: Child, kind: str, text: str = "") -> dict[str, Any]:
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {"coding": [{"system": ATTACHMENT_SYSTEM, "code": kind}]},
        "subject": {"identifier": child.identifier},
        "description": text or kind,
        "content": [{"attachment": {"contentType": "text/plain", "data": "dGVrc3Q="}}],
    }


def referral_bundle(
    child: Child,
    *,
    by: str,
    to: str = BUP,
    attachments: tuple[str, ...] = ALL_ATTACHMENTS,
    **more: Any,
) -> dict[str, Any]:
    """A transaction: the attachments and the ServiceRequest that points to them."""
    entries = [
        {
            "fullUrl": f"urn:uuid:00000000-0000-4000-8000-{index:012d}",
            "resource": attachment(child, kind),
            "request": {"method": "POST", "url": "DocumentReference"},
        }
        for index, kind in enumerate(attachments)
    ]
    service_request = {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "priority": "routine",
        "subject": {"identifier": child.identifier},
        "requester": org_reference(by),
        "performer": [org_reference(to)],
        "reasonCode": [{"text": "Angst og skolevegring over tid"}],
        "supportingInfo": [{"reference": entry["fullUrl"]} for entry in entries],
        **more,
    }
    entries.append(
        {
            "fullUrl": "urn:uuid:00000000-0000-4000-8000-999999999999",
            "resource": service_request,
            "request": {"method": "POST", "url": "ServiceRequest"},
        }
    )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def coding(system: str, code: str) -> dict[str, str]:
    return {"system": system, "code": code}


def step(code: str) -> dict[str, Any]:
    return {"coding": [coding(STEP_SYSTEM, code)]}


def output(kind: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"type": {"coding": [coding(OUTPUT_SYSTEM, kind)]}, **value}


def follow_up(orgnr: str) -> dict[str, Any]:
    return output("ansvarlig-oppfolging", {"valueReference": org_reference(orgnr)})


def frist(day: date) -> dict[str, Any]:
    return {"url": FRIST_EXT, "valueDate": day.isoformat()}


def criterion(code: str) -> dict[str, Any]:
    return {"url": CRITERION_EXT, "valueCoding": coding(LEGAL_CRITERION_SYSTEM, code)}


def no_shows(count: int) -> dict[str, Any]:
    return {"url": NO_SHOWS_EXT, "valueUnsignedInt": count}


def rejection(reason: str, justification: str, *criteria: str) -> dict[str, Any]:
    return {
        "statusReason": {
            "coding": [coding(REJECTION_REASON_SYSTEM, reason)],
            "text": justification,
        },
        "extension": [criterion(c) for c in criteria],
    }


def closing(reason: str) -> dict[str, Any]:
    return {"statusReason": {"coding": [coding(CLOSE_REASON_SYSTEM, reason)]}}


VALID_JUSTIFICATION = (
    "Nyttekriteriet er ikke oppfylt: plagene er lette, og kommunale tiltak (helsesykepleier,"
    " kommunepsykolog) er ikke prøvd. Jf. prioriteringsveilederen for psykisk helsevern for"
    " barn og unge."
)


@dataclass
class ReferralWorld:
    stack: Stack
    referral: ServiceRuntime
    organisations: dict[str, str]

    def token(self, orgnr: str, scope: str = "system/*.cruds", hpr: str | None = None) -> str:
        return self.stack.token(orgnr=orgnr, kind=KINDS[orgnr], scope=scope, hpr=hpr)

    async def fhir(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        by: str,
        headers: dict[str, str] | None = None,
        token: str | None = None,
    ) -> Reply:
        bearer = token or self.token(by)
        return await self.stack.call(method, path, body, token=bearer, headers=headers)

    async def child(self, age: int = 11, gp: str | None = GP, care_order: bool = False) -> Child:
        """A child with a fødselsnummer, two parents with parental responsibility, a GP,
        and (`care_order`) a care order held by the barnevernstjeneste BVT."""
        born = date.today().replace(year=date.today().year - age) - timedelta(days=40)
        fnr = fodselsnummer(born, _individual())
        patient: dict[str, Any] = {
            "resourceType": "Patient",
            "identifier": [{"system": FNR_SYSTEM, "value": fnr}],
            "name": [{"family": "Nordmann", "given": ["Ola"]}],
        }
        if gp is not None:
            patient["generalPractitioner"] = [
                {"reference": f"Organization/{self.organisations[gp]}"}
            ]
        if care_order:
            patient["contact"] = [{
                "relationship": [{"coding": [{"system": CONTACT_RELATIONSHIP_SYSTEM,
                                              "code": CARE_ORDER_CODE}]}],
                "organization": {"reference": f"Organization/{self.organisations[BVT]}"},
                "period": {"start": "2024-01-01"},
            }]  # fmt: skip
        reply = await self.stack.call("POST", "Patient", patient)
        assert reply.status == 201, reply.body
        patient_id = reply.json()["id"]
        parents = []
        for given in ("Mor", "Far"):
            reply = await self.stack.call(
                "POST",
                "RelatedPerson",
                parent(patient_id, given),
                token=self.stack.register_token(),
            )
            assert reply.status == 201, reply.body
            parents.append(f"RelatedPerson/{reply.json()['id']}")
        return Child(patient_id, fnr, tuple(parents))

    async def start_care(self, child: Child, orgnr: str, reason: str = "Timeavtale") -> None:
        """`orgnr` declares that it has taken the child into its care (`$start-care`)."""
        body = {"resourceType": "Parameters", "parameter": [{"name": "reason",
                                                             "valueString": reason}]}  # fmt: skip
        reply = await self.fhir("POST", f"Patient/{child.id}/$start-care", body, by=orgnr)
        assert reply.status == 200, reply.body

    async def consent(
        self,
        child: Child,
        purpose: str,
        orgnr: str,
        categories: tuple[str, ...] = ("referral",),
        grantors: tuple[str, ...] | None = None,
        by: str = GP,
    ) -> str:
        """`grantors` (default: both parents) consent for `purpose`, naming `orgnr`,
        recorded by `by` (an organisation records its own answer), which has taken the
        child into its care first (`$start-care`); waits until the referral service's
        consent view has the grant. Returns the Consent reference."""
        await self.start_care(child, by)
        body = {
            "patient": f"Patient/{child.id}",
            "purpose": purpose,
            "recipients": {"organizations": [orgnr]},
            "categories": list(categories),
            "signatures": [
                {
                    "grantor": p,
                    "decision": "consent",
                    "method": "in-person",
                    "collected_by": "Lege Li",
                }
                for p in (grantors or child.parents)
            ],
            "child_view": {"heard": True, "statement": "Greit", "heard_by": "Lege Li"},
        }
        reply = await self.consent_api("POST", "consents", body, by=by)
        assert reply.status == 201, reply.body
        assert reply.json()["status"] == "active", reply.body
        consent = f"Consent/{reply.json()['id']}"
        view = self.referral.consent_view
        assert view is not None

        async def granted() -> bool:
            state = view.state(child.id)
            return state is not None and any(g.consent == consent for g in state.grants)

        await wait_for(granted)
        return consent

    async def submit(
        self,
        child: Child,
        *,
        by: str = GP,
        to: str = BUP,
        attachments: tuple[str, ...] = ALL_ATTACHMENTS,
        **more: Any,
    ) -> Referral:
        bundle = referral_bundle(child, by=by, to=to, attachments=attachments, **more)
        reply = await self.fhir("POST", "", bundle, by=by)
        assert reply.status == 200, reply.body
        response = reply.json()
        sr = response["entry"][-1]
        service_request_id = sr["resource"]["id"]
        found = await self.fhir("GET", f"Task?focus=ServiceRequest/{service_request_id}", by=by)
        tasks = [e["resource"] for e in found.json()["entry"] if e["search"]["mode"] == "match"]
        assert len(tasks) == 1, found.body
        return Referral(service_request_id, tasks[0]["id"], child, sr)

    async def task(self, referral: Referral, by: str = BUP) -> tuple[dict[str, Any], str]:
        reply = await self.fhir("GET", f"Task/{referral.task_id}", by=by)
        assert reply.status == 200, reply.body
        return reply.json(), reply.headers["ETag"]

    async def move(
        self,
        referral: Referral,
        status: str,
        *,
        by: str = BUP,
        extension: list[dict[str, Any]] | None = None,
        read_by: str | None = None,
        **changes: Any,
    ) -> Reply:
        """Read the Task (as `read_by`, default `by`) and PUT it back with a new status and
        changes, with If-Match."""
        task, etag = await self.task(referral, by=read_by or by)
        task["status"] = status
        task.pop("businessStatus", None)
        task.update(changes)
        if extension:
            replaced = {e["url"] for e in extension}
            kept = [e for e in task.get("extension", []) if e["url"] not in replaced]
            task["extension"] = [*kept, *extension]
        return await self.fhir(
            "PUT", f"Task/{referral.task_id}", task, by=by, headers={"If-Match": etag}
        )

    async def accept(self, referral: Referral, days: int = 30) -> Reply:
        reply = await self.move(referral, "received")
        assert reply.status == 200, reply.body
        return await self.move(
            referral, "accepted", extension=[frist(date.today() + timedelta(days=days))]
        )

    async def consent_api(self, method: str, path: str, body: Any, *, by: str) -> Reply:
        url = f"http://127.0.0.1:{self.stack.settings.http_port}/consent/v1/{path}"
        return await self.stack.call(method, url, body, token=self.token(by))
