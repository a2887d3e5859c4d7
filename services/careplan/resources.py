"""The resource types the care plan service owns: CarePlan (individuell plan, kriseplan,
behandlingsplan, forløp plan), Goal (a plan's goals) and CareTeam (the ansvarsgruppe).

Plans and goals are data category `careplan`, teams `careteam`. An individual plan is
shared only under an active consent (purpose individuell-plan, naming its recipients), so
withdrawing that consent stops all sharing at once; its author always sees it. Other
plans are shared with their contributors, and a kriseplan is read by legevakt and BUPA
under the emergency basis. Team members see their team.
"""

from __future__ import annotations

from datetime import date
from types import MappingProxyType
from typing import Any

from services.careplan.domain.completeness import WHAT_IS_MISSING, missing_points
from services.careplan.domain.coordination import coordinator_of_record, team_problems
from services.careplan.domain.forlop import phase_problems
from services.careplan.domain.lifecycle import CONSENT_PURPOSES, is_open, one_per_person
from services.careplan.domain.model import Participant, PlanFacts
from services.careplan.domain.vocabulary import (
    CATEGORY_SYSTEM,
    CHANGE_REASON_EXT,
    CHANGED_BY_EXT,
    COLLABORATION_EXT,
    COORDINATOR_ROLES,
    HANDOVER_EXT,
    MISSING_POINT_EXT,
    NEXT_REVISION_EXT,
    REGIME_EXT,
    REVISION_DUE_EXT,
    PlanCategory,
    Point,
    Regime,
)
from services.careplan.events import plan_events, team_events
from services.careplan.members import check_members
from services.careplan.provenance import stamp
from services.careplan.quotations import quoted_origins, refuse_quotations
from services.careplan.records import (
    a_date,
    activities,
    category_of,
    extension_value,
    orgnr_of,
    participants,
    phases,
    regime_of,
    set_extension,
    set_missing,
)
from shared.access.decision import consents_covering, consents_for, purpose_consents
from shared.access.permissions import ACTOR_KINDS, Actor
from shared.clock import now_instant, today
from shared.codes import DataCategory, OrganisationKind
from shared.fhir.definitions import Change, EventSpec, ResourceDefinition, WriteContext
from shared.fhir.elements import keep_server_extensions, keep_unchanged, patient_id
from shared.fhir.errors import Issue, error
from shared.fhir.parameters import OperationParameter
from shared.fhir.profiles import ProfileRules
from shared.fhir.references import reference_target
from shared.fhir.search_params import IDENTIFIER_PARAM, ParamType, SearchParam, extension_values
from shared.identifiers import HPR_SYSTEM, ORGNR_SYSTEM
from shared.outside_reads import OutsideReads
from shared.rules import Problem, refuse

TOKEN, REFERENCE, DATE = ParamType.TOKEN, ParamType.REFERENCE, ParamType.DATE
IP = PlanCategory.INDIVIDUELL_PLAN
IP_PURPOSE = CONSENT_PURPOSES[IP]
FORLOP_PURPOSE = CONSENT_PURPOSES[PlanCategory.FORLOPSPLAN]
TEAM_PURPOSE = "ansvarsgruppe"
SERVER_PLAN_EXTENSIONS = frozenset({REVISION_DUE_EXT, CHANGED_BY_EXT, MISSING_POINT_EXT})


def _patient_param(path: str) -> SearchParam:
    return SearchParam(
        "patient", REFERENCE, (path,), "The child (also patient:identifier=)", targets=("Patient",)
    )


def _changed_by(write: WriteContext, resource: dict[str, Any]) -> list[dict[str, Any]]:
    """Who changed the plan, in which role, when and why (kept in each version)."""
    caller = write.request.caller
    parts: list[dict[str, Any]] = [{"url": "at", "valueDateTime": now_instant()}]
    if caller.orgnr:
        parts.append(
            {
                "url": "organization",
                "valueIdentifier": {"system": ORGNR_SYSTEM, "value": caller.orgnr},
            }
        )
    if caller.hpr:
        parts.append(
            {"url": "practitioner", "valueIdentifier": {"system": HPR_SYSTEM, "value": caller.hpr}}
        )
    parts += [{"url": "role", "valueCode": role} for role in caller.roles]
    reason = extension_value(resource, CHANGE_REASON_EXT, "valueString")
    if reason:
        parts.append({"url": "reason", "valueString": reason})
    return parts


