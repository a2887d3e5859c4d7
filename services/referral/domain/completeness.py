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


def markers(receiver_kind: str | None, attached: Iterable[str]) -> list[Completeness]:
    """The completeness marker: what is missing, or `komplett`."""
    gaps = [code for code, _ in missing(receiver_kind, attached)]
    return gaps or [Completeness.KOMPLETT]
