"""Writing the registers through the gateway, idempotently, one row at a time.

Every row is looked up by its register key first (an organisation by its
organisasjonsnummer; a parental responsibility by the child and the holder); what is
already as the file says is left alone, what differs is updated with `If-Match` (so a
concurrent change is not overwritten unseen), what is missing is created. A row that
fails is reported with the server's reason and the import goes on: running the same file
again finishes what failed and changes nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson

from services.operator.organisations import OrganisationRow, RowError, organisation_row
from services.operator.parents import person_system, responsibility_row
from shared.identifiers import ORGNR_SYSTEM

FHIR_JSON = "application/fhir+json"
SERVER_KEPT = frozenset({"id", "meta", "text"})


class RequestFailed(Exception):
    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        try:
            issues = orjson.loads(body).get("issue", [])
            text = "; ".join(str(i.get("diagnostics", "")) for i in issues)
        except (orjson.JSONDecodeError, AttributeError):
            text = body[:300].decode(errors="replace")
        super().__init__(f"HTTP {status}: {text}")


@dataclass
class Report:
    """What an import did with each row: created, updated, unchanged, skipped or failed."""

    rows: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, key: str, outcome: str, detail: str = "") -> None:
        self.rows.append((key, outcome, detail))

    def count(self, outcome: str) -> int:
        return sum(1 for _, found, _ in self.rows if found == outcome)

    @property
    def failed(self) -> int:
        return self.count("failed")

    def summary(self) -> str:
        outcomes = ("created", "updated", "unchanged", "skipped", "failed")
        return ", ".join(f"{self.count(o)} {o}" for o in outcomes)


class RegisterClient:
    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str) -> None:
        self._session = session
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}", "Accept": FHIR_JSON}

    async def _call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[dict[str, str], Any]:
        sent = {**self._headers, **(headers or {})}
        data = None
        if body is not None:
            data = orjson.dumps(body)
            sent["Content-Type"] = FHIR_JSON
        async with self._session.request(
            method, f"{self._base}/{path}", data=data, headers=sent
        ) as response:
            payload = await response.read()
            if response.status >= 300:
                raise RequestFailed(response.status, payload)
            return dict(response.headers), orjson.loads(payload) if payload else None

    async def search(self, resource_type: str, params: list[tuple[str, str]]) -> list[Any]:
        query = urlencode(params, safe="|/:")
        _, bundle = await self._call("GET", f"{resource_type}?{query}")
        return [e["resource"] for e in bundle.get("entry", []) if e["search"]["mode"] == "match"]

    async def upsert(self, desired: dict[str, Any], existing: dict[str, Any] | None) -> str:
        """Create `desired`, or bring `existing` to it; which of the two, or `unchanged`."""
        resource_type = desired["resourceType"]
        if existing is None:
            await self._call("POST", resource_type, desired)
            return "created"
        merged = {**{k: v for k, v in existing.items() if k not in SERVER_KEPT}, **desired}
        current = {k: v for k, v in existing.items() if k not in SERVER_KEPT}
        if merged == current:
            return "unchanged"
        version = (existing.get("meta") or {}).get("versionId")
        await self._call(
            "PUT",
            f"{resource_type}/{existing['id']}",
            {**merged, "id": existing["id"]},
            {"If-Match": f'W/"{version}"'} if version else None,
        )
        return "updated"

    async def organisation(self, orgnr: str) -> dict[str, Any] | None:
        found = await self.search("Organization", [("identifier", f"{ORGNR_SYSTEM}|{orgnr}")])
        return found[0] if found else None

    async def import_organisations(
        self, rows: list[dict[str, Any]], *, check_digit: bool = True
    ) -> Report:
        report = Report()
        parsed: list[OrganisationRow] = []
        for index, raw in enumerate(rows):
            try:
                parsed.append(organisation_row(raw, check_digit=check_digit))
            except RowError as exc:
                report.add(f"row {index + 1}", "failed", str(exc))
        # parents before the units under them, so `partOf` can name them
        numbers = {row.orgnr for row in parsed}
        parsed.sort(key=lambda row: row.parent in numbers)
        for row in parsed:
            try:
                parent_id = None
                if row.parent:
                    parent = await self.organisation(row.parent)
                    if parent is None:
                        raise RowError(f"the parent unit {row.parent} is not registered")
                    parent_id = str(parent["id"])
                existing = await self.organisation(row.orgnr)
                desired = row.resource(parent_id, existing)
                report.add(row.orgnr, await self.upsert(desired, existing))
            except (RowError, RequestFailed) as exc:
                report.add(row.orgnr, "failed", str(exc))
        return report

    async def import_responsibilities(self, rows: list[dict[str, Any]], day: date) -> Report:
        report = Report()
        for index, raw in enumerate(rows):
            key = f"row {index + 1}"
            try:
                row = responsibility_row(raw)
                key = f"row {index + 1} (child …{row.child[-5:]})"
                children = await self.search(
                    "Patient", [("identifier", f"{person_system(row.child)}|{row.child}")]
                )
                if not children:
                    report.add(key, "skipped", "the child is not registered in barnebro")
                    continue
                patient_id = str(children[0]["id"])
                existing = await self.search(
                    "RelatedPerson",
                    [
                        ("patient", f"Patient/{patient_id}"),
                        ("identifier", f"{row.holder_system}|{row.holder}"),
                    ],
                )
                desired = row.resource(patient_id, day)
                report.add(key, await self.upsert(desired, existing[0] if existing else None))
            except (RowError, RequestFailed) as exc:
                report.add(key, "failed", str(exc))
        return report
