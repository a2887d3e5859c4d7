"""How a statement is sent: with `?` placeholders in either dialect, in a span of its own.

Services write SQL once with SQLite's `?` placeholders; `numbered` gives PostgreSQL's
`$1, $2, …` (and its spelling of `IN_TEXT_LIST`). `traced` puts a span around one
statement when the request is traced at all, named after the function a `SELECT f(…)`
calls.
"""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Literal

from opentelemetry import trace

tracer = trace.get_tracer("barnebro.store")

Dialect = Literal["postgresql", "sqlite"]
Row = Sequence[Any]


IN_TEXT_LIST = "IN (SELECT value FROM json_each(?))"
"""`column IN_TEXT_LIST`: the column is one of the strings of a `text_list` parameter (a
JSON array), in SQLite's spelling."""

_PG_IN_TEXT_LIST = "= ANY(ARRAY(SELECT json_array_elements_text(?)))"
"""PostgreSQL's spelling of `IN_TEXT_LIST`. The list becomes an array before the scan, so
the column's index is searched for its values (`Index Cond: col = ANY ($0)`). Written as
`IN (SELECT … json_array_elements_text(?))`, the planner guesses a hundred values and, on a
table of a few thousand rows, scans all of them for a read by id: the read's cost grew with
the table (37 µs at the start of a CRUD benchmark, 150 µs 17 s later)."""


@lru_cache(maxsize=1024)
def numbered(sql: str) -> str:
    counter = itertools.count(1)
    sql = sql.replace(IN_TEXT_LIST, _PG_IN_TEXT_LIST)
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


_CALL = re.compile(r"(\w+)\(")
"""`SELECT store_version(…)`: a statement that calls a function is named after it."""


def traced(dialect: Dialect, sql: str) -> contextlib.AbstractContextManager[Any]:
    """A span around one statement, when the request is being traced at all."""
    if not trace.get_current_span().is_recording():
        return contextlib.nullcontext()
    words = sql.split(None, 2)
    call = _CALL.match(words[1]) if len(words) > 1 and words[0].upper() == "SELECT" else None
    span = tracer.start_span(
        "db " + (call.group(1) if call else words[0].lower()),
        kind=trace.SpanKind.CLIENT,
        attributes={"db.system": dialect, "db.statement": sql[:300]},
    )
    return trace.use_span(span, end_on_exit=True)
