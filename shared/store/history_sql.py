"""Which versions a history asks for, as one SQL condition: the page of versions and its
total (`_summary=count`) select the same rows, so the total counts only what the page
would release."""

from __future__ import annotations

from typing import Any

from shared.store.access_sql import AccessFilter, access_clause


def history_where(
    access: AccessFilter | None,
    res_type: str | None,
    res_id: str | None,
    since: str | None,
    before_seq: int | None = None,
) -> tuple[str, list[Any]]:
    """The condition on `resource_history h` (with its arguments) for the versions of a
    type's or a resource's history that `access` allows."""
    allowed, args = access_clause(access, alias="h")
    where = [allowed]
    for condition, value in (
        ("h.res_type = ?", res_type),
        ("h.res_id = ?", res_id),
        ("h.last_updated >= ?", since),
        ("h.seq < ?", before_seq),
    ):
        if value is not None:
            where.append(condition)
            args.append(value)
    return " AND ".join(where), args
