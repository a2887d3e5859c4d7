"""Warnings ahead of time that a consent's authority ends (the 16th birthday, a care
order's planned end): one event per consent and last valid day, whatever restarts, and a
search for the care team; on the running stack, real NATS and both databases."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from pydantic import ValidationError

from services.consent.authority_warnings import AuthorityWarnings
from shared.config import Settings
from shared.events import DomainEvent
from tests.consent_world import BVT, HEARD, Child, World, sharing, signature
from tests.support import stream_events, wait_for

WARNING = "consent.Consent.authority-ending"


def test_the_warning_days_are_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().consent_warning_days == 30
    monkeypatch.setenv("BARNEBRO_CONSENT_WARNING_DAYS", "14")
    assert Settings().consent_warning_days == 14
    monkeypatch.setenv("BARNEBRO_CONSENT_WARNING_DAYS", "-1")
    with pytest.raises(ValidationError):
        Settings()


async def _granted(world: World, child: Child) -> dict[str, object]:
    both = sharing(child, signature(child.mother), signature(child.father), child_view=HEARD)
    reply = await world.api("POST", "consents", both)
    assert reply.status == 201 and reply.json()["status"] == "active", reply.body
    consent: dict[str, object] = reply.json()
    return consent


async def _events(world: World, name: str) -> list[DomainEvent]:
    return [e for _, e in await stream_events(world.stack) if e.type == name]


async def test_the_care_team_is_warned_once_before_the_16th_birthday(world: World) -> None:
    soon = await world.child(16, days=10)  # 16 in ten days: within the 30 days
    later = await world.child(16, days=60)
    warned = await _granted(world, soon)
    not_yet = await _granted(world, later)
    assert warned["consent"]["valid_until"] == (date.today() + timedelta(days=9)).isoformat()  # type: ignore[index]
    warnings = next(c for c in world.stack.consent.components if isinstance(c, AuthorityWarnings))
    assert warnings.days == 30
    assert await warnings.warn() == 1
    assert await warnings.warn() == 0, "each warning once"
    restarted = AuthorityWarnings(warnings._handlers, warnings.days, 3600)
    assert await restarted.warn() == 0, "also after a restart, or on another instance"

    async def announced() -> bool:
        return bool(await _events(world, WARNING))

    await wait_for(announced, 5)
    (event,) = await _events(world, WARNING)
    assert (event.resource_id, event.patient) == (warned["id"], soon.id)
    assert event.subject(world.stack.settings.nats_prefix).endswith(
        f".events.consent.Consent.authority-ending.{soon.id}"
    )
    (granted_event,) = [
        e for e in await _events(world, "consent.Consent.granted") if e.resource_id == warned["id"]
    ]
    assert set(event.data) <= set(granted_event.data), "it names no more than the others"
    assert event.access == granted_event.access

    handlers = warnings._handlers
    handlers.clock = lambda: date.today() + timedelta(days=31)
    try:
        assert await warnings.warn() == 1, "the other one is within 30 days by now"
    finally:
        handlers.clock = date.today

    async def both_announced() -> bool:
        return len(await _events(world, WARNING)) == 2

    await wait_for(both_announced, 5)
    assert {e.resource_id for e in await _events(world, WARNING)} == {
        warned["id"],
        not_yet["id"],
    }


async def test_the_care_team_searches_consents_whose_authority_ends_soon(world: World) -> None:
    soon = await world.child(16, days=10)
    later = await world.child(16, days=60)
    warned = await _granted(world, soon)
    await _granted(world, later)
    within = (date.today() + timedelta(days=30)).isoformat()
    found = await world.fhir(
        "GET", f"Consent?valid-until=le{within}&status=active,proposed", by=BVT
    )
    assert found.status == 200, found.body
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [warned["id"]]
    bad = await world.fhir("GET", "Consent?valid-until=soon", by=BVT)
    assert bad.status == 400, bad.body
