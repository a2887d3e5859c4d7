"""`barnebro import`: existing data brought in from FHIR NDJSON through the public API.

Every resource is created by a transaction Bundle sent to the gateway with the caller's
own token, so it passes the same validation, rules, permission checks, access columns,
audit and events as any other write: an import can state only what its caller may state
(a GP's referrals with the GP's token, parental responsibility with the register's).
There is no second write path to keep equivalent.

- Batches hold one resource type each (a type belongs to one service, and a transaction
  stays within one) and are sent `parallel` at a time, level by level of
  `ndjson.in_dependency_order`; a reference to a resource of the import is rewritten to
  the id the server gave it. A reference to one not written yet is refused, not sent.
- Nothing is matched: a resource is created as a POST would create it, and a business
  key the server keeps unique (a fødselsnummer, an organisasjonsnummer) refuses a
  second one. Resuming is the state file's job.
- A refused batch is narrowed down: the entry the server names (or, when it names none,
  each half in turn) is set aside with the server's reason and the rest is sent again. A
  resource that refers to one that was refused is refused too, without being sent.
- A batch is sent again only when the server answered that nothing was written (503,
  429). Without an answer, or with a 504, it may have been written: its resources are
  reported as such, never sent twice.
- The state file records each source `Type/id` and the id it got, after each committed
  batch: running the same files again with it skips what was imported.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from services.operator.client import FHIR_JSON, RequestFailed
from services.operator.import_state import ImportAborted, StateFile
from services.operator.ndjson import (
    RESOURCE_KEY,
    Line,
    in_dependency_order,
    keys_in,
    read_chunks,
    references,
    rewrite,
)

MAX_BATCH_BYTES = 800_000
"""Below the gateway's default body limit (BARNEBRO_MAX_BODY_BYTES, 900 000)."""
RETRIES = 4
"""Attempts at a batch the server answered it wrote nothing of (503, 429) before its
resources are reported failed."""
BACKOFF_SECONDS = 0.5
"""Before the first retry; doubled before each next one."""
NOTHING_WRITTEN = frozenset({429, 503})
UNKNOWN_OUTCOME = 504
"""The status a batch that may or may not have been written is reported with."""
UNCONFIRMED = (
    "an earlier run may have written it (its batch got no certain answer): look it up, then"
    " remove its line from the state file"
)


class NotSent(Exception):
    """The import was stopped before the batch was sent."""


class LookupFailed(Exception):
    """Whether a referenced resource is on the server could not be found out."""


KEPT_META = ("tag", "security")
"""What of `meta` a create takes from the client (a SUBSETTED tag is refused as on any
POST); versions, dates and profiles are the server's."""


@dataclass
class ImportReport:
    created: int = 0
    skipped: int = 0
    unsent: int = 0
    failures: list[tuple[tuple[int, int], str, str]] = field(default_factory=list)
    warnings: list[tuple[tuple[int, int], str, str]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def failed(self, line: Line, reason: str) -> None:
        self.failures.append((line.position, line.where, reason))

    def lines(self) -> list[str]:
        """Each failure and warning, in the files' order."""
        notes = [(p, f"{w}: failed ({r})") for p, w, r in self.failures]
        notes += [(p, f"{w}: warning ({r})") for p, w, r in self.warnings]
        return [text for _, text in sorted(notes)]

    def summary(self) -> str:
        seconds = max(time.monotonic() - self.started, 1e-9)
        interrupted = f", {self.unsent} not sent (interrupted)" if self.unsent else ""
        return (
            f"{self.created} created, {self.skipped} skipped (in the state file),"
            f" {len(self.failures)} failed{interrupted}; {self.created / seconds:.0f}"
            " resources/s"
        )


@dataclass(frozen=True)
class Outgoing:
    """A line with its transaction entry as sent: encoded once, weighed, and sent again
    unchanged when its batch is narrowed down or retried."""

    line: Line
    entry: bytes

    @property
    def resource_type(self) -> str:
        return str(self.line.resource and self.line.resource["resourceType"])


def _batches(outgoing: list[Outgoing], size: int) -> Iterable[list[Outgoing]]:
    """Consecutive runs of one resource type, at most `size` entries and about
    MAX_BATCH_BYTES each."""
    by_type: dict[str, list[Outgoing]] = {}
    for one in outgoing:
        by_type.setdefault(one.resource_type, []).append(one)
    for same_type in by_type.values():
        batch: list[Outgoing] = []
        weight = 0
        for one in same_type:
            if batch and (len(batch) >= size or weight + len(one.entry) > MAX_BATCH_BYTES):
                yield batch
                batch, weight = [], 0
            batch.append(one)
            weight += len(one.entry)
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


Committed = list[tuple[dict[str, Any], str]]
"""Each entry's `response` in a transaction-response, with the `Type/id` it names."""


def _committed(batch: list[Outgoing], answer: bytes) -> Committed:
    """The `response` of each entry of a committed transaction, checked against the batch:
    one entry each, at `Type/id` of its type. An answer that is not that (a proxy's?)
    says nothing certain of what was written."""
    try:
        responses = [dict(e["response"]) for e in orjson.loads(answer).get("entry") or []]
    except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError):
        responses = []
    committed: Committed = []
    for one, response in zip(batch, responses, strict=False):
        location = str(response.get("location", "")).split("/_history/")[0]
        key = "/".join(location.split("/")[-2:])
        target = RESOURCE_KEY.fullmatch(key)
        if target is None or target[1] != one.resource_type:
            break
        committed.append((response, key))
    if len(committed) != len(batch) or len(responses) != len(batch):
        raise _unknown_outcome("the answer does not list the batch's resources")
    return committed


