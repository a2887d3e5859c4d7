"""Phase 6: how fast a withdrawal reaches every service's consent view."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from nats.aio.client import Client as NATS

from bench.actors import credential_caller
from bench.consent.transport import quietly
from bench.consent.world import (
    AUTHOR_KIND,
    BASE_URL,
    CATEGORY,
    RECIPIENT_KIND,
    ConsentBench,
    connect_nats,
    org_caller,
)
from bench.crud import (
    Identifiers,
)
from bench.report import (
    percentile,
)
from services.consent import consent_spec
from services.directory import directory_spec
from shared.access.state import PatientAccessState
from shared.access.view import ConsentView
from shared.clock import today
from shared.codes import (
    ORGANISATION_KIND_SYSTEM,
    PARENTAL_RESPONSIBILITY_SYSTEM,
)
from shared.config import Settings
from shared.identifiers import FNR_SYSTEM, ORGNR_SYSTEM
from shared.runtime import ServiceRuntime
from shared.store.outbox import OutboxRelay
from shared.transport.wire import Caller, FhirRequest

WITHDRAWAL_AIM_S = 1.0
"""The project's aim: a withdrawal is visible to every service within a second."""
WAIT_LIMIT_S = 30.0
"""How long a grant or a withdrawal may take to reach every view before the run fails."""
CHILD_AGE_DAYS = 13 * 365 + 100
"""The child is about 13 years and 3 months old: both parents consent, the child is heard."""


class GrantWatch:
    """Follows one consent view: when does a state of the patient arrive with, and then
    without, the grant of the consent under test? The listener runs inside
    `ConsentView.apply`, after the state is in place, so its time is when that service's
    decisions see the change."""

    def __init__(self, name: str, view: ConsentView, patient: str) -> None:
        self.name = name
        self.view = view
        self.patient = patient
        self.consent: str | None = None
        self.granted = asyncio.Event()
        self.gone = asyncio.Event()
        self.granted_at = 0.0
        self.gone_at = 0.0
        view.listeners.append(self.on_state)

    def detach(self) -> None:
        with contextlib.suppress(ValueError):
            self.view.listeners.remove(self.on_state)

    def _has_grant(self, state: PatientAccessState) -> bool:
        return any(grant.consent == self.consent for grant in state.grants)

    def expect(self, consent: str) -> None:
        """Follow `consent` (its grant may already have arrived: then it counts as now)."""
        self.consent = consent
        self.granted, self.gone = asyncio.Event(), asyncio.Event()
        self.granted_at = self.gone_at = 0.0
        state = self.view.state(self.patient)
        if state is not None and self._has_grant(state):
            self.granted_at = time.monotonic()
            self.granted.set()

    def on_state(self, state: PatientAccessState) -> None:
        if state.patient != self.patient or self.consent is None:
            return
        if self._has_grant(state):
            if not self.granted.is_set():
                self.granted_at = time.monotonic()
                self.granted.set()
        elif self.granted.is_set() and not self.gone.is_set():
            self.gone_at = time.monotonic()
            self.gone.set()


async def _all_set(
    watches: Sequence[GrantWatch], pick: Callable[[GrantWatch], asyncio.Event], what: str
) -> None:
    """Wait until `pick(watch)` is set for every view (or fail after WAIT_LIMIT_S)."""
    events = [pick(watch) for watch in watches]
    try:
        async with asyncio.timeout(WAIT_LIMIT_S):
            await asyncio.gather(*(event.wait() for event in events))
    except TimeoutError:
        missing = [w.name for w, e in zip(watches, events, strict=True) if not e.is_set()]
        raise RuntimeError(
            f"{what} did not reach the views {missing} in {WAIT_LIMIT_S} s"
        ) from None


@dataclass
class Family:
    """The directory entries of the withdrawal phase."""

    collector: str
    """orgnr of the barnevernstjeneste that collects the consents."""
    recipient: str
    """orgnr of the BUP the consents share journal information with."""
    child: str
    mother: str
    father: str


async def _create_in_directory(
    directory: ServiceRuntime, caller: Caller, resource: dict[str, Any], res_id: str | None = None
) -> str:
    """Create `resource` as `caller`, or with `res_id` update that one; returns its id."""
    assert directory.router is not None
    request = FhirRequest(
        interaction="update" if res_id else "create",
        resource_type=resource["resourceType"],
        id=res_id,
        base_url=BASE_URL,
        caller=caller,
        prefer_return="minimal",
    )
    response = await directory.router.handle(request, orjson.dumps(resource))
    if response.status != (200 if res_id else 201):
        raise RuntimeError(
            f"writing a {resource['resourceType']} answered {response.status}: {response.body!r}"
        )
    return response.headers["Location"].split("/")[-3]


