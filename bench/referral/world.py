"""What the referral benchmark's phases share: options and constants."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.crud import (
    DEFAULT_DATABASE_URL,
    RESULTS_DIR,
    Database,
)
from services.referral.domain.vocabulary import (
    Attachment,
    TaskStatus,
)

PHASES = ("submit", "lifecycle")
MOVES = (TaskStatus.RECEIVED, TaskStatus.ACCEPTED, TaskStatus.IN_PROGRESS, TaskStatus.COMPLETED)
"""The Task's way through a lifecycle, one PUT each (its first status is requested)."""
FIND_TASK = "find-task"
REQUEST_KINDS: dict[str, tuple[str, ...]] = {
    "submit": ("submit",),
    "lifecycle": ("submit", FIND_TASK, *(status.value for status in MOVES)),
}
"""The request kinds of each phase (operations of its ``Recorder``)."""
ATTACHMENTS = (
    Attachment.KOMMUNAL_KARTLEGGING,
    Attachment.BARNETS_STEMME,
    Attachment.SOMATISK_VURDERING,
)
"""What a complete referral to BUP carries (``domain/completeness.py``)."""
FRIST_DAYS = 30
ROUTED_TYPES = ("Organization", "Patient", "DocumentReference", "ServiceRequest", "Task")
SERVERS = {
    "gateway": "gateway",
    "directory": "directory",
    "consent": "consent",
    "referral": "referral",
    "nats-server": "nats",
}
"""Server CPU: reported name → the stack's child process name."""
SETUP_CONCURRENCY = 16
MUNICIPALITY = "0301"


@dataclass(frozen=True)
class ReferralOptions:
    clients: tuple[int, ...] = (16, 64)
    """Concurrent clients; every phase runs once at each count, in this order."""
    seconds: float = 15.0
    warmup: float = 3.0
    """Unmeasured seconds before each phase's window."""
    patients: int = 500
    """Children registered with the GP; each referral is about a random one."""
    database: Database = "postgresql"
    database_url: str = DEFAULT_DATABASE_URL
    out_dir: Path | None = field(default=RESULTS_DIR)
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.clients or min(self.clients) < 1:
            raise ValueError("at least one client count, each at least 1")
        if self.patients < 1 or self.seconds <= 0:
            raise ValueError("at least 1 patient and a positive number of seconds")

    def as_dict(self) -> dict[str, Any]:
        return {
            "clients": list(self.clients),
            "seconds": self.seconds,
            "warmup_seconds": self.warmup,
            "patients": self.patients,
            "database": self.database,
            "database_url": self.database_url if self.database == "postgresql" else None,
            "seed": self.seed,
        }