LINKED_RECORDS = (
    ("goal", "Goal", "a goal"),
    ("careTeam", "CareTeam", "a care team"),
    ("basedOn", "CarePlan", "a plan"),
    ("replaces", "CarePlan", "a plan"),
    ("partOf", "CarePlan", "a plan"),
)
"""The records a plan of any category names that must be the same child's and visible to
its writer: a plan cannot point at another child's records, or at nothing."""


async def _linked(
    resource: dict[str, Any], write: WriteContext, element: str, resource_type: str, what: str
) -> list[dict[str, Any]]:
    """The resources a plan's `element` refers to: each must be of `resource_type`, about
    the same child and visible to the caller (422 alike when absent or hidden)."""
    lookup = write.uow.visible()
    patient = patient_id(resource.get("subject"))
    found = []
    for reference in resource.get(element) or []:
        target = reference_target(reference)
        linked = await lookup(*target) if target and target[0] == resource_type else None
        if linked is None or patient_id(linked.get("subject")) != patient:
            raise error(
                422,
                "not-found",
                f"{reference.get('reference')} is not {what} of this child",
                f"CarePlan.{element}",
            )
        found.append(linked)
    return found


Team = tuple[str, list[Participant]]
"""A care team of a plan (`CareTeam/<id>`) with its participants."""


def _teams(linked: list[dict[str, Any]]) -> list[Team]:
    return [(f"CareTeam/{team['id']}", participants(team)) for team in linked]


