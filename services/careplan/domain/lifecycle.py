"""Where an individual plan may be in its life, as pure rules.

One individual plan per person: at most one that is open (draft, active, on hold) at a
time; a completed or revoked plan is a record and no longer counts.
"""

from __future__ import annotations

from shared.rules import Problem

CLOSED_STATUSES = frozenset({"completed", "revoked", "entered-in-error"})
"""A plan in one of these is a record: it no longer counts as the person's plan."""

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
