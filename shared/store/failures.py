"""What a database failure means for the request that met it: each mapped to one answer.

A write that lost a deadlock or a serialisation race stored nothing (503, retry); a
database that cannot be reached, or that dropped the connection before the commit, stored
nothing either (503, retry shortly); a connection lost during the commit leaves the
outcome unknown (504, read it back). What the database said (processes, transactions,
addresses) is logged for the operator, never put in an answer.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg

from shared.fhir.errors import FhirError, error

log = logging.getLogger(__name__)


def contention(exc: Exception) -> FhirError:
    """A write that lost to a concurrent one: nothing was stored, the client may retry."""
    log.warning("a write collided with a concurrent one: %s", exc)
    failure = error(503, "transient", "The write collided with a concurrent one; retry")
    failure.headers["Retry-After"] = "1"
    return failure


OUTAGE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)
"""What a database that cannot be reached, or that dropped the connection, raises."""
REFUSED: tuple[type[BaseException], ...] = (
    *OUTAGE,
    asyncpg.ObjectNotInPrerequisiteStateError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.InternalClientError,
)
"""What opening a connection (or beginning on a pooled one) raises besides: the database
does not take connections (`ALLOW_CONNECTIONS false`) or is not there, or a pooled
connection is still taking in the database's message that it was terminated."""


def unavailable(exc: BaseException) -> FhirError:
    """The database could not be reached or dropped the connection before anything was
    committed: nothing was written, so the client may simply retry."""
    log.warning("the database is unavailable: %r", exc)
    failure = error(503, "transient", "The database is unavailable; retry shortly")
    failure.headers["Retry-After"] = "2"
    return failure


def outcome_unknown(exc: BaseException) -> FhirError:
    """The connection was lost while committing: the write may or may not be stored."""
    log.warning("the database connection was lost while committing: %r", exc)
    return error(
        504,
        "timeout",
        "The database connection was lost while committing: the write may or may not have"
        " been stored; read it back, or retry a conditional create",
    )


VERSION_CONFLICT = "BB409"
"""The SQLSTATE with which `store_version_raising` refuses a version
(`shared.store.version_write`)."""


@dataclass(eq=False)
class VersionConflict(Exception):
    """Why a version of `res_type/res_id` was not stored: `changed` (another version came
    first) or `duplicate` (a unique key another resource holds, with the holder if
    known). `created`: it was to be the resource's first version. Raised by the statement
    that carried the call, which may be the transaction's commit; the transaction is then
    rolled back."""

    reason: str
    res_type: str
    res_id: str
    created: bool
    key: tuple[str, str] = ("", "")
    holder: tuple[str, str] = ("", "")


def version_conflict(exc: asyncpg.PostgresError) -> VersionConflict | None:
    """The conflict a refused `store_version_raising` call reports, None for any other
    failure."""
    if exc.sqlstate != VERSION_CONFLICT:
        return None
    res_type, res_id, previous, key_name, key_value, holder_type, holder_id = json.loads(
        str(exc.detail)
    )
    return VersionConflict(
        str(exc.message),
        res_type,
        res_id,
        previous == 0,
        (key_name or "", key_value or ""),
        (holder_type or "", holder_id or ""),
    )


@contextlib.contextmanager
def conflicts_raised() -> Iterator[None]:
    """A refused version raised as its `VersionConflict`; any other failure as it is."""
    try:
        yield
    except asyncpg.PostgresError as exc:
        conflict = version_conflict(exc)
        if conflict is None:
            raise
        raise conflict from exc
