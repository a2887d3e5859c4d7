"""The command line of the benchmarks: ``python -m bench crud [options]``.

A thin layer over ``bench.crud.run``: it parses the options, makes SIGTERM stop the run as
cleanly as Ctrl-C does (the stack's child processes and the database schemas are removed
either way), prints the summary table and says where the JSON result was written.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType

from bench.crud import DEFAULT_DATABASE_URL, RESULTS_DIR, CrudOptions, run
from bench.report import format_report


def _positive(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return number


def _clients(value: str) -> int:
    number = int(value)
    if not 1 <= number <= 1024:
        raise argparse.ArgumentTypeError("the number of clients must be between 1 and 1024")
    return number


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    commands = main.add_subparsers(dest="command", required=True)
    crud = commands.add_parser(
        "crud",
        help="create/read/update/delete linked directory resources against a local stack",
        description="Create, read, update and delete chains of linked directory resources"
        " against a local stack, then measure the HTTP and storage limits in the same run.",
    )
    crud.add_argument("--clients", type=_clients, default=32, help="concurrent clients (32)")
    crud.add_argument("--seconds", type=_positive, default=20.0, help="measured seconds (20)")
    crud.add_argument("--warmup", type=float, default=3.0, help="unmeasured warm-up seconds (3)")
    crud.add_argument(
        "--limit-seconds",
        type=_positive,
        default=5.0,
        help="measured seconds of the read-only phase and of each limit (5)",
    )
    crud.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    crud.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help=f"PostgreSQL to use with --database postgresql ({DEFAULT_DATABASE_URL})",
    )
    crud.add_argument("--no-limits", action="store_true", help="skip the HTTP and storage limits")
    crud.add_argument(
        "--out", type=Path, default=RESULTS_DIR, help="directory of the JSON result (bench/results)"
    )
    crud.add_argument("--seed", type=int, help="seed of the identifier generator")
    return main


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    options = CrudOptions(
        clients=args.clients,
        seconds=args.seconds,
        warmup=max(0.0, args.warmup),
        limit_seconds=args.limit_seconds,
        database=args.database,
        database_url=args.database_url,
        limits=not args.no_limits,
        out_dir=args.out,
        seed=args.seed,
    )
    try:
        result, path = run(options)
    except KeyboardInterrupt:
        print("\ninterrupted; the stack was stopped and its data removed", file=sys.stderr)
        return 130
    print()
    print(format_report(result))
    if path is not None:
        print(f"\nresult written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
