"""The command line of the benchmarks:
``python -m bench crud|consent|referral|careplan|subscriptions|scale|all|table [options]``.

A thin layer over ``bench.crud.run``, ``bench.consent.run``, ``bench.referral.run``,
``bench.careplan.run``, ``bench.subscriptions.run`` and ``bench.scale.run``
(``bench.benchmarks``; the options
are parsed by ``bench.command_line``): it makes SIGTERM stop the run as cleanly as Ctrl-C
does (the stack's child processes, the database schemas and the NATS streams are removed
either way), prints the summary table and says where the JSON result was written.
``referral``, ``careplan``, ``subscriptions`` and ``scale`` exit with status 1 when requests
failed (or events were lost or late, or imported resources were refused) in their measured
windows, so a run with errors cannot pass for a clean one. ``all`` runs every benchmark the
README's performance summary needs (``bench.overall``) and exits with status 1 when any of
them failed or had errors in its windows; ``table`` prints that summary as markdown, and
rewrites it in the README.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from types import FrameType

from bench.benchmarks import BENCHMARKS, Benchmark
from bench.command_line import parser
from bench.overall import (
    MarkersMissing,
    markdown,
    new_summary,
    rewrite_readme,
    rewritten,
    run_all,
    selected,
)

__all__ = ["main", "parser"]

QUICK_REFUSED = (
    "a --quick run's figures are a smoke test, not a measurement: not written to a README"
)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _execute(command: str, benchmark: Benchmark, args: argparse.Namespace) -> int:
    """Build the options, run, print the report and where the result went."""
    try:
        chosen = benchmark.options(args)
    except ValueError as exc:
        print(f"python -m bench {command}: {exc}", file=sys.stderr)
        return 2
    try:
        result, path = benchmark.run(chosen)
    except KeyboardInterrupt:
        print(f"\ninterrupted; {benchmark.interrupted}", file=sys.stderr)
        return 130
    print()
    print(benchmark.report(result))
    if path is not None:
        print(f"\nresult written to {path}")
    errors = benchmark.window_errors(result)
    if benchmark.exits_on_errors is not None and errors:
        print(f"\n{errors} {benchmark.exits_on_errors}", file=sys.stderr)
        return 1
    return 0


def _all(args: argparse.Namespace) -> int:
    """Every benchmark of the performance summary in turn, one record, the table."""
    if args.readme is not None:
        if args.quick:
            print(f"python -m bench all: {QUICK_REFUSED}", file=sys.stderr)
            return 2
        try:  # before the run, not after ten minutes of it
            rewritten(args.readme.read_text(), "")
        except (OSError, MarkersMissing) as exc:
            print(f"python -m bench all: {args.readme}: {exc}", file=sys.stderr)
            return 2
    planned = selected(args.only)
    if args.list:
        print("\n".join(run.command(args.quick) for run in planned))
        return 0
    command = " ".join(
        ["python -m bench all"]
        + (["--quick"] if args.quick else [])
        + ([f"--only {','.join(args.only)}"] if args.only else [])
    )
    summary = new_summary(command, args.quick, planned, args.out)
    try:
        status = run_all(planned, BENCHMARKS, parser().parse_args, summary)
    except KeyboardInterrupt:
        print(f"\ninterrupted; what was measured so far is in {summary.path}", file=sys.stderr)
        return 130
    table = markdown(summary.document)
    print(f"\n{table}\n\nsummary written to {summary.path}")
    if args.readme is not None:
        rewrite_readme(args.readme, table)
        print(f"table rewritten in {args.readme}")
    document = summary.document
    if status:
        print(
            f"\nfailed: {', '.join(document['failed_runs']) or 'none'};"
            f" errors in the measured windows: {document['errors_total']}",
            file=sys.stderr,
        )
    return status


def _table(args: argparse.Namespace) -> int:
    document = json.loads(args.file.read_text())
    table = markdown(document)
    print(table)
    if args.readme is not None:
        if document.get("quick"):
            print(f"python -m bench table: {QUICK_REFUSED}", file=sys.stderr)
            return 2
        try:
            rewrite_readme(args.readme, table)
        except MarkersMissing as exc:
            print(f"python -m bench table: {exc}", file=sys.stderr)
            return 2
        print(f"\ntable rewritten in {args.readme}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    if args.command == "all":
        return _all(args)
    if args.command == "table":
        return _table(args)
    return _execute(args.command, BENCHMARKS[args.command], args)


if __name__ == "__main__":
    sys.exit(main())