class CarePlanDefinition(ResourceDefinition):
    resource_type = "CarePlan"
    documentation = (
        "A plan for the child: individuell plan, kriseplan, behandlingsplan or forløp plan"
        " (category), under health law, barnevern law or both (extension legal-regime)"
    )
    data_category = DataCategory.CAREPLAN.value
    other_categories = (DataCategory.INDIVIDUELL_PLAN.value,)
    profile = ProfileRules(required=("category",), bindings=(("category", CATEGORY_SYSTEM),))
    deletable = False
    search_params = (
        IDENTIFIER_PARAM,
        _patient_param("subject"),
        SearchParam("category", TOKEN, ("category",), "individuell-plan | kriseplan | …"),
        SearchParam("status", TOKEN, ("status",), "draft | active | on-hold | revoked | completed"),
        SearchParam("date", DATE, ("period",), "Plan period"),
        SearchParam(
            "care-team", REFERENCE, ("careTeam",), "The ansvarsgruppe", targets=("CareTeam",)
        ),
        SearchParam("goal", REFERENCE, ("goal",), "A goal", targets=("Goal",)),
        SearchParam(
            "regime",
            TOKEN,
            documentation="helse | barnevern | begge",
            extract=extension_values(REGIME_EXT, "valueCode"),
        ),
        SearchParam(
            "next-revision",
            DATE,
            documentation="The next revision date",
            extract=extension_values(NEXT_REVISION_EXT, "valueDate"),
        ),
        SearchParam(
            "revision-due",
            DATE,
            documentation="A revision date that passed (marked once)",
            extract=extension_values(REVISION_DUE_EXT, "valueDate"),
        ),
        SearchParam(
            "missing",
            TOKEN,
            documentation="Points an individual plan still lacks (a forløp plan: its consent)",
            extract=extension_values(MISSING_POINT_EXT, "valueCoding"),
        ),
    )

    def __init__(self, reads: OutsideReads) -> None:
        self.reads = reads

    def patient_of(self, resource: dict[str, Any], resource_id: str) -> str | None:
        return patient_id(resource.get("subject"))

    def category_of(self, resource: dict[str, Any]) -> str | None:
        """An individual plan is its own category: only a consent naming it releases it,
        and such a consent releases no other plan."""
        if category_of(resource) == IP:
            return DataCategory.INDIVIDUELL_PLAN.value
        return DataCategory.CAREPLAN.value

    def parties(self, resource: dict[str, Any]) -> list[str]:
        """An individual plan is shared only under consent; other plans with their
        contributors."""
        if category_of(resource) == IP:
            return []
        found = {orgnr_of(c) for c in resource.get("contributor") or []}
        return sorted(p for p in found if p)

    def unique_keys(self, resource: dict[str, Any]) -> list[tuple[str, str]]:
        """One open individual plan per person: the guard under concurrency behind the
        check in `_one_per_person` (which answers without naming what the caller may not
        read)."""
        patient = patient_id(resource.get("subject"))
        if category_of(resource) == IP and is_open(resource.get("status")) and patient:
            return [("open-individuell-plan", patient)]
        return []

    async def check_write(self, resource: dict[str, Any], write: WriteContext) -> list[Issue]:
        before = write.before
        problems: list[Problem] = []
        category = category_of(resource)
        if category is None or category not in set(PlanCategory):
            problems.append(
                Problem(
                    422,
                    "required",
                    f"CarePlan.category needs exactly one code from {CATEGORY_SYSTEM}"
                    f" ({', '.join(PlanCategory)})",
                    "CarePlan.category",
                )
            )
        if regime_of(resource) is None:
            problems.append(
                Problem(
                    422,
                    "required",
                    f"Every plan states its legal regime: extension {REGIME_EXT} with"
                    f" {', '.join(Regime)}",
                    "CarePlan.extension",
                )
            )
        refuse(problems)
        caller = write.request.caller
        if before is None:
            await self.reads.require_directory().resolve_subject(
                resource, "subject", write.request.caller
            )
            if caller.orgnr is None:
                raise error(403, "forbidden", "A plan is written by an organisation")
            resource["author"] = {
                "type": "Organization",
                "identifier": {"system": ORGNR_SYSTEM, "value": caller.orgnr},
            }
        else:
            keep_unchanged(resource, before, ("subject", "author", "category"), same_reference=True)
            if category == IP and not extension_value(resource, CHANGE_REASON_EXT, "valueString"):
                raise error(
                    422,
                    "required",
                    f"Every change of an individual plan says why (extension {CHANGE_REASON_EXT})",
                    "CarePlan.extension",
                )
        linked = {
            element: await _linked(resource, write, element, linked_type, what)
            for element, linked_type, what in LINKED_RECORDS
        }
        contributors = [
            (c, f"CarePlan.contributor[{i}]")
            for i, c in enumerate(resource.get("contributor") or [])
        ]
        await self.reads.require_directory().address_organisations(contributors)
        await self.reads.require_directory().check_organisation_references(contributors)
        for index, contributor in enumerate(resource.get("contributor") or []):
            target = reference_target(contributor)
            if target is not None and target[0] == "Organization" and not orgnr_of(contributor):
                raise error(
                    422,
                    "business-rule",
                    "An organisation contributing to a plan is named by organisasjonsnummer"
                    " (Reference.identifier), so the rules know who it is",
                    f"CarePlan.contributor[{index}]",
                )
        await self._contributors_may_see(resource, before)
        keep_server_extensions(resource, before, SERVER_PLAN_EXTENSIONS)
        set_extension(resource, CHANGED_BY_EXT, "extension", _changed_by(write, resource))
        set_extension(resource, CHANGE_REASON_EXT, "valueString", None)  # kept in changed-by
        for element in ("activity", "note"):
            earlier = (before or {}).get(element) or []
            statements = resource.get(element) or []
            quoted = await quoted_origins(
                self.reads.require_directory(),
                statements,
                earlier,
                caller,
                f"CarePlan.{element}",
                patient_id(resource.get("subject")),
                self.reads.require_view().state(patient_id(resource.get("subject")) or ""),
                self.category_of(resource),
            )
            stamp(statements, earlier, caller, quoted)
        teams = _teams(linked["careTeam"])
        if category == PlanCategory.FORLOPSPLAN:
            await self._forlop(resource, teams)
        if category != IP:
            return []
        return await self._individual_plan(resource, write, len(linked["goal"]), teams)

    async def _contributors_may_see(
        self, resource: dict[str, Any], before: dict[str, Any] | None
    ) -> None:
        """A plan other than an individual plan is shared with its contributors. A school,
        kindergarten, PPT or NAV is named only with an active consent that would release
        the plan to it, so that naming one never shares more than was consented."""
        category = self.category_of(resource)
        if category != DataCategory.CAREPLAN.value:
            return
        known = set(self.parties(before or {}))
        patient = patient_id(resource.get("subject")) or ""
        state = self.reads.require_view().state(patient)
        directory = self.reads.require_directory()
        lacking = []
        for orgnr in self.parties(resource):
            if orgnr in known:
                continue
            kind = await directory.organisation_kind(orgnr)
            if kind not in ACTOR_KINDS[Actor.PARTNER]:
                continue
            if not consents_covering(state, category, orgnr, kind, today()):
                lacking.append(orgnr)
        if lacking:
            raise error(
                422,
                "business-rule",
                "A plan is shared with a school, kindergarten, PPT or NAV only under a consent"
                f" that releases it (category careplan); none does for {', '.join(lacking)}",
                "CarePlan.contributor",
            )

    async def _forlop(self, resource: dict[str, Any], teams: list[Team]) -> None:
        """Nasjonalt forløp: started only under its consent, phases in order, coordinated
        by the barnevernstjeneste."""
        patient = patient_id(resource.get("subject")) or ""
        problems = phase_problems(phases(resource))
        consented = bool(
            purpose_consents(self.reads.require_view().state(patient), FORLOP_PURPOSE, today())
        )
        set_missing(resource, [] if consented else [Point.SAMTYKKE])
        if resource.get("status") == "active" and not consented:
            problems.append(
                Problem(
                    422,
                    "business-rule",
                    "Nasjonalt forløp starts with the consent nasjonalt-forlop (obtained at the"
                    " avklaringsmøte); until then the plan is a draft",
                    "CarePlan.status",
                )
            )
        for _, members in teams:
            coordinator = coordinator_of_record(members, today())
            if coordinator is not None and coordinator.orgnr is not None:
                kind = await self.reads.require_directory().organisation_kind(coordinator.orgnr)
                if kind != OrganisationKind.BARNEVERNSTJENESTE:
                    problems.append(
                        Problem(
                            422,
                            "business-rule",
                            "In nasjonalt forløp the coordinator belongs to the"
                            f" barnevernstjeneste (000:l.4201); {coordinator.orgnr} is {kind}",
                            "CarePlan.careTeam",
                        )
                    )
        refuse(problems)

    async def _individual_plan(
        self, resource: dict[str, Any], write: WriteContext, goals: int, teams: list[Team]
    ) -> list[Issue]:
        patient = patient_id(resource.get("subject")) or ""
        view = self.reads.require_view()
        consented = bool(purpose_consents(view.state(patient), IP_PURPOSE, today()))
        facts = self._facts(resource, consented, goals, teams)
        missing = missing_points(facts)
        set_missing(resource, missing)
        await self._one_per_person(resource, write, patient)
        if resource.get("status") == "active":
            if not consented:
                raise error(
                    422,
                    "business-rule",
                    "An individual plan needs an active consent for purpose individuell-plan from"
                    " whoever has the authority (consent administration API); without it the"
                    " plan is a draft shared with no one",
                    "CarePlan.status",
                )
            if missing:
                raise error(
                    422,
                    "incomplete",
                    "An individual plan becomes active only with all nine points; missing: "
                    + "; ".join(WHAT_IS_MISSING[p] for p in missing),
                    "CarePlan.status",
                )
        return [
            Issue(
                "incomplete", f"The individual plan lacks {WHAT_IS_MISSING[p]}", severity="warning"
            )
            for p in missing
        ]

    async def _one_per_person(
        self, resource: dict[str, Any], write: WriteContext, patient: str
    ) -> None:
        """One individual plan per person: an open plan (draft, active, on hold) beside
        another open one is refused, alike whether or not the caller may read the other,
        which is named only to a caller that may. The patient's lock serialises the writers
        (a create takes it here), so two at once cannot both pass; the unique key stands
        behind it."""
        if not is_open(resource.get("status")):
            return
        await write.uow.lock_patient(patient)
        plans = await write.uow.find(
            "CarePlan",
            [("patient", f"Patient/{patient}"), ("category", f"{CATEGORY_SYSTEM}|{IP}")],
        )
        others = [
            p for p in plans if p.res_id != resource.get("id") and is_open(p.json().get("status"))
        ]
        if not others:
            return
        visible = write.uow.visible()
        shown: list[str | None] = []
        for other in others:
            # A plan the caller may not read is absent from `visible`, and audited so.
            seen = await visible("CarePlan", other.res_id) is not None
            shown.append(other.reference if seen else None)
        refuse(one_per_person(resource.get("status"), shown))

    @staticmethod
    def _facts(
        resource: dict[str, Any], consented: bool, goals: int, teams: list[Team]
    ) -> PlanFacts:
        team_ref = teams[0][0] if teams else None
        team_members, has_coordinator = 0, False
        for _, members in teams:
            team_members += len(members)
            has_coordinator = has_coordinator or coordinator_of_record(members, today()) is not None
        period = resource.get("period") or {}
        return PlanFacts(
            category=IP,
            status=str(resource.get("status")),
            goals=goals,
            team=team_ref,
            has_coordinator=has_coordinator,
            participants=team_members,
            activities=activities(resource),
            period_start=a_date(period.get("start")),
            next_revision=a_date(extension_value(resource, NEXT_REVISION_EXT, "valueDate")),
            consent=consented,
            collaboration=bool(extension_value(resource, COLLABORATION_EXT, "valueString")),
        )

    def events(self, change: Change) -> list[EventSpec]:
        return plan_events(change)


