"""What the scale benchmark's parts share: its options, the stack it starts, the sizes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench.cpu import CpuUsage
from bench.crud import BACKENDS, DEFAULT_DATABASE_URL, RESULTS_DIR

STACK_SERVICES = ("gateway", "directory", "consent", "referral", "careplan")
"""Every service the mix's types belong to, and the consent service (the consent view,
the relations, the audit trail); no subscriptions service: nobody subscribes."""
SERVERS = {
    "gateway": "gateway",
    "directory": "directory",
    "consent": "consent",
    "referral": "referral",
    "careplan": "careplan",
    "nats-server": "nats",
}
"""Server CPU: reported name → the stack's child process name."""
SIZES = ("baseline", "large")
RATIO_LIMIT = 2.0
"""The aim: p95 at the large size at most this many times p95 at the baseline."""
MIN_BASELINE = 20
"""Resources of the smallest baseline: at least one child with every part of the mix."""
STALL_LIMIT = 300.0
"""Seconds the stack's backlog may go without shrinking, while the run waits for it to
settle (outboxes published, consumers caught up), before the run gives up."""
IMPORT_TIMEOUT = 300.0
"""Seconds one import transaction may take (as `barnebro import`)."""
IMPORT_TOKEN_TTL = 24 * 3600
"""Seconds an importing party's token lasts: one party's file at a million resources
(the register's parents) takes longer than the hour a token usually lasts."""
MAX_FAILURE_SAMPLES = 5
"""Refused resources kept per type and size (every one is counted)."""


@dataclass(frozen=True)
class ScaleOptions:
    baseline: int = 10_000
    """Resources imported before the first measurement."""
    resources: int = 1_000_000
    """Resources imported in all before the second measurement."""
    requests: int = 2_000
    """Measured requests per query and size."""
    concurrency: int = 8
    """Requests under way at once."""
    warmup_requests: int = 100
    """Unmeasured requests per query and size before the measured ones."""
    batch: int = 100
    """Resources per import transaction (`barnebro import --batch`)."""
    parallel: int = 4
    """Import transactions under way at once (`barnebro import --parallel`)."""
    gps: int = 20
    bups: int = 4
    kommuner: int = 10
    database: Literal["postgresql"] = "postgresql"
    database_url: str = DEFAULT_DATABASE_URL
    out_dir: Path | None = field(default=RESULTS_DIR)
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.baseline < MIN_BASELINE:
            raise ValueError(f"--baseline must be at least {MIN_BASELINE} resources")
        if self.resources <= self.baseline:
            raise ValueError("--resources must be more than --baseline")
        if min(self.requests, self.concurrency, self.parallel, self.gps, self.bups) < 1:
            raise ValueError("requests, concurrency, parallel and organisations must be positive")
        if self.kommuner < 1 or self.warmup_requests < 0:
            raise ValueError("at least one kommune, and no negative warm-up")
        if not 1 <= self.batch <= 500:
            raise ValueError("--batch must be between 1 and 500 (barnebro import's limit)")

    def as_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline,
            "resources": self.resources,
            "requests": self.requests,
            "concurrency": self.concurrency,
            "warmup_requests": self.warmup_requests,
            "batch": self.batch,
            "parallel": self.parallel,
            "organisations": {
                "fastlege": self.gps,
                "bup": self.bups,
                "kommune-helse": self.kommuner,
            },
            "database": self.database,
            "database_url": self.database_url,
            "seed": self.seed,
        }


def others_cpu_s(usage: CpuUsage) -> float:
    """CPU the machine spent on others' work in a window: what no process of this run
    spent, and what PostgreSQL spent beyond this run's backends (the database is shared;
    its background processes also work for this run, so this is an upper bound)."""
    own_backends = usage.extra.get(BACKENDS, 0.0)
    beyond = max(0.0, usage.seconds.get("postgres", 0.0) - own_backends)
    return round(max(0.0, usage.unattributed) + beyond, 2)
