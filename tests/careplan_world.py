"""A world for care plan scenarios: the referral world (organisations, children with
parents, consents) plus the care plan service, and builders for plans and care teams."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from services.careplan.domain.vocabulary import (
    CATEGORY_SYSTEM,
    CHANGE_REASON_EXT,
    COLLABORATION_EXT,
    EXTENT_EXT,
    NEXT_REVISION_EXT,
    REGIME_EXT,
    SUBSTITUTE_EXT,
)
from shared.codes import ROLE_SYSTEM
from shared.runtime import ServiceRuntime
from tests.referral_world import KINDS, Child, ReferralWorld, org_reference
from tests.support import Reply


def member(orgnr: str, role: str, start: str = "2026-01-01", end: str | None = None,
           substitute_for: str | None = None) -> dict[str, Any]:  # fmt: skip
    """An organisation taking part in a team, in a role, for a period."""
    entry: dict[str, Any] = {
        "role": [{"coding": [{"system": ROLE_SYSTEM, "code": role}]}],
        "member": org_reference(orgnr),
        "period": {"start": start, **({"end": end} if end else {})},
    }
    if substitute_for:
        entry["extension"] = [{"url": SUBSTITUTE_EXT, "valueString": substitute_for}]
    return entry


def person(reference: str, role: str) -> dict[str, Any]:
    return {
        "role": [{"coding": [{"system": ROLE_SYSTEM, "code": role}]}],
        "member": {"reference": reference},
        "period": {"start": "2026-01-01"},
    }


def team(child: Child, *participants: dict[str, Any]) -> dict[str, Any]:
    return {
        "resourceType": "CareTeam",
        "status": "active",
        "subject": {"identifier": child.identifier},
        "participant": list(participants),
    }


def goal(child: Child, text: str = "Gå på skolen hver dag") -> dict[str, Any]:
    return {
        "resourceType": "Goal",
        "lifecycleStatus": "active",
        "description": {"text": text},
        "subject": {"identifier": child.identifier},
    }


def plan(
    child: Child,
    category: str = "individuell-plan",
    *,
    status: str = "draft",
    regime: str = "helse",
    complete: bool = True,
    goals: tuple[str, ...] = (),
    care_team: str | None = None,
    contributors: tuple[str, ...] = (),
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "CarePlan",
        "status": status,
        "intent": "plan",
        "category": [{"coding": [{"system": CATEGORY_SYSTEM, "code": category}]}],
        "subject": {"identifier": child.identifier},
        "extension": [{"url": REGIME_EXT, "valueCode": regime}],
    }
    if contributors:
        resource["contributor"] = [org_reference(o) for o in contributors]
    if goals:
        resource["goal"] = [{"reference": g} for g in goals]
    if care_team:
        resource["careTeam"] = [{"reference": care_team}]
    if complete:
        resource["period"] = {"start": date.today().isoformat()}
        resource["extension"] += [
            {"url": NEXT_REVISION_EXT,
             "valueDate": (date.today() + timedelta(days=90)).isoformat()},
            {"url": COLLABORATION_EXT, "valueString": "Skolen og BUP møtes hver måned"},
        ]  # fmt: skip
        resource["activity"] = [
            {"detail": {"status": "in-progress", "description": "Samtaler hos kommunepsykolog",
                        "performer": [org_reference("910000055")],
                        "extension": [{"url": EXTENT_EXT, "valueString": "1 time i uka"}]}}
        ]  # fmt: skip
    return resource


def with_reason(resource: dict[str, Any], why: str) -> dict[str, Any]:
    kept = [e for e in resource.get("extension", []) if e["url"] != CHANGE_REASON_EXT]
    return {**resource, "extension": [*kept, {"url": CHANGE_REASON_EXT, "valueString": why}]}


@dataclass
class CarePlanWorld:
    world: ReferralWorld
    careplan: ServiceRuntime

    async def create(self, resource: dict[str, Any], by: str) -> Reply:
        return await self.world.fhir("POST", resource["resourceType"], resource, by=by)

    async def created(self, resource: dict[str, Any], by: str) -> str:
        reply = await self.create(resource, by)
        assert reply.status == 201, reply.body
        return f"{resource['resourceType']}/{reply.json()['id']}"

    async def put(self, reference: str, resource: dict[str, Any], by: str) -> Reply:
        return await self.world.fhir("PUT", reference, resource, by=by)

    async def read(
        self,
        reference: str,
        by: str,
        headers: dict[str, str] | None = None,
        *,
        hpr: str | None = None,
    ) -> Reply:
        """Read as `by`; with `hpr`, as a health person of `by` identified by that HPR number
        (what emergency access needs)."""
        if hpr is None:
            return await self.world.fhir("GET", reference, by=by, headers=headers)
        token = self.world.stack.token(orgnr=by, kind=KINDS[by], hpr=hpr)
        return await self.world.stack.call("GET", reference, token=token, headers=headers)

    async def start_care(
        self, child: Child, orgnr: str, grantors: tuple[str, ...] | None = None
    ) -> str:
        """A health organisation takes the child into its care: it declares so
        (`$start-care`, which gives it its relation to the child, so it may write plans about
        it) and records the consent to health care (purpose helsehjelp, pbrl §4-1) from
        `grantors` (default: both parents), which shares nothing with anyone. Returns the
        Consent reference."""
        await self.world.start_care(child, orgnr)
        body = {
            "patient": f"Patient/{child.id}",
            "purpose": "helsehjelp",
            "categories": ["journal"],
            "signatures": [
                {"grantor": g, "decision": "consent", "method": "in-person",
                 "collected_by": "Lege Li"}
                for g in (grantors or child.parents)
            ],
            "child_view": {"heard": True, "statement": "Greit", "heard_by": "Lege Li"},
        }  # fmt: skip
        reply = await self.world.consent_api("POST", "consents", body, by=orgnr)
        assert reply.status == 201, reply.body
        assert reply.json()["status"] == "active", reply.body
        known = await self.world.fhir("GET", f"Patient/{child.id}", by=orgnr)
        assert known.status == 200, "a writer may rely on its relation at once"
        return f"Consent/{reply.json()['id']}"

    async def consent(
        self,
        child: Child,
        purpose: str,
        orgnr: str,
        categories: tuple[str, ...],
        *,
        by: str,
        grantors: tuple[str, ...] | None = None,
    ) -> str:
        """`by` records a consent naming `orgnr` (`ReferralWorld.consent`): collecting it is
        how `by` starts its part in the child's care (its relation to the child holds from
        its next request). Returns the Consent reference."""
        return await self.world.consent(child, purpose, orgnr, categories, grantors, by=by)