class GoalDefinition(ResourceDefinition):
    resource_type = "Goal"
    documentation = (
        "A goal of an individual plan, with the resources and needs it rests on (category"
        " individuell-plan)"
    )
    data_category = DataCategory.INDIVIDUELL_PLAN.value
    deletable = False
    search_params = (
        IDENTIFIER_PARAM,
        _patient_param("subject"),
        SearchParam("lifecycle-status", TOKEN, ("lifecycleStatus",), "proposed | active | …"),
    )

    def __init__(self, reads: OutsideReads) -> None:
        self.reads = reads

    def patient_of(self, resource: dict[str, Any], resource_id: str) -> str | None:
        return patient_id(resource.get("subject"))

    async def check_write(self, resource: dict[str, Any], write: WriteContext) -> list[Issue]:
        if write.before is None:
            await self.reads.require_directory().resolve_subject(
                resource, "subject", write.request.caller
            )
        else:
            keep_unchanged(resource, write.before, ("subject",), same_reference=True)
        refuse_quotations(resource.get("note") or [], "Goal.note")
        earlier = [write.before] if write.before else []
        caller = write.request.caller
        quoted = await quoted_origins(
            self.reads.require_directory(),
            [resource],
            earlier,
            caller,
            "Goal",
            patient_id(resource.get("subject")),
            self.reads.require_view().state(patient_id(resource.get("subject")) or ""),
            self.category_of(resource),
        )
        stamp([resource], earlier, caller, quoted)
        stamp(resource.get("note") or [], (write.before or {}).get("note") or [], caller)
        return []