def _organisation(orgnr: str, kind: str) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "name": f"{kind} {orgnr}",
        "identifier": [{"system": ORGNR_SYSTEM, "value": orgnr}],
        "type": [{"coding": [{"system": ORGANISATION_KIND_SYSTEM, "code": kind}]}],
    }


def _parent(child: str, given: str, fnr: str) -> dict[str, Any]:
    return {
        "resourceType": "RelatedPerson",
        "identifier": [{"system": FNR_SYSTEM, "value": fnr}],
        "patient": {"reference": f"Patient/{child}"},
        "name": [{"family": "Nordmann", "given": [given]}],
        "relationship": [
            {"coding": [{"system": PARENTAL_RESPONSIBILITY_SYSTEM, "code": "felles"}]}
        ],
    }


async def _create_family(bench: ConsentBench, directory: ServiceRuntime) -> Family:
    """A barnevernstjeneste and a BUP, registered by the operator; a child of 13,
    registered by the barnevernstjeneste, its birth date stated by the population register;
    and two parents with joint parental
    responsibility (`felles`), recorded by the population register — each written through
    the directory service with the credential that may write it."""
    ids = Identifiers(bench.rng.randrange(2**32))
    collector, recipient = ids.orgnr(), ids.orgnr()
    operator = credential_caller("operator")
    await _create_in_directory(directory, operator, _organisation(collector, RECIPIENT_KIND))
    await _create_in_directory(directory, operator, _organisation(recipient, AUTHOR_KIND))
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "name": [{"family": "Nordmann", "given": ["Kari"]}],
    }
    child = await _create_in_directory(directory, org_caller(collector, RECIPIENT_KIND), patient)
    register = credential_caller("register")
    born = (today() - timedelta(days=CHILD_AGE_DAYS)).isoformat()
    await _create_in_directory(directory, register, {**patient, "birthDate": born}, child)
    mother = await _create_in_directory(directory, register, _parent(child, "Mor", ids.fnr()))
    father = await _create_in_directory(directory, register, _parent(child, "Far", ids.fnr()))
    return Family(collector, recipient, child, f"RelatedPerson/{mother}", f"RelatedPerson/{father}")


def _consent_input(family: Family) -> dict[str, Any]:
    """Both parents consent to share the child's journal with the BUP; the child was heard
    (`services.consent.admin_api.ConsentInput`)."""

    def signature(grantor: str) -> dict[str, Any]:
        return {
            "grantor": grantor,
            "decision": "consent",
            "method": "in-person",
            "collected_by": "Saksbehandler Hansen",
        }

    return {
        "patient": f"Patient/{family.child}",
        "purpose": "informasjonsdeling",
        "recipients": {"organizations": [family.recipient]},
        "categories": [CATEGORY],
        "signatures": [signature(family.mother), signature(family.father)],
        "child_view": {
            "heard": True,
            "statement": "Vil ha hjelp",
            "heard_by": "Saksbehandler Hansen",
        },
    }


async def _operation(
    consent: ServiceRuntime,
    family: Family,
    operation: str,
    body: dict[str, Any],
    consent_id: str | None = None,
) -> dict[str, Any]:
    """Call the consent administration API as the gateway does (a service operation)."""
    assert consent.router is not None
    request = FhirRequest(
        interaction="operation",
        operation=operation,
        id=consent_id,
        base_url=BASE_URL,
        caller=org_caller(family.collector, RECIPIENT_KIND),
    )
    response = await consent.router.handle(request, orjson.dumps(body))
    if response.status not in (200, 201):
        raise RuntimeError(f"{operation} answered {response.status}: {response.body!r}")
    answer: dict[str, Any] = orjson.loads(response.body)
    return answer


def _spread_ms(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "p50_ms": round(percentile(ordered, 0.50) * 1000, 2),
        "p99_ms": round(percentile(ordered, 0.99) * 1000, 2),
        "max_ms": round((ordered[-1] if ordered else 0.0) * 1000, 2),
        "min_ms": round((ordered[0] if ordered else 0.0) * 1000, 2),
        "mean_ms": round(sum(ordered) * 1000 / len(ordered), 2) if ordered else 0.0,
    }


def _relay_settings(settings: Settings) -> dict[str, Any]:
    linger = inspect.signature(OutboxRelay.__init__).parameters["linger"].default
    return {
        "poll_interval_s": settings.outbox_poll_interval,
        "max_backoff_s": settings.outbox_max_backoff,
        "linger_s": linger,
        "source": "Settings() defaults (BARNEBRO_OUTBOX_* unless set in the environment);"
        " linger is OutboxRelay's default, which ServiceRuntime does not override."
        " Only the NATS prefix and the database are the bench's own.",
        "environment_overrides": sorted(
            name for name in os.environ if name.startswith("BARNEBRO_OUTBOX_")
        ),
    }


