"""Running every planned benchmark in turn and keeping one record of them all.

Each run is parsed from its command line by the benchmarks' own parser into its own
options and given to its own ``run``, exactly as the command alone would be (its result is
written and printed as usual). A run that fails, or has errors in its measured windows,
is recorded as such and the next one still runs; the record is written again after every
run, so a crash or Ctrl-C later on leaves what was measured so far.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.benchmarks import Benchmark, Result
from bench.overall.figures import extract
from bench.overall.plan import PlannedRun
from bench.report import machine_info, timestamp, write_json

Parse = Callable[[list[str]], argparse.Namespace]
FAILURE_CHARACTERS = 300
"""How much of a failed run's exception the record (and the table) keeps; the whole
traceback is printed."""


@dataclasses.dataclass
class Summary:
    """The record of ``python -m bench all`` while it runs."""

    document: dict[str, Any]
    out_dir: Path
    results: dict[str, Result] = dataclasses.field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.out_dir / str(self.document["file"])

    def add(self, run: dict[str, Any], result: Result | None) -> None:
        self.document["runs"].append(run)
        if result is not None:
            self.results[run["name"]] = result
        self.write()

    def write(self) -> None:
        runs = {run["name"]: run for run in self.document["runs"]}
        document = self.document
        document["rows"] = extract(self.results, runs)
        document["errors_total"] = sum(int(run["errors"] or 0) for run in runs.values())
        document["failed_runs"] = [run["name"] for run in runs.values() if run["failure"]]
        write_json(document, self.out_dir, str(document["file"]))


def new_summary(command: str, quick: bool, planned: Sequence[PlannedRun], out_dir: Path) -> Summary:
    started = timestamp()
    document: dict[str, Any] = {
        "benchmark": "all",
        "timestamp": started,
        "command": command,
        "quick": quick,
        "planned": [run.command(quick) for run in planned],
        "file": f"all-{started}.json",
        "machine": machine_info(),
        "runs": [],
        "rows": [],
    }
    return Summary(document, out_dir)


def run_all(
    planned: Sequence[PlannedRun],
    benchmarks: Mapping[str, Benchmark],
    parse: Parse,
    summary: Summary,
) -> int:
    """Run each planned benchmark; 0 when every one ran without errors in its windows,
    else 1. Ctrl-C (KeyboardInterrupt) is recorded and raised again."""
    quick = bool(summary.document["quick"])
    summary.write()
    for index, planned_run in enumerate(planned, 1):
        print(f"\n=== {index}/{len(planned)} {planned_run.command(quick)}\n", flush=True)
        began = time.perf_counter()
        run: dict[str, Any] = {
            "name": planned_run.name,
            "command": planned_run.command(quick),
            "options": None,
            "result_file": None,
            "errors": None,
            "failure": None,
        }
        benchmark = benchmarks[planned_run.benchmark]
        result = None
        try:
            options = dataclasses.replace(
                benchmark.options(parse(planned_run.arguments(quick))), out_dir=summary.out_dir
            )
            run["options"] = options.as_dict()
            result, path = benchmark.run(options)
        except KeyboardInterrupt:
            run.update(status="interrupted", failure="interrupted", seconds=_since(began))
            summary.add(run, None)
            raise
        except Exception as exc:
            traceback.print_exc()
            failure = f"{type(exc).__name__}: {exc}"[:FAILURE_CHARACTERS]
            run.update(status=f"failed ({failure})", failure=failure, seconds=_since(began))
            summary.add(run, None)
            continue
        print(benchmark.report(result))
        errors = benchmark.window_errors(result)
        run.update(
            result_file=path.name if path else None,
            errors=errors,
            status=f"{errors} errors in the measured windows" if errors else "ok",
            seconds=_since(began),
        )
        summary.add(run, result)
    return 1 if summary.document["errors_total"] or summary.document["failed_runs"] else 0


def _since(began: float) -> float:
    return round(time.perf_counter() - began, 1)
