"""The command line of the benchmarks:
``python -m bench crud|consent|referral|careplan|subscriptions [options]``.

A thin layer over ``bench.crud.run``, ``bench.consent.run``, ``bench.referral.run``,
``bench.careplan.run`` and ``bench.subscriptions.run`` (``bench.benchmarks``; the options
are parsed by ``bench.command_line``): it makes SIGTERM stop the run as cleanly as Ctrl-C
does (the stack's child processes, the database schemas and the NATS streams are removed
either way), prints the summary table and says where the JSON result was written.
``referral``, ``careplan`` and ``subscriptions`` exit with status 1 when requests failed (or
events were lost or late) in their measured windows, so a run with errors cannot pass for a
clean one.
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

from bench.benchmarks import BENCHMARKS, Benchmark
from bench.command_line import parser

__all__ = ["main", "parser"]


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


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    return _execute(args.command, BENCHMARKS[args.command], args)


if __name__ == "__main__":
    sys.exit(main())
