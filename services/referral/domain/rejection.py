"""What a rejection of a referral must say.

A rejection (avslag) takes away a child's access to specialist care, so it must carry a
coded reason, a justification that applies the legal criteria (prioriteringsforskriften
§2: alvorlighet, nytte, kostnad, as the prioriteringsveileder applies them), the right to
appeal to Statsforvalteren (added by the server), and the municipal service responsible
for follow-up: a rejection must never leave the child without a responsible service
(`004:l.1147`). "Unresolved care situation" (uavklart omsorgssituasjon) is not a reason
to refuse health care (`000:l.4770`): a justification that says nothing else is refused.
"""

from __future__ import annotations

import re

from services.referral.domain.model import Problem, TaskState
from services.referral.domain.vocabulary import (
    REJECTION_REASON_SYSTEM,
    LegalCriterion,
    RejectionReason,
)

_CLAUSE = r"[^.;:!?]*"
CARE_SITUATION_PHRASES = (
    _CLAUSE + r"\b(omsorgs(situasjon|forhold)\w*|(care|home) situation)" + _CLAUSE,
    _CLAUSE + r"\b(barnevern\w*|child[- ]welfare)" + _CLAUSE,
)
"""Clauses about the care situation or about barnevern taking over: the justification
`000:l.4770` names as invalid. Each matches the whole clause (up to . ; : ! ?), so what
remains is what the justification says besides."""
MIN_OWN_WORDS = 4
"""Words a justification needs besides those phrases to say how the criteria apply."""
FILLER = frozenset(
    {"og", "and", "the", "is", "er", "det", "for", "to", "til", "derfor", "therefore",
     "so", "så", "a", "an", "en", "et", "ei", "i", "in", "av", "of", "først", "first"}
)  # fmt: skip

_PHRASES = re.compile("|".join(f"(?:{p})" for p in CARE_SITUATION_PHRASES), re.IGNORECASE)
_WORD = re.compile(r"\w+", re.UNICODE)


def care_situation_only(justification: str) -> bool:
    """Whether the justification gives the unresolved care situation and nothing else."""
    if not _PHRASES.search(justification):
        return False
    rest = _PHRASES.sub(" ", justification)
    words = [w for w in _WORD.findall(rest.casefold()) if w not in FILLER]
    return len(words) < MIN_OWN_WORDS


def rejection_problems(task: TaskState) -> list[Problem]:
    """What is missing or invalid in a rejection (also a redirect); [] when it is valid."""
    problems: list[Problem] = []
    if task.reason_system != REJECTION_REASON_SYSTEM or task.reason_code not in set(
        RejectionReason
    ):
        problems.append(
            Problem(
                422,
                "required",
                "A rejection needs a coded reason: Task.statusReason with a code from"
                f" {REJECTION_REASON_SYSTEM} ({', '.join(RejectionReason)})",
                "Task.statusReason",
            )
        )
    if not task.justification.strip():
        problems.append(
            Problem(
                422,
                "required",
                "A rejection needs a justification (Task.statusReason.text) that applies the"
                " legal criteria (nyttekriteriet, prioriteringsveilederen)",
                "Task.statusReason.text",
            )
        )
    elif care_situation_only(task.justification):
        problems.append(
            Problem(
                422,
                "business-rule",
                "An unresolved care situation (uavklart omsorgssituasjon) is not a reason to"
                " refuse specialist health care (000:l.4770): say how the legal criteria"
                " (nyttekriteriet, prioriteringsveilederen) apply to the child's health needs",
                "Task.statusReason.text",
            )
        )
    known = set(LegalCriterion)
    if not task.criteria or not set(task.criteria) <= known:
        problems.append(
            Problem(
                422,
                "required",
                "A rejection must name the legal criteria it rests on: one or more"
                f" referral-legal-criterion codes ({', '.join(LegalCriterion)})",
                "Task.extension",
            )
        )
    if task.follow_up is None:
        problems.append(
            Problem(
                422,
                "required",
                "A rejection must name the municipal service responsible for follow-up"
                " (Task.output of type ansvarlig-oppfolging, an Organization by"
                " organisasjonsnummer): it must never leave the child without a responsible"
                " service",
                "Task.output",
            )
        )
    return problems
