"""Whether a referral to BUP carries what its assessment needs.

A good referral carries the municipality's assessment (kartlegging), the child's own
view and a somatic assessment (`004:l.1082-1120`); their absence is the main cause of
rejection. An incomplete referral is still accepted (the child must not wait for
paperwork) but carries warnings and a completeness marker the receiver can search on.
"""

from __future__ import annotations

from collections.abc import Iterable

from services.referral.domain.referrers import SPECIALIST_CHILD_SERVICES
from services.referral.domain.vocabulary import Attachment, Completeness

EXPECTED: dict[Attachment, tuple[Completeness, str]] = {
    Attachment.KOMMUNAL_KARTLEGGING: (
        Completeness.MANGLER_KOMMUNAL_KARTLEGGING,
        "no municipal assessment summary (kommunal kartlegging): the main reason referrals"
        " are rejected",
    ),
    Attachment.BARNETS_STEMME: (
        Completeness.MANGLER_BARNETS_STEMME,
        "the child's own view is not attached (barnets stemme)",
    ),
    Attachment.SOMATISK_VURDERING: (
        Completeness.MANGLER_SOMATISK_VURDERING,
        "no somatic assessment is attached",
    ),
}


def missing(receiver_kind: str | None, attached: Iterable[str]) -> list[tuple[Completeness, str]]:
    """What a referral to `receiver_kind` lacks, given its attachments' types."""
    if receiver_kind not in SPECIALIST_CHILD_SERVICES:
        return []
    present = set(attached)
    return [found for kind, found in EXPECTED.items() if kind not in present]


def markers(gaps: list[tuple[Completeness, str]]) -> list[Completeness]:
    """The completeness marker: what is missing, or `komplett`."""
    return [code for code, _ in gaps] or [Completeness.KOMPLETT]


FORLOP_ROLES: dict[str, tuple[Completeness, str]] = {
    "forlopskoordinator-kommune": (
        Completeness.MANGLER_FORLOPSKOORDINATOR_KOMMUNE,
        "no forløpskoordinator in the municipality is named",
    ),
    "forlopskoordinator-bup": (
        Completeness.MANGLER_FORLOPSKOORDINATOR_BUP,
        "no forløpskoordinator at BUP is named yet",
    ),
}
"""A referral to BUP in a pakkeforløp has a forløpskoordinator in the municipality and
one at BUP (`004:l.1597`)."""


def missing_coordinators(
    receiver_kind: str | None, in_forlop: bool, roles: Iterable[str]
) -> list[tuple[Completeness, str]]:
    """What a referral made within a forløp lacks of its two forløpskoordinatorer."""
    if not in_forlop or receiver_kind not in SPECIALIST_CHILD_SERVICES:
        return []
    named = set(roles)
    return [found for role, found in FORLOP_ROLES.items() if role not in named]
