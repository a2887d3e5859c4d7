"""Who may refer a child to whom (DOMAIN §5).

The fastlege, the municipal health service (kommunepsykolog), the barnevernstjeneste
(barnevernleder), the legevakt and other specialist units refer. A child-welfare
institution cannot refer directly: it helps the barnevernstjeneste or the GP do it.
Referrals go to the specialist units and to the municipal health service.
"""

from __future__ import annotations

from services.referral.domain.model import Problem
from shared.codes import OrganisationKind as K

REFERRERS = frozenset({K.FASTLEGE, K.KOMMUNE_HELSE, K.BARNEVERNSTJENESTE, K.LEGEVAKT,
                       K.BUP, K.BUPA, K.DPS})  # fmt: skip
RECEIVERS = frozenset({K.BUP, K.BUPA, K.DPS, K.KOMMUNE_HELSE})
SPECIALIST_CHILD_SERVICES = frozenset({K.BUP, K.BUPA})
"""Receivers whose referrals are checked for completeness (`completeness.py`)."""


def referrer_problem(kind: str | None) -> Problem | None:
    """Why an organisation of `kind` may not refer; None when it may."""
    if kind == K.BARNEVERNINSTITUSJON:
        return Problem(
            403,
            "forbidden",
            "A barneverninstitusjon (child-welfare institution) cannot refer directly: the"
            " barnevernstjeneste or the child's fastlege (GP) refers, with the institution's"
            " information attached",
            "ServiceRequest.requester",
        )
    if kind not in REFERRERS:
        known = ", ".join(sorted(REFERRERS))
        return Problem(
            403,
            "forbidden",
            f"An organisation of kind {kind or 'unknown'} cannot refer; referrers are: {known}",
            "ServiceRequest.requester",
        )
    return None


def receiver_problem(kind: str | None) -> Problem | None:
    """Why an organisation of `kind` cannot receive referrals; None when it can."""
    if kind not in RECEIVERS:
        known = ", ".join(sorted(RECEIVERS))
        return Problem(
            422,
            "business-rule",
            f"An organisation of kind {kind or 'unknown'} does not receive referrals;"
            f" receivers are: {known}",
            "ServiceRequest.performer",
        )
    return None