def _unknown_outcome(what: str) -> RequestFailed:
    return RequestFailed(
        UNKNOWN_OUTCOME,
        f"{what[:120]}; whether the batch was written is unknown: look before importing"
        " these again".encode(),
    )


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
        self._in_import: set[str] = set()
        self._refused: set[str] = set()
        self._seen: set[str] = set()
        self._found: dict[str, bool] = {}
        self._stopping = False

    def stop(self) -> bool:
        """Send nothing more; what is in flight is finished and recorded. False when it
        was asked before: then the caller gives up waiting."""
        stopped_before, self._stopping = self._stopping, True
        return not stopped_before

    async def run(self, files: list[Path]) -> ImportReport:
        self._in_import = await asyncio.to_thread(keys_in, files)
        for index, path in enumerate(files):
            for chunk in read_chunks(path, self._batch * 20, index):
                await self._chunk(chunk)
        return self.report

    async def _chunk(self, chunk: list[Line]) -> None:
        wanted: list[Line] = []
        for line in chunk:
            if line.resource is None:
                self.report.failed(line, line.problem)
            elif line.key in self.state.ids:
                self.report.skipped += 1
            elif line.key in self.state.unknown:
                self._refuse(line, UNCONFIRMED)
            elif line.key in self._seen:
                self._refuse(line, f"{line.key} appears more than once in the import", key=False)
            else:
                if line.key:
                    self._seen.add(line.key)
                wanted.append(line)
        ordered = in_dependency_order(wanted)
        for line, reason in ordered.refused:
            self._refuse(line, reason)
        for level in ordered.levels:
            outgoing = [
                Outgoing(line, self._entry(line)) for line in level if await self._sendable(line)
            ]
            await asyncio.gather(*(self._send(b) for b in _batches(outgoing, self._batch)))

    async def _sendable(self, line: Line) -> bool:
        named = references(line.resource)
        refused = named & self._refused
        if refused:
            self._refuse(line, f"it refers to {min(refused)}, which was not imported")
            return False
        # Each check looks up this line's references only: `set - dict.keys()` would copy
        # every id imported so far, for every line.
        ahead = {ref for ref in named & self._in_import if ref not in self.state.ids}
        if ahead:
            self._refuse(
                line,
                f"it refers to {min(ahead)}, which comes later in the import: give the files"
                " in dependency order (within a file, the one referred to first or at most"
                f" {self._batch * 20} lines later)",
            )
            return False
        unconfirmed = named & self.state.unknown
        if unconfirmed:
            self._refuse(line, f"it refers to {min(unconfirmed)}: {UNCONFIRMED}")
            return False
        elsewhere = {ref for ref in named - self._in_import if ref not in self.state.ids}
        for reference in sorted(elsewhere):
            try:
                found = await self._on_server(reference)
            except LookupFailed as exc:
                self._refuse(line, f"it refers to {reference}, which could not be looked up"
                             f" ({exc}): try again")  # fmt: skip
                return False
            if not found:
                self._refuse(
                    line,
                    f"it refers to {reference}, which is neither in the import, nor in the"
                    " state file, nor on the server (a resource of an earlier run that"
                    " failed?)",
                )
                return False
        return True

    async def _on_server(self, reference: str) -> bool:
        """Whether the caller finds `reference` on the server; a reference the caller may
        not check (403) is left to the server's own checks on the write."""
        if reference not in self._found:
            url = f"{self._base}/{reference}?_summary=true"
            try:
                async with self._session.get(url, headers=self._headers) as reply:
                    await reply.read()
                    status = reply.status
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise LookupFailed(f"no answer: {exc or type(exc).__name__}") from exc
            if status == 401:
                raise ImportAborted("the server refused the token (HTTP 401)")
            if status not in (200, 403, 404, 410):
                raise LookupFailed(f"HTTP {status}")
            self._found[reference] = status in (200, 403)
        return self._found[reference]

    def _refuse(self, line: Line, reason: str, *, key: bool = True) -> None:
        self.report.failed(line, reason)
        if key and line.key:
            self._refused.add(line.key)

    async def _send(self, batch: list[Outgoing]) -> None:
        """Send the batch; narrow a refusal down to the entries that cause it."""
        while batch:
            try:
                answers = await self._transaction(batch)
            except NotSent:
                self.report.unsent += len(batch)
                return
            except RequestFailed as failure:
                named = _refused_entry(failure)
                if failure.status == UNKNOWN_OUTCOME:
                    self._unconfirmed(batch, str(failure))
                    return
                if failure.status >= 500 or failure.status in NOTHING_WRITTEN:
                    for one in batch:
                        self._refuse(one.line, str(failure))
                    return
                if named is not None and named < len(batch):
                    reason = str(failure).replace(f"Bundle.entry[{named}]: ", "")
                    self._refuse(batch.pop(named).line, reason)
                elif len(batch) == 1:
                    self._refuse(batch[0].line, str(failure))
                    return
                else:
                    half = len(batch) // 2
                    await self._send(batch[:half])
                    batch = batch[half:]
                continue
            self._recorded(batch, answers)
            return

    def _unconfirmed(self, batch: list[Outgoing], reason: str) -> None:
        """The batch may or may not have been written: reported, and kept from being sent
        again by a later run (`StateFile.unknown`)."""
        for one in batch:
            self._refuse(one.line, reason)
        self.state.record_unknown([str(one.line.key) for one in batch if one.line.key])

    def _recorded(self, batch: list[Outgoing], committed: Committed) -> None:
        pairs = []
        for one, (answer, key) in zip(batch, committed, strict=True):
            line = one.line
            self.report.created += 1
            for issue in (answer.get("outcome") or {}).get("issue") or []:
                text = str(issue.get("diagnostics", ""))
                self.report.warnings.append((line.position, line.where, text))
            if line.key:
                pairs.append((line.key, key))
        self.state.record(pairs)

    def _entry(self, line: Line) -> bytes:
        """The line's transaction entry, its references resolved by what is recorded."""
        resource = rewrite(line.resource, self.state.ids)
        resource.pop("id", None)
        meta = {k: v for k, v in (resource.pop("meta", None) or {}).items() if k in KEPT_META}
        if meta:
            resource["meta"] = meta
        request = {"method": "POST", "url": resource["resourceType"]}
        return orjson.dumps({"resource": resource, "request": request})

    async def _transaction(self, batch: list[Outgoing]) -> Committed:
        """The `response` of each entry of the committed transaction, with its `Type/id`."""
        entries = b",".join(one.entry for one in batch)
        body = b'{"resourceType":"Bundle","type":"transaction","entry":[%s]}' % entries
        for attempt in range(RETRIES):
            async with self._slots:
                if self._stopping:
                    raise NotSent
                try:
                    async with self._session.post(
                        self._base, data=body, headers=self._headers
                    ) as reply:
                        answer = await reply.read()
                        status = reply.status
                except asyncio.CancelledError:  # stopped for good while in flight
                    self._unconfirmed(batch, str(_unknown_outcome("stopped while in flight")))
                    raise
                except aiohttp.ClientConnectorError as exc:  # not connected: nothing sent
                    if attempt == RETRIES - 1:
                        raise ImportAborted(f"cannot reach {self._base}: {exc}") from exc
                    answer, status = b"", 503
                except (TimeoutError, aiohttp.ClientError) as exc:
                    raise _unknown_outcome(f"no answer ({exc or type(exc).__name__})") from exc
            if status < 300:
                return _committed(batch, answer)
            if status == 401:
                raise ImportAborted(f"the server refused the token: {RequestFailed(401, answer)}")
            if status >= 500 and status not in NOTHING_WRITTEN:
                text = str(RequestFailed(status, answer)).removeprefix(f"HTTP {status}: ")
                raise _unknown_outcome(f"HTTP {status} ({text})")
            if status not in NOTHING_WRITTEN or attempt == RETRIES - 1:
                raise RequestFailed(status, answer)
            await asyncio.sleep(BACKOFF_SECONDS * 2**attempt)
        raise AssertionError("unreachable")
