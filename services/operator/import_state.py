"""The state file of `barnebro import`: which source resource became which barnebro one.

One JSON line per resource, `["Type/source-id", "Type/barnebro-id"]`, appended and written
through to disk after each committed batch, so that a later run skips what was imported
and resolves references to it. `["Type/source-id", null]` records a resource whose batch
got no certain answer (it may have been written): a later run does not send it again
until someone has looked and removed that line. The file is locked for the whole run: two
imports sharing it would each write every resource. It is checked line by line when
opened, since it decides what the import's references are rewritten to.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import orjson

from services.operator.ndjson import RESOURCE_KEY


class ImportAborted(Exception):
    """The import cannot go on at all (the token is refused, the state file unusable)."""


def _pair(text: bytes) -> tuple[str, str | None] | None:
    try:
        source, target = orjson.loads(text)
    except (orjson.JSONDecodeError, ValueError, TypeError):
        return None
    if not (isinstance(source, str) and isinstance(target, str | None)):
        return None
    found = RESOURCE_KEY.fullmatch(source)
    if found is None:
        return None
    if target is None:
        return source, None
    given = RESOURCE_KEY.fullmatch(target)
    return (source, target) if given is not None and found[1] == given[1] else None


class StateFile:
    """Source `Type/id` → the `Type/id` barnebro gave it."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.ids: dict[str, str] = {}
        self.unknown: set[str] = set()
        """Source `Type/id`s an earlier run may or may not have written."""
        self._file: BinaryIO | None = None
        if path is None:
            return
        try:
            self._file = path.open("a+b")
        except OSError as exc:
            raise ImportAborted(f"cannot use {path} as the state file: {exc}") from exc
        try:
            fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            self.close()
            raise ImportAborted(
                f"another import is using the state file {path}: wait for it to end"
            ) from exc
        self._file.seek(0)
        content = self._file.read()
        for number, text in enumerate(content.splitlines(), start=1):
            pair = _pair(text)
            if pair is None or (number == content.count(b"\n") + 1 and content.strip()):
                self.close()
                raise ImportAborted(
                    f"{path}:{number} is not a line this command wrote (a pair of"
                    ' "Type/id" strings of one type); a crash while recording leaves the'
                    " last line incomplete: look up what that batch wrote before going on"
                )
            if pair[0] in self.ids or pair[0] in self.unknown:
                self.close()
                raise ImportAborted(f"{path}:{number} names {pair[0]} a second time")
            if pair[1] is None:
                self.unknown.add(pair[0])
            else:
                self.ids[pair[0]] = pair[1]

    def record(self, pairs: list[tuple[str, str]]) -> None:
        self.ids.update(pairs)
        self._write(pairs)

    def record_unknown(self, sources: list[str]) -> None:
        """Resources whose batch may or may not have been written."""
        self.unknown.update(sources)
        self._write([(source, None) for source in sources])

    def _write(self, pairs: Sequence[tuple[str, str | None]]) -> None:
        if self._file is None or not pairs:
            return
        self._file.write(b"".join(orjson.dumps(pair) + b"\n" for pair in pairs))
        self._file.flush()
        os.fsync(self._file.fileno())

    def __enter__(self) -> StateFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()  # the lock goes with it
            self._file = None
