"""Who may take part in an ansvarsgruppe (care team) and who may coordinate.

- Exactly one active `koordinator` at a time (DOMAIN §6); a handover ends the old one's
  period, it is never removed, so the history stays.
- School, kindergarten, PPT and NAV may take part but never coordinate (`004:l.580`).
- A `barnekoordinator` is appointed by the municipality, for a child under 18; where one
  exists it is the coordinator of record (barnevernsloven §15-8).
- In nasjonalt forløp the coordinator belongs to the municipal barnevernstjeneste
  (`000:l.4201`).
- A substitute (stedfortreder) stands in for a named coordinator, in its own period.
"""

from __future__ import annotations

from datetime import date

from services.careplan.domain.model import Participant
from services.careplan.domain.vocabulary import COORDINATOR_ROLES, PlanCategory
from shared.codes import ROLE_SYSTEM, ROLES
from shared.codes import OrganisationKind as K
from shared.rules import Problem

NEVER_COORDINATE = frozenset({K.SKOLE, K.BARNEHAGE, K.PPT, K.NAV})
MUNICIPAL = frozenset({K.KOMMUNE_HELSE, K.BARNEVERNSTJENESTE, K.FASTLEGE})
ADULT_AGE = 18


def coordinator_of_record(team: list[Participant], day: date) -> Participant | None:
    """The barnekoordinator if one is active, else the active koordinator."""
    for role in ("barnekoordinator", "koordinator"):
        for participant in team:
            if (
                participant.role == role
                and participant.substitute_for is None
                and participant.active_on(day)
            ):
                return participant
    return None


def team_problems(
    before: list[Participant],
    after: list[Participant],
    *,
    appointer_kind: str | None,
    child_age: int | None,
    plan_category: str | None,
) -> list[Problem]:
    """Problems with a care team's new participant list; [] when it is valid."""
    problems: list[Problem] = []
    # An appointment is a new (member, role, start); giving an existing one an end is not
    # judged again (it may be ending exactly because the rules no longer hold).
    appointed = {(p.member, p.role, p.start) for p in before}
    added = [p for p in after if (p.member, p.role, p.start) not in appointed]
    kept = {(p.member, p.role, p.start) for p in after}
    for old in before:
        if old.role in COORDINATOR_ROLES and (old.member, old.role, old.start) not in kept:
            problems.append(
                Problem(
                    409,
                    "business-rule",
                    f"The {old.role} {old.member} is ended by giving its period an end, never"
                    " removed: the history of who coordinated stays",
                    "CareTeam.participant",
                )
            )
    problems += [
        Problem(
            422,
            "code-invalid",
            f"{p.role!r} is no code of {ROLE_SYSTEM} ({', '.join(sorted(ROLES))})",
            "CareTeam.participant.role",
        )
        for p in added
        if p.role and p.role not in ROLES
    ]
    for participant in added:
        if participant.role not in COORDINATOR_ROLES:
            continue
        if participant.orgnr is None or participant.kind is None:
            problems.append(
                Problem(
                    422,
                    "business-rule",
                    f"The {participant.role} {participant.member} must act for a registered"
                    " organisation, named by organisasjonsnummer (the member itself, or"
                    " onBehalfOf): what kind it is decides whether it may coordinate",
                    "CareTeam.participant",
                )
            )
        elif participant.kind in NEVER_COORDINATE:
            problems.append(
                Problem(
                    422,
                    "business-rule",
                    f"An organisation of kind {participant.kind} may take part in the team but"
                    " never coordinate (004:l.580)",
                    "CareTeam.participant",
                )
            )
        if participant.role == "barnekoordinator":
            if appointer_kind not in MUNICIPAL:
                problems.append(
                    Problem(
                        403,
                        "forbidden",
                        "A barnekoordinator is appointed by the municipality, not by"
                        f" {appointer_kind or 'an unknown organisation'} (barnevernsloven"
                        " §15-8, hol §7-2a)",
                        "CareTeam.participant",
                    )
                )
            if child_age is None or child_age >= ADULT_AGE:
                problems.append(
                    Problem(
                        422,
                        "business-rule",
                        "A barnekoordinator is for a child under 18 with a recorded birth date",
                        "CareTeam.participant",
                    )
                )
        if (
            plan_category == PlanCategory.FORLOPSPLAN
            and participant.role == "koordinator"
            and participant.kind != K.BARNEVERNSTJENESTE
        ):
            problems.append(
                Problem(
                    422,
                    "business-rule",
                    "In nasjonalt forløp the coordinator belongs to the barnevernstjeneste"
                    " (000:l.4201)",
                    "CareTeam.participant",
                )
            )
    for role in ("koordinator", "barnekoordinator"):
        holders = [p for p in after if p.role == role and p.substitute_for is None]
        for index, first in enumerate(holders):
            for second in holders[index + 1 :]:
                if first.overlaps(second):
                    problems.append(
                        Problem(
                            409,
                            "business-rule",
                            f"Only one {role} at a time: end {first.member}'s period (the"
                            f" handover) before {second.member}'s starts",
                            "CareTeam.participant",
                        )
                    )
    coordinators = {
        p.member for p in after if p.role in COORDINATOR_ROLES and p.substitute_for is None
    }
    for participant in after:
        if participant.substitute_for is not None and (
            participant.substitute_for not in coordinators
        ):
            problems.append(
                Problem(
                    422,
                    "business-rule",
                    f"{participant.member} is a substitute for {participant.substitute_for},"
                    " who is no coordinator in this team",
                    "CareTeam.participant",
                )
            )
    return problems
