"""The plan in nasjonalt forløp for barnevern: its phases come in order.

avklaringsmøte → kartlegging / utredning → statusmøter → avslutning (DOMAIN §7). Each
phase is an activity of the plan with its date and participants; the avklaringsmøte comes
first (the consent is obtained there) and the avslutning last.
"""

from __future__ import annotations

from datetime import date

from services.careplan.domain.vocabulary import Phase
from shared.rules import Problem

ORDER = {
    Phase.AVKLARINGSMOTE: 0,
    Phase.KARTLEGGING: 1,
    Phase.UTREDNING: 1,
    Phase.STATUSMOTE: 2,
    Phase.AVSLUTNING: 3,
}


def phase_problems(phases: list[tuple[str, date | None]]) -> list[Problem]:
    """Problems with the phases (code, start date) of a forløp plan."""
    problems = []
    dated: list[tuple[int, date, str]] = []
    for code, start in phases:
        if code not in ORDER:
            problems.append(
                Problem(
                    422,
                    "code-invalid",
                    f"{code!r} is not a phase of nasjonalt forløp",
                    "CarePlan.activity",
                )
            )
        elif start is None:
            problems.append(
                Problem(
                    422,
                    "required",
                    f"The phase {code} needs its date (scheduledPeriod)",
                    "CarePlan.activity",
                )
            )
        else:
            dated.append((ORDER[Phase(code)], start, code))
    for rank, start, code in dated:
        for other_rank, other_start, other in dated:
            if other_rank < rank and other_start > start:
                problems.append(
                    Problem(
                        422,
                        "business-rule",
                        f"The phase {code} ({start}) comes after {other} ({other_start}) in"
                        " nasjonalt forløp",
                        "CarePlan.activity",
                    )
                )
    if dated and Phase.AVKLARINGSMOTE not in {code for _, _, code in dated}:
        problems.append(
            Problem(
                422,
                "business-rule",
                "Nasjonalt forløp starts with the avklaringsmøte, where consent is obtained",
                "CarePlan.activity",
            )
        )
    return problems
