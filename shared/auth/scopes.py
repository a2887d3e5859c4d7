"""SMART on FHIR system scopes and what each FHIR interaction needs.

SMART v2 scopes (`system/Patient.cruds`, `system/*.rs`) and the v1 forms
(`system/Patient.read`, `system/*.write`, `system/*.*`) are both understood.
"""

from __future__ import annotations

import re

from shared.access.permissions import scope_needed
from shared.fhir.errors import error
from shared.transport.wire import Caller, FhirRequest

INTERACTION_PERMISSION = {
    "read": "r",
    "vread": "r",
    "history-instance": "r",
    "history-type": "s",
    "search": "s",
    "create": "c",
    "update": "u",
    "patch": "u",
    "delete": "d",
    "validate": "c",
    "operation": "u",
    "read-operation": "r",
}
V1_PERMISSIONS = {"read": "rs", "write": "cud", "*": "cruds"}
ALL_SYSTEM_SCOPES = "system/*.cruds"

_SCOPE = re.compile(r"system/(\*|[A-Z][A-Za-z]+)\.(\*|read|write|c?r?u?d?s?)")
"""A SMART system scope. Scopes restricted by a query (`system/Patient.rs?category=x`)
grant nothing here: barnebro cannot enforce the restriction, so it must not widen access."""


EXPLICIT_SCOPE_TYPES = frozenset({"AuditEvent"})
"""Types a wildcard scope (`system/*.rs`) does not reach: the audit trail is for the roles
given its own scope (`system/AuditEvent.rs`), such as a privacy officer."""


def granted(scopes: list[str], resource_type: str, permission: str) -> bool:
    """Whether the scopes allow `permission` (one of c, r, u, d, s) on `resource_type`."""
    for scope in scopes:
        match = _SCOPE.fullmatch(scope)
        if match is None:
            continue
        scope_type, letters = match.groups()
        if scope_type != resource_type and (
            scope_type != "*" or resource_type in EXPLICIT_SCOPE_TYPES
        ):
            continue
        if permission in V1_PERMISSIONS.get(letters, letters):
            return True
    return False


def required_scope(resource_type: str, interaction: str) -> str:
    return f"system/{resource_type}.{INTERACTION_PERMISSION.get(interaction, 'r')}"


def authorize_request(request: FhirRequest) -> None:
    """Refuse (403) a request the caller's scopes do not cover: the one check of scopes
    for FHIR interactions, operations and the consent API alike."""
    authorize(request.caller, *scope_needed(request))


def authorize(caller: Caller, resource_type: str, interaction: str) -> None:
    """Refuse (403) an interaction the caller's scopes do not cover."""
    needed = required_scope(resource_type, interaction)
    if not granted(caller.scopes, resource_type, needed.rsplit(".", 1)[1]):
        raise error(
            403,
            "forbidden",
            f"The token's scopes do not allow this: {needed} (or a broader scope) is needed",
        )
