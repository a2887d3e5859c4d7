"""Where an individual plan (and a forløp plan) may be in its life, as pure rules.

One individual plan per person: at most one that is open (draft, active, on hold) at a
time; a completed or revoked plan is a record and no longer counts. A plan that rests on
a consent (the individual plan on purpose individuell-plan, the forløp plan on
nasjonalt-forlop) leaves `active` when that consent is gone: it goes on hold, says that
the consent (`samtykke`) is missing, and comes back only by an explicit update once a new
consent exists.

```
draft ──► active ──► completed | revoked
  ▲         │ ▲
  │  consent│ │explicit update under a new consent
  │     lost▼ │
  └─────── on-hold
```
"""

from __future__ import annotations

from dataclasses import dataclass

from services.careplan.domain.vocabulary import PlanCategory, Point
from shared.rules import Problem

CLOSED_STATUSES = frozenset({"completed", "revoked", "entered-in-error"})
"""A plan in one of these is a record: it no longer counts as the person's plan."""

CONSENT_PURPOSES: dict[str, str] = {
    PlanCategory.INDIVIDUELL_PLAN: "individuell-plan",
    PlanCategory.FORLOPSPLAN: "nasjonalt-forlop",
}
"""The plans that rest on a consent, and the consent purpose each needs."""

WITHOUT_CONSENT: dict[str, str] = {"active": "on-hold"}
"""The status a plan takes when its consent is gone; the others stay as they are."""

ONE_PER_PERSON = (
    "The child already has an individual plan that is not completed or revoked; a person"
    " has one individual plan at a time. Revise that plan, or complete or revoke it first"
)
"""The refusal, word for word the same whether or not the caller may read the other plan:
it tells that the child has an open individual plan (the rule cannot be kept without),
and nothing of it: not its id, status, author or content."""


def is_open(status: str | None) -> bool:
    return status not in CLOSED_STATUSES


def one_per_person(status: str | None, others: list[str | None]) -> list[Problem]:
    """Problems with a plan taking `status` while the child's other open individual plans
    are `others`: each the reference the caller may read, or None where it may not."""
    if not is_open(status) or not others:
        return []
    found = [Problem(409, "duplicate", ONE_PER_PERSON, "CarePlan.status")]
    found += [
        Problem(409, "duplicate", f"The child's open individual plan is {reference}")
        for reference in others
        if reference is not None
    ]
    return found


@dataclass(frozen=True)
class ConsentLoss:
    """What becomes of a plan whose consent is gone."""

    status: str
    """its status from now on"""
    missing: tuple[Point, ...]
    """the points it lacks from now on, samtykke among them"""


def consent_lost(status: str, missing: tuple[Point, ...]) -> ConsentLoss | None:
    """A plan (in `status`, lacking `missing`) whose consent is no longer there: None when
    nothing changes (closed, or already on hold or a draft that says so)."""
    if not is_open(status):
        return None
    after = WITHOUT_CONSENT.get(status, status)
    if after == status and Point.SAMTYKKE in missing:
        return None
    return ConsentLoss(after, tuple(p for p in Point if p in missing or p is Point.SAMTYKKE))
