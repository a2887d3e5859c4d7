"""What a database failure means for the request that met it: each mapped to one answer.

A write that lost a deadlock or a serialisation race stored nothing (503, retry); a
database that cannot be reached, or that dropped the connection before the commit, stored
nothing either (503, retry shortly); a connection lost during the commit leaves the
outcome unknown (504, read it back). What the database said (processes, transactions,
addresses) is logged for the operator, never put in an answer.
"""

from __future__ import annotations

import logging

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
