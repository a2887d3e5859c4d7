"""Whether an individual plan holds the nine points the regulation requires.

A plan may be saved incomplete as a draft; it becomes active only when all nine are
there, and the service says which are missing.
"""

from __future__ import annotations

from services.careplan.domain.model import PlanFacts
from services.careplan.domain.vocabulary import Point

WHAT_IS_MISSING: dict[Point, str] = {
    Point.MAL: "goals, resources and needs (CarePlan.goal)",
    Point.DELTAKERE: "who takes part (CarePlan.careTeam with participants)",
    Point.KOORDINATOR: "who coordinates (a koordinator in the care team)",
    Point.BIDRAG: "what each party contributes (activities with a performer)",
    Point.TILTAK: "measures with their extent and who is responsible (activity extent)",
    Point.GJENNOMFORING: "how the measures are carried out (activity descriptions)",
    Point.PERIODE: "plan period and the next revision date",
    Point.SAMTYKKE: "the person's consent to the plan and to sharing (consent individuell-plan)",
    Point.SAMARBEID: "needed collaboration with other services (extension careplan-collaboration)",
}


def _given(text: str | None) -> bool:
    return bool(text and text.strip())


def missing_points(plan: PlanFacts) -> list[Point]:
    """The points an individual plan still lacks, in the regulation's order."""
    activities = plan.activities
    present = {
        Point.MAL: plan.goals > 0,
        Point.DELTAKERE: plan.team is not None and plan.participants > 0,
        Point.KOORDINATOR: plan.has_coordinator,
        Point.BIDRAG: bool(activities) and all(_given(a.performer) for a in activities),
        Point.TILTAK: bool(activities)
        and all(_given(a.extent) and _given(a.performer) for a in activities),
        Point.GJENNOMFORING: bool(activities) and all(a.description.strip() for a in activities),
        Point.PERIODE: plan.period_start is not None and plan.next_revision is not None,
        Point.SAMTYKKE: plan.consent,
        Point.SAMARBEID: plan.collaboration,
    }
    return [point for point in Point if not present[point]]
