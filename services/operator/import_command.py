"""`barnebro import` as a command: files checked, the state file opened and locked, Ctrl-C
and SIGTERM turned into a stop, and the report printed with the exit status."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

import aiohttp

from services.operator.bulk_import import NdjsonImporter
from services.operator.import_state import ImportAborted, StateFile


async def import_files(
    url: str, token: str, files: list[Path], *, batch: int, parallel: int, state: Path | None
) -> int:
    """Import the files and print what failed and a summary: 0 when every resource is in,
    1 when some failed or were not sent, 2 when the import could not run or go on. The
    first Ctrl-C (or SIGTERM) stops sending and lets what is in flight finish; a second
    stops waiting for it."""
    for path in files:
        if not path.is_file():
            print(f"barnebro import: {path} is not a file", file=sys.stderr)
            return 2
    try:
        recorded = StateFile(state)
    except ImportAborted as exc:
        print(f"barnebro import: {exc}", file=sys.stderr)
        return 2
    loop, running = asyncio.get_running_loop(), asyncio.current_task()
    problem, status = "", 0
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        importer = NdjsonImporter(
            session, url, token, batch=batch, parallel=parallel, state=recorded
        )

        def stop() -> None:
            if not importer.stop() and running is not None:
                running.cancel()

        for signal_number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signal_number, stop)
        try:
            await importer.run(files)
        except ImportAborted as exc:
            problem, status = str(exc), 2
        except asyncio.CancelledError:
            problem, status = "stopped: the batches in flight may or may not be written", 1
        except aiohttp.ClientError as exc:
            problem, status = f"cannot reach {url}: {exc}", 2
        finally:
            for signal_number in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signal_number)
            recorded.close()
    report = importer.report
    for text in report.lines():
        print(text)
    print(report.summary())
    if problem:
        print(f"barnebro import: {problem}", file=sys.stderr)
    return status or (1 if report.failures or report.unsent else 0)
