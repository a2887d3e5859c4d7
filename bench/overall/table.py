"""The performance summary as a markdown table, and the README rewritten with it.

The README holds the table between two marker comments; everything between them is
replaced and everything else is left as it was. A README without the markers (or with
them twice, or out of order) is refused rather than guessed at.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

BEGIN = "<!-- performance-summary: begin (written by python -m bench all/table; do not edit) -->"
END = "<!-- performance-summary: end -->"


class MarkersMissing(ValueError):
    """The README has no well-formed pair of performance summary markers."""


def markdown(document: Mapping[str, Any]) -> str:
    """The summary table of a ``python -m bench all`` result, and a line saying where and
    when it was measured."""
    lines = ["| what | measured | target | met |", "| --- | --- | --- | --- |"]
    for row in document["rows"]:
        cells = [row["what"], row["measured"] or "—", row["target"]["text"], _verdict(row)]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join([*lines, "", _provenance(document)])


def _verdict(row: Mapping[str, Any]) -> str:
    if row["met"] is True:
        return "yes"
    if row["met"] is False:
        return "**no**"
    if row["errors"]:
        return f"not judged: {row['errors']} errors in the window"
    missing: Sequence[Mapping[str, Any]] = row["not_measured"]
    if missing:
        return "not measured: " + ", ".join(f"{m['run']} {m['why']}" for m in missing)
    return "not measured"


def _provenance(document: Mapping[str, Any]) -> str:
    machine = document["machine"]
    when = datetime.strptime(document["timestamp"], "%Y%m%dT%H%M%SZ").strftime("%Y-%m-%d %H:%M UTC")
    revision = machine.get("git_revision") or "unknown"
    dirty = " (with uncommitted changes)" if machine.get("git_dirty") else ""
    quick = " **--quick: short windows, not a measurement.**" if document.get("quick") else ""
    return (
        f"`{document['command']}` on {when}, git `{revision[:12]}`{dirty},"
        f" {machine['nproc']} CPUs ({machine.get('cpu_model') or 'unknown model'});"
        f" the record is `{document['file']}`.{quick}"
    )


def rewritten(text: str, table: str) -> str:
    """`text` with everything between the markers replaced by `table`."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise MarkersMissing(
            f"no performance summary markers: put the line {BEGIN} and, below it, the line"
            f" {END} where the table goes (once each)"
        )
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    return f"{head}{BEGIN}\n{table}\n{END}{tail}"


def rewrite_readme(path: Path, table: str) -> None:
    """Rewrite the table in the README at `path`; MarkersMissing names the file."""
    try:
        path.write_text(rewritten(path.read_text(), table))
    except MarkersMissing as exc:
        raise MarkersMissing(f"{path}: {exc}") from None
