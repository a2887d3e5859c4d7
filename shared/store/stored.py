"""A stored version of a resource as the store hands it out: the exact JSON bytes served
on reads, and the access columns the consent step decides on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from shared.rules import Problem
from shared.store.access_sql import NO_ACCESS_COLUMNS, ResourceAccess


@dataclass(frozen=True)
class StoredResource:
    res_type: str
    res_id: str
    version: int
    last_updated: str
    deleted: bool
    body: bytes | None
    access: ResourceAccess = NO_ACCESS_COLUMNS
    body_withheld: bool = False
    """The body was not read (it is large): it is read once the version is released, so
    that reading a withheld resource takes the time a missing one does
    (`shared.fhir.repository`)."""

    @property
    def reference(self) -> str:
        return f"{self.res_type}/{self.res_id}"

    @property
    def etag(self) -> str:
        return f'W/"{self.version}"'

    def json(self) -> dict[str, Any]:
        if self.body is None:
            raise ValueError("A deleted version has no body")
        data: dict[str, Any] = orjson.loads(self.body)
        return data


def too_large(stored: StoredResource, limit: int) -> list[Problem]:
    """A version larger as stored than `limit` could be stored but never answered (its
    reply would not fit in a message), so it is refused before anything is written."""
    size = len(stored.body or b"")
    if size <= limit:
        return []
    return [
        Problem(
            413,
            "too-costly",
            f"{stored.res_type}/{stored.res_id} would be {size} bytes as stored (with what"
            f" the server adds), more than the {limit} a resource may have"
            " (BARNEBRO_MAX_BODY_BYTES)",
        )
    ]
