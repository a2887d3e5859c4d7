"""A database failure is answered by what it means, never by what the database said.

PostgreSQL's messages name its processes, transactions and the address it listens on;
`shared.store.failures` logs them for the operator and answers the client in words of
its own.
"""

from __future__ import annotations

import logging

import asyncpg
import pytest

from shared.store.failures import contention, outcome_unknown, unavailable

SAID = "Process 6723 waits for ShareLock on transaction 41988; blocked by process 6724"
ADDRESS = "Connect call failed ('10.0.3.7', 5432)"


def test_a_deadlock_is_answered_without_the_databases_words(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="shared.store.failures"):
        answer = contention(asyncpg.DeadlockDetectedError(SAID))
    assert (answer.status, answer.headers["Retry-After"]) == (503, "1")
    assert "6723" not in str(answer) and "transaction" not in str(answer)
    assert SAID in caplog.text


@pytest.mark.parametrize("failure", [unavailable, outcome_unknown])
def test_an_outage_is_answered_without_the_databases_address(
    failure: object, caplog: pytest.LogCaptureFixture
) -> None:
    assert callable(failure)
    with caplog.at_level(logging.WARNING, logger="shared.store.failures"):
        answer = failure(OSError(111, ADDRESS))
    assert answer.status in (503, 504)
    assert "10.0.3.7" not in str(answer) and "5432" not in str(answer)
    assert "10.0.3.7" in caplog.text