async def measure_withdrawal(bench: ConsentBench) -> dict[str, Any]:
    """How fast a withdrawal reaches every service's consent view.

    The directory and the consent service run here as they do in production
    (`ServiceRuntime`, the same `Settings`: production defaults besides the bench's prefix
    and database), with the consent view of the consent service, the bench's own view and
    `options.views` more (each on its own NATS connection) standing for other services.
    N times: create an active consent (both parents, the child heard), wait until every
    view has its grant, withdraw it; t0 just before the withdrawal request, the reply when
    it has committed, and each view's time when the state without the grant is applied."""
    options, settings = bench.options, bench.settings
    # The consent service's audit trail reads the audit stream from its start: the records
    # of the earlier phases (tens of thousands) would keep it busy through this phase.
    js = bench.nc.jetstream()
    purged = await bench.audit_messages()
    await js.purge_stream(settings.audit_stream_name)
    directory = ServiceRuntime(directory_spec(settings), settings)
    consent = ServiceRuntime(consent_spec(settings), settings)
    others: list[tuple[NATS, ConsentView]] = []
    watches: list[GrantWatch] = []
    problems: list[str] = []
    samples: list[dict[str, float]] = []
    creations: list[float] = []
    grants: list[float] = []
    wall0 = time.perf_counter()
    try:
        await directory.start()
        await consent.start()
        for number in range(options.views):
            nc = await connect_nats(options.nats_url, f"barnebro-bench-view-{number + 1}")
            view = ConsentView(nc, settings.consent_view_bucket, settings.event_replicas)
            others.append((nc, view))
            await view.start()
        started_s = time.perf_counter() - wall0
        family = await _create_family(bench, directory)
        assert consent.consent_view is not None
        views = {"consent": consent.consent_view, "bench": bench.view}
        views.update({f"other-{n + 1}": view for n, (_, view) in enumerate(others)})
        watches = [GrantWatch(name, view, family.child) for name, view in views.items()]
        for _ in range(options.withdrawals):
            bench.interrupt.check()
            sent = time.monotonic()
            created = await _operation(consent, family, "consent-create", _consent_input(family))
            created_at = time.monotonic()
            creations.append(created_at - sent)
            if created.get("status") != "active":
                raise RuntimeError(f"the consent is {created.get('status')}: {created}")
            for watch in watches:
                watch.expect(f"Consent/{created['id']}")
            await _all_set(watches, lambda w: w.granted, f"the grant of Consent/{created['id']}")
            grants.append(max(watch.granted_at for watch in watches) - created_at)
            t0 = time.monotonic()
            withdrawn = await _operation(
                consent, family, "consent-withdraw", {"by": family.father}, created["id"]
            )
            replied = time.monotonic()
            if withdrawn.get("status") != "inactive":
                raise RuntimeError(f"the withdrawn consent is {withdrawn.get('status')}")
            await _all_set(watches, lambda w: w.gone, f"the withdrawal of Consent/{created['id']}")
            seen = {watch.name: watch.gone_at for watch in watches}
            last = max(seen.values())
            samples.append(
                {
                    "request_s": replied - t0,
                    "to_last_view_s": last - t0,
                    "reply_to_last_view_s": last - replied,
                    "to_first_view_s": min(seen.values()) - t0,
                    **{f"view:{name}": at - t0 for name, at in seen.items()},
                }
            )
    finally:
        for watch in watches:
            watch.detach()
        for nc, view in others:
            await quietly("stop a consent view", view.stop, problems)
            await quietly("close a view's connection", nc.close, problems)
        await quietly("stop the consent service", consent.stop, problems)
        await quietly("stop the directory service", directory.stop, problems)
    to_last = [s["to_last_view_s"] for s in samples]
    names = [watch.name for watch in watches]
    return {
        "name": "withdrawal",
        "what": "consent-withdraw through the consent service's operation handler until the"
        " state without the grant is applied by every consent view",
        "withdrawals": len(samples),
        "views": names,
        "aim_s": WITHDRAWAL_AIM_S,
        "aim_met": bool(to_last) and max(to_last) < WITHDRAWAL_AIM_S,
        "within_aim": sum(1 for value in to_last if value < WITHDRAWAL_AIM_S),
        "to_last_view": _spread_ms(to_last),
        "reply_to_last_view": _spread_ms([s["reply_to_last_view_s"] for s in samples]),
        "to_first_view": _spread_ms([s["to_first_view_s"] for s in samples]),
        "withdrawal_request": _spread_ms([s["request_s"] for s in samples]),
        "consent_create_request": _spread_ms(creations),
        "grant_reply_to_last_view": _spread_ms(grants),
        "per_view_p50_ms": {
            name: _spread_ms([s[f"view:{name}"] for s in samples])["p50_ms"] for name in names
        },
        "outbox_relay": _relay_settings(settings),
        "audit_messages_purged_before": purged,
        "services_started_in_s": round(started_s, 2),
        "phase_wall_s": round(time.perf_counter() - wall0, 2),
        "problems": problems,
    }
