"""Growing the stored data: the mix written as NDJSON, one file per party and type, and
brought in with `barnebro import`'s own importer as that party, type by type.

The importer runs in this process against the gateway (real HTTP, the caller's token),
exactly as the command does, so a resource passes every rule, permission check, audit
record and event a client's write does. One state file (kept in memory) carries the
source ids to the server's across every party and both sizes, as `--state` does between
runs of the command. After each type the run waits until the stack has settled (every
outbox published, every durable consumer caught up: the consent service's relations and
audit trail), so that the next type finds the relations it needs, and so that the CPU
counted for a type includes the work it set off after the last transaction's answer.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Any

import aiohttp
import orjson

from bench.cpu import CpuMeter
from bench.crud import Identifiers
from bench.load import PidLookup
from bench.report import per_cpu_second
from bench.scale.mix import IMPORT_ORDER, REGISTER, Child, Part, family
from bench.scale.world import (
    IMPORT_TIMEOUT,
    IMPORT_TOKEN_TTL,
    MAX_FAILURE_SAMPLES,
    others_cpu_s,
)
from services.operator.bulk_import import ImportReport, NdjsonImporter
from services.operator.import_state import StateFile
from shared.auth.local_keys import issue_credential, issue_token


def write_files(
    children: Iterable[Child],
    ids: Identifiers,
    gp_ids: Mapping[str, str],
    day: date,
    directory: Path,
) -> dict[Part, Path]:
    """The children's resources as NDJSON, one file per party and type, in `directory`."""
    paths: dict[Part, Path] = {}
    handles: dict[Part, IO[bytes]] = {}
    try:
        for child in children:
            for part, resource in family(child, ids, gp_ids, day):
                out = handles.get(part)
                if out is None:
                    paths[part] = directory / part.file_name
                    out = handles[part] = paths[part].open("wb")
                out.write(orjson.dumps(resource) + b"\n")
    finally:
        for out in handles.values():
            out.close()
    return paths


@dataclass
class TypeTally:
    """What importing one type at one size did."""

    resource_type: str
    parties: int = 0
    created: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    def add(self, report: ImportReport) -> None:
        self.parties += 1
        self.created += report.created
        self.failures += [(where, reason) for _, where, reason in report.failures]

    @property
    def imported(self) -> int:
        return self.created


@dataclass(frozen=True)
class ImportTarget:
    """The running stack the importer writes to, and how its work is counted."""

    base_url: str
    data_dir: Path
    meter: CpuMeter
    backends: PidLookup | None
    settle: Callable[[], Awaitable[float]]
    """Waits until the stack has settled; the seconds it took."""


class MixImporter:
    """Imports children's resources into the stack, size after size, with one state file."""

    def __init__(self, stack: ImportTarget, *, batch: int, parallel: int) -> None:
        self.stack = stack
        self.batch = batch
        self.parallel = parallel
        self.state = StateFile(None)

    def server_id(self, key: str) -> str:
        """The id the server gave the resource of source `Type/id`."""
        return self.state.ids[key].split("/", 1)[1]

    def _token(self, writer: str) -> str:
        """A token of the party that lasts as long as its import may (hours at a million)."""
        if writer == REGISTER:
            return issue_credential(self.stack.data_dir, "register", ttl=IMPORT_TOKEN_TTL)
        return issue_token(self.stack.data_dir, orgnr=writer, ttl=IMPORT_TOKEN_TTL)

    async def grow(
        self,
        children: Sequence[Child],
        ids: Identifiers,
        gp_ids: Mapping[str, str],
        day: date,
        directory: Path,
    ) -> dict[str, Any]:
        """Write the children's files and import them type by type; per type what it took.
        The files are removed once imported."""
        paths = write_files(children, ids, gp_ids, day, directory)
        types: dict[str, Any] = {}
        timeout = aiohttp.ClientTimeout(total=IMPORT_TIMEOUT)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session:
                for resource_type in IMPORT_ORDER:
                    parts = sorted(p for p in paths if p.resource_type == resource_type)
                    print(f"  importing {resource_type} ({len(parts)} parties) …", flush=True)
                    types[resource_type] = await self._import_type(
                        session, resource_type, [(p, paths[p]) for p in parts]
                    )
        finally:
            for path in paths.values():
                path.unlink(missing_ok=True)
        return types

    async def _import_type(
        self,
        session: aiohttp.ClientSession,
        resource_type: str,
        files: Sequence[tuple[Part, Path]],
    ) -> dict[str, Any]:
        tally = TypeTally(resource_type)
        extra = await self.stack.backends() if self.stack.backends else None
        start = self.stack.meter.snapshot(extra)
        started = time.perf_counter()
        for part, path in files:
            importer = NdjsonImporter(
                session,
                self.stack.base_url,
                self._token(part.writer),
                batch=self.batch,
                parallel=self.parallel,
                state=self.state,
            )
            tally.add(await importer.run([path]))
        imported = time.perf_counter() - started
        settled = await self.stack.settle()
        extra = await self.stack.backends() if self.stack.backends else None
        usage = CpuMeter.usage(start, self.stack.meter.snapshot(extra))
        return {
            "parties": tally.parties,
            "imported": tally.imported,
            "created": tally.created,
            "failed": len(tally.failures),
            "failure_samples": [
                {"where": where, "reason": reason[:800]}
                for where, reason in tally.failures[:MAX_FAILURE_SAMPLES]
            ],
            "import_s": round(imported, 2),
            "settle_s": round(settled, 2),
            "per_second": round(tally.imported / imported, 1) if imported > 0 else None,
            "server_cpu_s": round(usage.server, 2),
            "per_server_cpu_second": per_cpu_second(tally.imported, usage.server),
            "others_cpu_s": others_cpu_s(usage),
            "cpu": usage.as_dict(),
        }
