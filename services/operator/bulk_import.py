"""`barnebro import`: existing data brought in from FHIR NDJSON through the public API.

Every resource is created by a transaction Bundle sent to the gateway with the caller's
own token, so it passes the same validation, rules, permission checks, access columns,
audit and events as any other write: an import can state only what its caller may state
(a GP's referrals with the GP's token, parental responsibility with the register's).
There is no second write path to keep equivalent.

- Batches hold one resource type each (a type belongs to one service, and a transaction
  stays within one) and are sent `parallel` at a time, level by level of
  `ndjson.in_dependency_order`; a reference to a resource of the import is rewritten to
  the id the server gave it.
- A resource with an identifier is created with `ifNoneExist` on it, so a resource that
  is already there is matched, not duplicated.
- A refused batch is narrowed down: the entry the server names (or, when it names none,
  each half in turn) is set aside with the server's reason and the rest is sent again. A
  resource that refers to one that was refused is refused too, without being sent.
- The state file records each source `Type/id` and the id it got, after each committed
  batch: running the same files again with it skips what was imported.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from services.operator.client import FHIR_JSON, RequestFailed
from services.operator.ndjson import Line, in_dependency_order, read_chunks, references, rewrite

MAX_BATCH_BYTES = 800_000
"""Below the gateway's default body limit (BARNEBRO_MAX_BODY_BYTES, 900 000)."""
RETRIES = 4
"""Attempts at a batch the server could not take (5xx, 429; no answer, when every entry
is conditional) before its resources are reported failed."""


@dataclass
class ImportReport:
    created: int = 0
    matched: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def failed(self, line: Line, reason: str) -> None:
        self.failures.append((line.where, reason))

    def summary(self) -> str:
        seconds = max(time.monotonic() - self.started, 1e-9)
        rate = (self.created + self.matched) / seconds
        return (
            f"{self.created} created, {self.matched} already there, {self.skipped} skipped"
            f" (in the state file), {len(self.failures)} failed; {rate:.0f} resources/s"
        )


