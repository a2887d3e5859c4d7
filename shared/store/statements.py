"""How a statement is sent: with `?` placeholders in either dialect, in a span of its own.

Services write SQL once with SQLite's `?` placeholders; `numbered` gives PostgreSQL's
`$1, $2, …` (and its spelling of a JSON array's elements). `traced` puts a span around one
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


@lru_cache(maxsize=1024)
def numbered(sql: str) -> str:
    counter = itertools.count(1)
    sql = sql.replace("json_each(?)", "json_array_elements_text(?)")
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