def _coordinator_periods(resource: dict[str, Any]) -> Any:
    for participant in resource.get("participant") or []:
        codes = {
            c.get("code") for r in participant.get("role") or [] for c in r.get("coding") or []
        }
        if codes & COORDINATOR_ROLES and isinstance(participant.get("period"), dict):
            yield participant["period"]


ASSIGN_OPERATION = "$assign-coordinator"
ASSIGN_PARAMETERS = (
    OperationParameter(
        "coordinator",
        "Reference",
        "The new coordinator: an Organization by organisasjonsnummer, or a Practitioner or"
        " PractitionerRole",
        min=1,
    ),
    OperationParameter("onBehalfOf", "Reference", "The organisation a person acts for"),
    OperationParameter("role", "code", "The coordinator role (default koordinator)"),
    OperationParameter("start", "date", "The first day of the appointment (default today)"),
    OperationParameter("reason", "string", "Why the coordinator is appointed", min=1),
    OperationParameter("substituteFor", "string", "The member a substitute stands in for"),
    OperationParameter("return", "CareTeam", "The care team as updated", min=1, use="out"),
)


class CareTeamDefinition(ResourceDefinition):
    resource_type = "CareTeam"
    documentation = (
        "The ansvarsgruppe: members (people and organisations, the child and its parents"
        " too) with roles and periods; coordinators are ended, never removed"
    )
    data_category = DataCategory.CARETEAM.value
    deletable = False
    operations = (
        ("assign-coordinator", "https://fhir.barnebro.no/OperationDefinition/assign-coordinator"),
    )
    operation_parameters = MappingProxyType({"assign-coordinator": ASSIGN_PARAMETERS})
    search_params = (
        IDENTIFIER_PARAM,
        _patient_param("subject"),
        SearchParam("status", TOKEN, ("status",), "proposed | active | suspended | inactive"),
        SearchParam(
            "participant", REFERENCE, ("participant.member",), "A member (also :identifier)"
        ),
        SearchParam("role", TOKEN, ("participant.role",), "A member's role (care-role)"),
        SearchParam(
            "participant-org",
            TOKEN,
            ("participant.onBehalfOf.identifier", "participant.member.identifier"),
            "An organisation taking part (organisasjonsnummer)",
        ),
        SearchParam(
            "coordinator-period",
            DATE,
            documentation="When a coordinator served: who was it on"
            " date D? coordinator-period=leD&coordinator-period=geD, then read the participants",
            extract=_coordinator_periods,
        ),
    )

    def __init__(self, reads: OutsideReads) -> None:
        self.reads = reads

    def patient_of(self, resource: dict[str, Any], resource_id: str) -> str | None:
        return patient_id(resource.get("subject"))

    def parties(self, resource: dict[str, Any]) -> list[str]:
        """The organisations taking part see their team."""
        return sorted({p.orgnr for p in participants(resource) if p.orgnr})

    async def check_write(self, resource: dict[str, Any], write: WriteContext) -> list[Issue]:
        refuse_quotations(resource.get("note") or [], "CareTeam.note")
        directory = self.reads.require_directory()
        before = write.before
        if before is None:
            patient = await directory.resolve_subject(resource, "subject", write.request.caller)
        else:
            keep_unchanged(resource, before, ("subject",), same_reference=True)
            patient = patient_id(before.get("subject")) or ""
        organisations = [
            (entry.get(element), f"CareTeam.participant[{index}].{element}")
            for index, entry in enumerate(resource.get("participant") or [])
            if isinstance(entry, dict)
            for element in ("member", "onBehalfOf")
        ]
        await directory.address_organisations(organisations)
        _keep_handovers(resource, before, write.request.operation == ASSIGN_OPERATION)
        _organisations_by_number(resource)
        await check_members(resource, before, patient, directory)
        await directory.check_organisation_references(organisations)
        old = participants(before) if before else []
        new = participants(resource)
        kinds: dict[str, str | None] = {}
        taking_part = {p.orgnr for p in old}
        for participant in new:
            if participant.orgnr and participant.orgnr not in kinds:
                # An organisation joining the team must be in use; one already in it stays
                # what it is, even if the register has since taken it out of use.
                kind_of = (
                    directory.organisation_kind
                    if participant.orgnr in taking_part
                    else directory.kind_in_use
                )
                kinds[participant.orgnr] = await kind_of(participant.orgnr)
        new = [_with_kind(p, kinds) for p in new]
        old = [_with_kind(p, kinds) for p in old]
        caller = write.request.caller
        record = await directory.read("Patient", patient)
        birth = a_date((record or {}).get("birthDate"))
        problems = team_problems(
            old,
            new,
            appointer_kind=caller.org_kind,
            child_age=_age(birth, today()) if birth else None,
            plan_category=await self._plan_category(write),
        )
        problems += self._consent_problems(patient, old, new, caller.orgnr)
        refuse(problems)
        for element in ("reasonCode", "note"):
            stamp(resource.get(element) or [], (before or {}).get(element) or [], caller)
        return []

    def _consent_problems(
        self, patient: str, old: list[Participant], new: list[Participant], author: str | None
    ) -> list[Problem]:
        view = self.reads.require_view()
        state, day = view.state(patient), today()
        known = {p.orgnr for p in old}
        lacking = sorted(
            {
                p.orgnr
                for p in new
                if p.orgnr
                and p.orgnr != author
                and p.orgnr not in known
                and not consents_for(state, TEAM_PURPOSE, p.orgnr, p.kind, day)
            }
        )
        if not lacking:
            return []
        return [
            Problem(
                422,
                "business-rule",
                "Taking part in the ansvarsgruppe needs an active consent for purpose"
                f" {TEAM_PURPOSE} naming each organisation; none names {', '.join(lacking)}",
                "CareTeam.participant",
            )
        ]

    async def _plan_category(self, write: WriteContext) -> str | None:
        if write.before is None:
            return None
        plans = await write.uow.find("CarePlan", [("care-team", f"CareTeam/{write.before['id']}")])
        categories = [category_of(p.json()) for p in plans]
        return PlanCategory.FORLOPSPLAN.value if PlanCategory.FORLOPSPLAN in categories else None

    def events(self, change: Change) -> list[EventSpec]:
        return team_events(change, self.parties(change.after or change.before or {}))


