"""A populated world for consent scenarios: organisations of each kind, children of a
chosen age with two parents holding parental responsibility, the journal test service,
and helpers for the consent administration API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from shared import clock
from shared.codes import (
    CARE_ORDER_CODE,
    CONTACT_RELATIONSHIP_SYSTEM,
)
from shared.runtime import ServiceRuntime
from tests.support import Reply, Stack, parent
from tests.support import organisation as any_organisation

BUP, BVT, GP, LEGEVAKT, SKOLE = "910000012", "974760673", "889640782", "910000020", "910000039"
KINDS = {BUP: "bup", BVT: "barnevernstjeneste", GP: "fastlege", LEGEVAKT: "legevakt",
         SKOLE: "skole"}  # fmt: skip


def born_years_ago(years: int, days: int = 0) -> date:
    """A birth date `years` ago today, moved `days` later (so the birthday is `days` away).
    Today is the machine's date, moved as far as a test clock is (`shared.clock.offset`)."""
    today = (datetime.now() + clock.offset()).date()
    try:
        anniversary = today.replace(year=today.year - years)
    except ValueError:  # 29 February
        anniversary = today.replace(year=today.year - years, day=28)
    return anniversary + timedelta(days=days)


@dataclass
class Child:
    id: str
    mother: str
    father: str

    @property
    def ref(self) -> str:
        return f"Patient/{self.id}"


@dataclass
class World:
    stack: Stack
    journal: ServiceRuntime
    organisations: dict[str, str]

    def token(
        self,
        orgnr: str,
        scope: str = "system/*.cruds",
        fhir_user: str | None = None,
        hpr: str | None = None,
    ) -> str:
        return self.stack.token(
            orgnr=orgnr, kind=KINDS[orgnr], scope=scope, fhir_user=fhir_user, hpr=hpr
        )

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.stack.settings.http_port}/consent/v1"

    async def api(
        self, method: str, path: str, body: Any = None, *, by: str = BVT, token: str | None = None
    ) -> Reply:
        return await self.stack.call(
            method, f"{self.admin}/{path.lstrip('/')}", body, token=token or self.token(by)
        )

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
        return await self.stack.call(
            method, path, body, token=token or self.token(by), headers=headers
        )

    async def create(self, resource: dict[str, Any], by: str = BVT) -> dict[str, Any]:
        reply = await self.fhir("POST", resource["resourceType"], resource, by=by)
        assert reply.status == 201, reply.body
        created: dict[str, Any] = reply.json()
        return created

    async def start_care(self, child: Child, orgnr: str, reason: str = "Timeavtale") -> None:
        """`orgnr` declares that it has taken the child into its care (`$start-care`)."""
        body = {"resourceType": "Parameters", "parameter": [{"name": "reason",
                                                             "valueString": reason}]}  # fmt: skip
        reply = await self.fhir("POST", f"{child.ref}/$start-care", body, by=orgnr)
        assert reply.status == 200, reply.body

    async def register(self, resource: dict[str, Any]) -> dict[str, Any]:
        """Write as the population register (parental responsibility)."""
        token = self.stack.register_token()
        reply = await self.stack.call("POST", resource["resourceType"], resource, token=token)
        assert reply.status == 201, reply.body
        created: dict[str, Any] = reply.json()
        return created

    async def register_birth_date(self, patient: dict[str, Any], born: date) -> None:
        """The population register states the birth date of a child a client registered
        without a fødselsnummer (a client may not)."""
        token = self.stack.register_token()
        path = f"Patient/{patient['id']}"
        seen = await self.stack.call("GET", path, token=token)
        assert seen.status == 200, seen.body
        dated = {**seen.json(), "birthDate": born.isoformat()}
        reply = await self.stack.call("PUT", path, dated, token=token)
        assert reply.status == 200, reply.body

    async def child(
        self, age: int, *, days: int = 0, care_order: bool = False, birth_date: bool = True
    ) -> Child:
        patient: dict[str, Any] = {
            "resourceType": "Patient",
            "name": [{"family": "Nordmann", "given": ["Kari"]}],
        }
        if care_order:
            patient["contact"] = [self.care_order()]
        created = await self.create(patient)
        if birth_date:
            await self.register_birth_date(created, born_years_ago(age, days))
        mother = await self.register(parent(created["id"], "Mor"))
        father = await self.register(parent(created["id"], "Far"))
        return Child(
            created["id"], f"RelatedPerson/{mother['id']}", f"RelatedPerson/{father['id']}"
        )

    def care_order(self, end: str | None = None) -> dict[str, Any]:
        period = {"start": "2020-01-01", **({"end": end} if end else {})}
        return {
            "relationship": [{"coding": [{"system": CONTACT_RELATIONSHIP_SYSTEM,
                                          "code": CARE_ORDER_CODE}]}],
            "organization": {"reference": f"Organization/{self.organisations[BVT]}"},
            "period": period,
        }  # fmt: skip

    async def note(self, child: Child, text: str, by: str, relates_to: str | None = None) -> str:
        from tests.journal_service import note

        created = await self.create(note(child.id, text, relates_to), by=by)
        return f"DocumentReference/{created['id']}"


def organisation(orgnr: str) -> dict[str, Any]:
    return any_organisation(KINDS[orgnr], f"{KINDS[orgnr]} {orgnr}", orgnr)


def signature(grantor: str, decision: str = "consent") -> dict[str, Any]:
    return {
        "grantor": grantor,
        "decision": decision,
        "method": "in-person",
        "collected_by": "Saksbehandler Hansen",
    }


HEARD = {"heard": True, "statement": "Vil ha hjelp", "heard_by": "Saksbehandler Hansen"}


def sharing(child: Child, *signatures: dict[str, Any], **more: Any) -> dict[str, Any]:
    """A consent to share journal information with BUP."""
    return {
        "patient": child.ref,
        "purpose": "informasjonsdeling",
        "recipients": {"organizations": [BUP]},
        "categories": ["journal"],
        "signatures": list(signatures),
        **more,
    }
