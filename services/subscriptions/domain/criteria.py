"""Filter criteria: how a subscription narrows its topic, and matching an event to them.

A partner writes each criterion as a search-style string (the backport's
`backport-filter-criteria`): `[ResourceType?]name=value[,value…][&name=value…]`. Names
are the topic's declared filters; a comma gives alternatives (OR), separate criteria all
apply (AND). Anything the topic does not declare, a modifier, or a resource type the
topic is not about is refused with the reason, never silently ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from services.subscriptions.domain.topics import Topic
from shared.events import DomainEvent
from shared.rules import Problem

MAX_VALUES = 100


def _bad(message: str) -> Problem:
    return Problem(422, "value", message, "Subscription.criteria")


@dataclass(frozen=True)
class Criterion:
    name: str
    values: frozenset[str]


def parse_criteria(topic: Topic, texts: list[str]) -> tuple[list[Criterion], list[Problem]]:
    """The criteria in `texts`, or the problems that make them unusable."""
    criteria: list[Criterion] = []
    problems: list[Problem] = []
    declared = topic.filters
    for text in texts:
        query = text.strip()
        if "?" in query:
            resource_type, query = query.split("?", 1)
            if resource_type != topic.resource_type:
                problems.append(
                    _bad(
                        f"Filter {text!r} is about {resource_type}; topic {topic.url} filters"
                        f" {topic.resource_type}"
                    )
                )
                continue
        for part in filter(None, query.split("&")):
            name, equals, value = part.partition("=")
            name = unquote(name)
            if not equals or not value:
                problems.append(_bad(f"Filter {part!r} needs name=value"))
                continue
            if ":" in name:
                problems.append(
                    _bad(
                        f"Filter {name!r}: modifiers are not supported; use one of"
                        f" {sorted(declared)}"
                    )
                )
                continue
            if name not in declared:
                problems.append(
                    _bad(
                        f"Topic {topic.url} cannot be filtered by {name!r}; its filters are"
                        f" {sorted(declared)}"
                    )
                )
                continue
            values = frozenset(unquote(v).strip() for v in value.split(",") if v.strip())
            if not values or len(values) > MAX_VALUES:
                problems.append(_bad(f"Filter {name!r} takes 1 to {MAX_VALUES} values"))
                continue
            criteria.append(Criterion(name, values))
    return criteria, problems


def matches(topic: Topic, criteria: list[Criterion], event: DomainEvent) -> bool:
    """Whether the event triggers the topic and meets every criterion."""
    if not topic.triggered_by(event):
        return False
    filters = topic.filters
    return all(filters[c.name].values(event) & c.values for c in criteria)
