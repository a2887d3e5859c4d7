"""Who may state a care order, and what of it a reader is shown.

A care order (omsorgsovertakelse) is decided by the county board and held by one
barnevernstjeneste; only that service states, changes or ends it (DOMAIN §10). So a
write keeps every care order held by someone else exactly as stored, whatever the body
says; only a barnevernstjeneste adds one, naming itself; and a holder hands one over only
by ending its own and naming the new holder (`transfer`). That a child is under a care
order is confidential (barnevernsloven §13-1): schools, kindergartens, PPT and NAV are
never shown one, and a write of theirs cannot reveal one either.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from shared.codes import CARE_ORDER_CODE, CONTACT_RELATIONSHIP_SYSTEM
from shared.family import is_care_order
from shared.rules import Problem

CARE_ORDER_ACTIONS = ("start", "end", "transfer")
WHERE = "Patient.contact"


def holder_of(contact: dict[str, Any]) -> str | None:
    reference = (contact.get("organization") or {}).get("reference")
    return str(reference) if reference else None


def care_order_contacts(patient: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [c for c in (patient or {}).get("contact") or [] if is_care_order(c)]


def other_contacts(patient: dict[str, Any] | None) -> list[dict[str, Any]]:
    return [c for c in (patient or {}).get("contact") or [] if not is_care_order(c)]


def with_care_orders(patient: dict[str, Any], orders: list[dict[str, Any]]) -> None:
    """Set the Patient's care orders, after its other contacts."""
    contacts = [*other_contacts(patient), *orders]
    if contacts:
        patient["contact"] = contacts
    else:
        patient.pop("contact", None)


def _canonical(contacts: list[dict[str, Any]]) -> list[str]:
    return sorted(repr(sorted(_flatten(c))) for c in contacts)


def _flatten(node: Any, path: str = "") -> list[tuple[str, str]]:
    if isinstance(node, dict):
        return [pair for k, v in node.items() for pair in _flatten(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [pair for i, v in enumerate(node) for pair in _flatten(v, f"{path}[{i}]")]
    return [(path, repr(node))]


@dataclass(frozen=True)
class CareOrderWrite:
    """The care orders a new version of the Patient keeps, or why the write is refused."""

    orders: list[dict[str, Any]]
    problems: list[Problem]


NOT_YOURS = Problem(
    422,
    "business-rule",
    "A care order is recorded, changed and ended only by the barnevernstjeneste that holds"
    " it, naming itself (or with POST Patient/{id}/$care-order)",
    WHERE,
)

NEVER_REMOVED = Problem(
    422,
    "business-rule",
    "An open care order is ended (period.end, or POST Patient/{id}/$care-order with action"
    " end), not removed: its end is what tells that the child is no longer in care",
    WHERE,
)


def _start(contact: dict[str, Any]) -> Any:
    return (contact.get("period") or {}).get("start")


def merge_on_write(
    stored: list[dict[str, Any]],
    submitted: list[dict[str, Any]],
    *,
    holder: str | None,
    may_know: bool,
) -> CareOrderWrite:
    """The care orders of a client's create or update. `holder`: the caller's own
    `Organization/<id>` when it is a barnevernstjeneste; `may_know`: whether the caller's
    kind may see care orders (and so was shown the stored ones)."""
    others_stored = [c for c in stored if holder is None or holder_of(c) != holder]
    own = [c for c in submitted if holder is not None and holder_of(c) == holder]
    foreign = [c for c in submitted if holder is None or holder_of(c) != holder]
    own_starts = {_start(c) for c in own}
    open_own = [c for c in stored if holder_of(c) == holder and not _ended(c)]
    if any(_start(c) not in own_starts for c in open_own):
        return CareOrderWrite(stored, [NEVER_REMOVED])
    if foreign and not may_know:
        return CareOrderWrite(others_stored + own, [NOT_YOURS])
    if may_know and _canonical(foreign) != _canonical(others_stored):
        return CareOrderWrite(others_stored + own, [NOT_YOURS])
    return CareOrderWrite(others_stored + own, [])


def care_order(holder: str, start: date, end: date | None = None) -> dict[str, Any]:
    period = {"start": start.isoformat(), **({"end": end.isoformat()} if end else {})}
    return {
        "relationship": [
            {"coding": [{"system": CONTACT_RELATIONSHIP_SYSTEM, "code": CARE_ORDER_CODE}]}
        ],
        "organization": {"reference": holder},
        "period": period,
    }


def holder_kept(
    holder: str, patients: list[dict[str, Any]], *, all_read: bool, day: date
) -> list[Problem]:
    """An organisation holding a care order in force on `day` or later (no end date, or
    one not passed) stays in the register: only its holder ends or transfers the order,
    and once the holder is removed no one could (a holder registered anew is another
    Organization). `patients`: those whose care orders name `holder`; `all_read`: none
    was left out (else it is refused, as it may hold one)."""
    holds = any(
        holder_of(contact) == holder and in_force(contact, day)
        for patient in patients
        for contact in care_order_contacts(patient)
    )
    if not holds and all_read:
        return []
    return [
        Problem(
            409,
            "business-rule",
            f"{holder} holds a care order in force: it ends or transfers the care order"
            " (POST Patient/{id}/$care-order) and is removed from the register after its"
            " last day",
        )
    ]


def open_holders(orders: list[dict[str, Any]], day: date) -> list[str]:
    """The holders (`Organization/<id>`) of the care orders in force on `day` or later,
    each once, in one order."""
    return sorted({holder for c in orders if in_force(c, day) and (holder := holder_of(c))})


def _ended(contact: dict[str, Any]) -> bool:
    """The care order has an end date: its holder has ended it (it may be in force until
    then)."""
    return bool((contact.get("period") or {}).get("end"))


def in_force(contact: dict[str, Any], day: date) -> bool:
    """The care order is in force on `day` or later: it has no end date, or one not
    passed."""
    end = (contact.get("period") or {}).get("end")
    return end is None or str(end)[:10] >= day.isoformat()


def apply_action(
    stored: list[dict[str, Any]],
    action: str,
    *,
    holder: str,
    day: date,
    successor: str | None = None,
) -> CareOrderWrite:
    """The care orders after `$care-order`: `start` one held by `holder` from `day`; `end`
    the holder's open ones on `day`; `transfer` them to `successor` (the holder's end the
    day before `day`, the successor's starts on `day`)."""
    own_open = [c for c in stored if holder_of(c) == holder and in_force(c, day)]
    if action == "start":
        if own_open:
            problem = Problem(
                409, "duplicate", f"{holder} already holds an open care order for the child", WHERE
            )
            return CareOrderWrite(stored, [problem])
        return CareOrderWrite([*stored, care_order(holder, day)], [])
    if not own_open:
        problem = Problem(
            409, "business-rule", f"{holder} holds no open care order for the child", WHERE
        )
        return CareOrderWrite(stored, [problem])
    last_day = day if action == "end" else day - timedelta(days=1)
    starts = [str((o.get("period") or {}).get("start"))[:10] for o in own_open]
    if any(last_day.isoformat() < start for start in starts):
        problem = Problem(
            422,
            "business-rule",
            f"The care order started {max(starts)}: it cannot end (or pass on) before that",
            "date",
        )
        return CareOrderWrite(stored, [problem])
    orders = []
    for contact in stored:
        if any(contact is o for o in own_open):
            contact = {**contact, "period": {**contact["period"], "end": last_day.isoformat()}}
        orders.append(contact)
    if action == "transfer":
        assert successor is not None
        orders.append(care_order(successor, day))
    return CareOrderWrite(orders, [])
