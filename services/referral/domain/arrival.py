"""Where a referral's clock starts: its arrival at the receiver (pbrl §2-2).

The receiver assesses a referral within 10 working days of the day it arrived, the
ansiennitetsdato. A referral submitted here arrived when it was submitted, and the server
records that arrival with the referral. The receiver may instead record, once, an earlier
arrival it can document: the NHN message that brought the same referral first (by its
message id), or the paper stamped mottatt. An arrival is never later than the submission,
never in the future, and never more than `EARLIEST_BEFORE_SUBMISSION` before the
submission (a referral is registered here within days or weeks of arriving; a date months
earlier is a mistake that would jump the queue, and a recorded arrival cannot be
corrected); once the receiver has recorded it, it does not move (the same record sent
again is no change). Pure rules: the caller supplies both versions and the
day.
"""

from __future__ import annotations

from datetime import date, timedelta

from services.referral.domain.model import Problem, TaskState
from services.referral.domain.vocabulary import ARRIVAL_SOURCE_SYSTEM, ArrivalSource

RECORDED_BY_RECEIVER: dict[ArrivalSource, str | None] = {
    ArrivalSource.NHN_MELDING: "the message id of the NHN message that brought the referral",
    ArrivalSource.PAPIR: None,
}
"""The sources a receiver records an arrival from, each with the identifier it needs
(None: an identifier, such as a journal number, is optional)."""
WHERE = "Task.extension"
EARLIEST_BEFORE_SUBMISSION = timedelta(days=90)
"""How long before its submission here a referral may have arrived by NHN or on paper."""


def recorded_by_receiver(task: TaskState) -> bool:
    """Whether the receiver has recorded the referral's arrival (it then never moves)."""
    return task.arrival is not None and task.arrival.source != ArrivalSource.BARNEBRO


def arrival_problems(
    before: TaskState, after: TaskState, receiver: bool, day: date
) -> list[Problem]:
    """Problems with the arrival `after` records; [] when it is unchanged or may be
    recorded by this organisation (`receiver`: it is the Task's owner)."""
    old, new = before.arrival, after.arrival
    if new == old:
        return []
    if not receiver:
        return [
            Problem(
                403,
                "forbidden",
                "Only the receiving organisation records when the referral reached it",
                WHERE,
            )
        ]
    if recorded_by_receiver(before) and old is not None:
        return [
            Problem(
                409,
                "business-rule",
                f"The referral's arrival was recorded ({old.source}, {old.day}) and the"
                " ansiennitetsdato it starts does not move: send the recorded arrival"
                " unchanged",
                WHERE,
            )
        ]
    if new is None:
        return [
            Problem(
                409,
                "business-rule",
                "The referral's arrival is kept: it starts the ansiennitetsdato",
                WHERE,
            )
        ]
    return _content_problems(before, new.source, new.identifier) + _time_problems(
        before, after, day
    )


def _content_problems(before: TaskState, source: str, identifier: str | None) -> list[Problem]:
    if source == ArrivalSource.BARNEBRO:
        return [
            Problem(
                422,
                "business-rule",
                "An arrival with source barnebro is the submission, which the server records;"
                " an earlier arrival is recorded with the source that documents it"
                f" ({', '.join(RECORDED_BY_RECEIVER)})",
                WHERE,
            )
        ]
    if source not in set(RECORDED_BY_RECEIVER):
        return [
            Problem(
                422,
                "code-invalid",
                f"The arrival's source must be a code from {ARRIVAL_SOURCE_SYSTEM}"
                f" ({', '.join(RECORDED_BY_RECEIVER)}); it is {source!r}",
                WHERE,
            )
        ]
    needed = RECORDED_BY_RECEIVER[ArrivalSource(source)]
    if needed is not None and not identifier:
        return [
            Problem(
                422,
                "required",
                f"An arrival from {source} names {needed} (identifier)",
                WHERE,
            )
        ]
    return []


def _time_problems(before: TaskState, after: TaskState, day: date) -> list[Problem]:
    new = after.arrival
    assert new is not None
    problems = []
    if (
        before.submitted is not None
        and before.submitted_day is not None
        and (new.at > before.submitted if new.at is not None else new.day > before.submitted_day)
    ):
        problems.append(
            Problem(
                422,
                "business-rule",
                f"The referral reached its receiver at the latest when it was submitted here"
                f" ({before.submitted.isoformat()}): a recorded arrival is that or earlier (the"
                " NHN message or the paper that brought it first)",
                WHERE,
            )
        )
    elif new.day > day:
        problems.append(
            Problem(422, "business-rule", f"The arrival {new.day} is in the future", WHERE)
        )
    elif (
        before.submitted_day is not None
        and new.day < before.submitted_day - EARLIEST_BEFORE_SUBMISSION
    ):
        problems.append(
            Problem(
                422,
                "business-rule",
                f"The arrival {new.day} is more than {EARLIEST_BEFORE_SUBMISSION.days} days"
                f" before the referral was submitted here ({before.submitted_day}); a referral"
                " is registered within days or weeks of arriving",
                WHERE,
            )
        )
    return problems
