"""What a service's rules answer when they refuse something, and how it reaches the client.

Rules are pure functions that return `Problem`s (an empty list when all is well); the
service turns them into one FhirError with `refuse`, so the client gets every problem of
the same kind at once, as an OperationOutcome.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.fhir.errors import FhirError, Issue


@dataclass(frozen=True)
class Problem:
    """Why the rules refuse something: HTTP status, FHIR issue code, message, element."""

    status: int
    code: str
    message: str
    expression: str | None = None


def refuse(problems: list[Problem]) -> None:
    """Raise the problems as one FhirError with the first problem's status (and every
    problem of that status); nothing when there are none."""
    if not problems:
        return
    status = problems[0].status
    raise FhirError(
        status,
        [
            Issue(p.code, p.message, expression=(p.expression,) if p.expression else ())
            for p in problems
            if p.status == status
        ],
    )