def _keep_handovers(
    resource: dict[str, Any], before: dict[str, Any] | None, by_operation: bool
) -> None:
    """A coordinator handover is recorded by `$assign-coordinator` only: a client's own
    handover extensions are replaced by the stored ones."""
    stored = {
        (p.member, p.role, p.start): entry
        for entry, p in zip((before or {}).get("participant") or [],
                            participants(before or {}), strict=True)
    }  # fmt: skip
    for entry, participant in zip(
        resource.get("participant") or [], participants(resource), strict=True
    ):
        earlier = stored.get((participant.member, participant.role, participant.start))
        if earlier is None and by_operation:
            continue  # the operation's own new entry
        kept = [e for e in entry.get("extension") or [] if e.get("url") != HANDOVER_EXT]
        kept += [e for e in (earlier or {}).get("extension") or [] if e.get("url") == HANDOVER_EXT]
        if kept:
            entry["extension"] = kept
        else:
            entry.pop("extension", None)


def _organisations_by_number(resource: dict[str, Any]) -> None:
    for index, entry in enumerate(resource.get("participant") or []):
        for element in ("member", "onBehalfOf"):
            reference = entry.get(element)
            target = reference_target(reference)
            if target is not None and target[0] == "Organization" and not orgnr_of(reference):
                raise error(
                    422,
                    "business-rule",
                    "An organisation in a care team is named by organisasjonsnummer"
                    " (Reference.identifier), so the rules know what kind it is",
                    f"CareTeam.participant[{index}].{element}",
                )


def _with_kind(participant: Participant, kinds: dict[str, str | None]) -> Participant:
    if participant.orgnr is None:
        return participant
    return Participant(
        participant.member, participant.role, participant.orgnr, kinds.get(participant.orgnr),
        participant.start, participant.end, participant.substitute_for,
    )  # fmt: skip


def _age(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def careplan_definitions(reads: OutsideReads) -> list[ResourceDefinition]:
    return [CarePlanDefinition(reads), GoalDefinition(reads), CareTeamDefinition(reads)]


__all__ = ["careplan_definitions"]
