"""What the referral service's write rules read outside their own transaction: the
directory (who the patient is, what kind an organisation is, the patient's GP) and the
mirrored consent view (a consent to pass contact details on)."""

from __future__ import annotations

from shared.access.decision import today
from shared.outside_reads import OutsideReads, now
from shared.rules import refuse

ReferralContext = OutsideReads

__all__ = ["ReferralContext", "now", "refuse", "today"]
