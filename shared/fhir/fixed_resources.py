"""Resources a service writes from its own code at start-up (the subscription topics, the
code systems): each is created when missing, updated when the code's version differs from
the stored one, and left alone otherwise, so a restart writes nothing. Instances that
start together take turns under one transaction lock, so each is written once."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from shared.fhir.service import FhirService
from shared.transport.wire import FhirRequest


async def publish_fixed(
    fhir: FhirService,
    request: FhirRequest,
    lock: str,
    resource_type: str,
    wanted: Iterable[dict[str, Any]],
    *,
    validated: bool = False,
) -> int:
    """Write the `resource_type` resources of `wanted` (each with its `id`) that differ
    from the stored ones, under the lock named `lock`; how many were written.
    `validated`: the tests validate every one of them (see `StoreUnitOfWork.save`)."""
    written = 0
    async with fhir.unit_of_work(request) as uow:
        await uow.lock_patient(lock)
        for resource in wanted:
            stored = await uow.read_for_update(resource_type, str(resource["id"]))
            if stored is not None and not stored.deleted:
                current = {k: v for k, v in stored.json().items() if k != "meta"}
                if current == resource:
                    continue
            await uow.save(resource, previous=stored, validated=validated)
            written += 1
    return written