class StateFile:
    """Source `Type/id` → the `Type/id` barnebro gave it, one JSON line per resource."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.ids: dict[str, str] = {}
        if path is not None and path.exists():
            for text in path.read_bytes().splitlines():
                if text.strip():
                    source, target = orjson.loads(text)
                    self.ids[source] = target

    def record(self, pairs: list[tuple[str, str]]) -> None:
        self.ids.update(pairs)
        if self.path is not None and pairs:
            with self.path.open("ab") as out:
                out.write(b"".join(orjson.dumps(pair) + b"\n" for pair in pairs))


def _batches(lines: list[Line], size: int) -> Iterable[list[Line]]:
    """Consecutive runs of one resource type, at most `size` entries and about
    MAX_BATCH_BYTES each."""
    by_type: dict[str, list[Line]] = {}
    for line in lines:
        by_type.setdefault(str(line.resource and line.resource["resourceType"]), []).append(line)
    for same_type in by_type.values():
        batch: list[Line] = []
        weight = 0
        for line in same_type:
            size_of = len(orjson.dumps(line.resource))
            if batch and (len(batch) >= size or weight + size_of > MAX_BATCH_BYTES):
                yield batch
                batch, weight = [], 0
            batch.append(line)
            weight += size_of
        if batch:
            yield batch


def _refused_entry(failure: RequestFailed) -> int | None:
    """The entry a refused transaction names (`Bundle.entry[n]: …`), if it names one."""
    text = str(failure)
    marker = text.find("Bundle.entry[")
    if marker < 0:
        return None
    number = text[marker + len("Bundle.entry[") :].split("]", 1)[0]
    return int(number) if number.isdigit() else None


class NdjsonImporter:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        token: str,
        *,
        batch: int = 100,
        parallel: int = 4,
        state: StateFile | None = None,
    ) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Accept": FHIR_JSON,
            "Content-Type": FHIR_JSON,
            "Prefer": "return=minimal",
        }
        self._batch = batch
        self._slots = asyncio.Semaphore(parallel)
        self.state = state or StateFile(None)
        self.report = ImportReport()
        self._identified: set[str] = set()
        self._refused: set[str] = set()
        self._seen: set[str] = set()

    async def run(self, files: list[Path]) -> ImportReport:
        self._identified = await self._types_searchable_by_identifier()
        for path in files:
            for chunk in read_chunks(path, self._batch * 20):
                await self._chunk(chunk)
        return self.report

    async def _types_searchable_by_identifier(self) -> set[str]:
        async with self._session.get(f"{self._base}/metadata", headers=self._headers) as reply:
            body = await reply.read()
            if reply.status != 200:
                raise RequestFailed(reply.status, body)
        rest = orjson.loads(body).get("rest") or [{}]
        return {
            str(resource.get("type"))
            for resource in rest[0].get("resource") or []
            if any(p.get("name") == "identifier" for p in resource.get("searchParam") or [])
        }

    async def _chunk(self, chunk: list[Line]) -> None:
        wanted: list[Line] = []
        for line in chunk:
            if line.resource is None:
                self.report.failed(line, line.problem)
            elif line.key in self.state.ids:
                self.report.skipped += 1
            elif line.key in self._seen:
                self.report.failed(line, f"{line.key} appears more than once in the import")
            else:
                if line.key:
                    self._seen.add(line.key)
                wanted.append(line)
        ordered = in_dependency_order(wanted)
        for line in ordered.cyclic:
            self._refuse(line, "its references to other resources of the import form a cycle")
        for level in ordered.levels:
            sendable = [line for line in level if self._sendable(line)]
            await asyncio.gather(*(self._send(b) for b in _batches(sendable, self._batch)))

    def _sendable(self, line: Line) -> bool:
        refused = references(line.resource) & self._refused
        if refused:
            self._refuse(line, f"it refers to {min(refused)}, which was not imported")
        return not refused

    def _refuse(self, line: Line, reason: str) -> None:
        self.report.failed(line, reason)
        if line.key:
            self._refused.add(line.key)

    async def _send(self, batch: list[Line]) -> None:
        """Send the batch; narrow a refusal down to the entries that cause it."""
        while batch:
            try:
                locations = await self._transaction(batch)
            except RequestFailed as failure:
                if failure.status >= 500 or failure.status == 429:
                    for line in batch:
                        self._refuse(line, str(failure))
                    return
                named = _refused_entry(failure)
                if named is not None and named < len(batch):
                    self._refuse(
                        batch.pop(named), str(failure).replace(f"Bundle.entry[{named}]: ", "")
                    )
                elif len(batch) == 1:
                    self._refuse(batch[0], str(failure))
                    return
                else:
                    half = len(batch) // 2
                    await self._send(batch[:half])
                    batch = batch[half:]
                continue
            self._recorded(batch, locations)
            return

    def _recorded(self, batch: list[Line], answers: list[tuple[str, str]]) -> None:
        pairs = []
        for line, (status, location) in zip(batch, answers, strict=True):
            if status.startswith("201"):
                self.report.created += 1
            else:
                self.report.matched += 1
            if line.key:
                pairs.append((line.key, "/".join(location.split("/_history/")[0].split("/")[-2:])))
        self.state.record(pairs)

    def _entry(self, line: Line) -> dict[str, Any]:
        resource = rewrite(line.resource, self.state.ids)
        resource.pop("id", None)
        resource.pop("meta", None)
        request: dict[str, str] = {"method": "POST", "url": resource["resourceType"]}
        identifier = (resource.get("identifier") or [None])[0]
        if (
            resource["resourceType"] in self._identified
            and isinstance(identifier, dict)
            and identifier.get("system")
            and identifier.get("value")
        ):
            request["ifNoneExist"] = f"identifier={identifier['system']}|{identifier['value']}"
        return {"resource": resource, "request": request}

    async def _transaction(self, batch: list[Line]) -> list[tuple[str, str]]:
        """(status, location) of each entry of the committed transaction."""
        entries = [self._entry(line) for line in batch]
        body = orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries})
        # Without an answer the batch may have been written; sending it again is safe only
        # when every entry would match what it wrote.
        repeatable = all("ifNoneExist" in entry["request"] for entry in entries)
        for attempt in range(RETRIES):
            async with self._slots:
                try:
                    async with self._session.post(
                        self._base, data=body, headers=self._headers
                    ) as reply:
                        answer = await reply.read()
                        status = reply.status
                except (TimeoutError, aiohttp.ClientError) as exc:
                    if not repeatable:
                        raise RequestFailed(
                            503,
                            f"no answer ({exc or type(exc).__name__}); whether the batch was"
                            " written is unknown: look before importing these again".encode(),
                        ) from exc
                    answer, status = str(exc).encode(), 503
            if status < 300:
                return [
                    (str(e["response"]["status"]), str(e["response"].get("location", "")))
                    for e in orjson.loads(answer).get("entry") or []
                ]
            if (status < 500 and status != 429) or attempt == RETRIES - 1:
                raise RequestFailed(status, answer)
            await asyncio.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")


async def import_files(
    url: str, token: str, files: list[Path], *, batch: int, parallel: int, state: Path | None
) -> int:
    """Import the files and print what failed and a summary: 0 when every resource is in,
    1 when some failed, 2 when the import could not run at all."""
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        print(f"barnebro import: no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        importer = NdjsonImporter(
            session, url, token, batch=batch, parallel=parallel, state=StateFile(state)
        )
        try:
            report = await importer.run(files)
        except (aiohttp.ClientError, RequestFailed) as exc:
            print(f"barnebro import: cannot use {url}: {exc}", file=sys.stderr)
            return 2
    for where, reason in report.failures:
        print(f"{where}: failed ({reason})")
    print(report.summary())
    return 1 if report.failures else 0
