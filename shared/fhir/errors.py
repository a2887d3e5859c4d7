"""FHIR errors as exceptions that carry their HTTP status and OperationOutcome issues.

Every layer raises `FhirError`; the edge that answers (gateway or service host) turns it
into an OperationOutcome. Keeping the status next to the issue means a handler cannot
answer a client mistake with a 500.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson


@dataclass(frozen=True)
class Issue:
    """One OperationOutcome.issue: what went wrong and, where known, where (FHIRPath)."""

    code: str
    diagnostics: str
    severity: str = "error"
    expression: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        issue: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            issue["expression"] = list(self.expression)
        return issue


@dataclass
class FhirError(Exception):
    """A request that cannot be served, with the status and issues the client gets."""

    status: int
    issues: list[Issue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return "; ".join(issue.diagnostics for issue in self.issues) or f"HTTP {self.status}"


def error(status: int, code: str, diagnostics: str, *expression: str) -> FhirError:
    """A FhirError with a single issue."""
    return FhirError(status, [Issue(code, diagnostics, expression=expression)])


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    """An OperationOutcome resource holding the given issues."""
    return {"resourceType": "OperationOutcome", "issue": [issue.to_json() for issue in issues]}


def operation_outcome_bytes(issues: list[Issue]) -> bytes:
    return orjson.dumps(operation_outcome(issues))


def information(diagnostics: str) -> Issue:
    return Issue("informational", diagnostics, severity="information")
