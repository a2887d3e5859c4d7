"""CPU accounting from ``/proc``, so that benchmark results are per CPU-second.

Why: on a small shared machine the wall-clock rate of a server depends on what else is
running; the CPU time the server's processes spent on the work does much less. This module
reads that time from the kernel, without extra dependencies:

* ``/proc/<pid>/stat`` fields 14-17 are utime, stime, cutime and cstime in clock ticks
  (``os.sysconf("SC_CLK_TCK")``); utime/stime cover every thread of the process, cutime and
  cstime the children it has already waited for;
* a *program* (PostgreSQL) is the sum over every process whose ``/proc/<pid>/comm`` is its
  name, children included: the postmaster's cutime holds the CPU of backends that exited,
  so the sum does not lose a backend that ends inside the measured window;
* ``/proc/stat`` gives the machine's busy and idle time, to show how much CPU went to
  processes the benchmark does not know (noise from other users).

Everything is sampled twice, at the start and at the end of a measured window; the
difference is what the window cost.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS: int = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def process_ticks(pid: int, *, include_children: bool = True) -> int | None:
    """utime + stime (+ cutime + cstime) of one process in clock ticks; None if it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state), so field n is fields[n - 3].
    utime, stime, cutime, cstime = (int(fields[n - 3]) for n in (14, 15, 16, 17))
    return utime + stime + (cutime + cstime if include_children else 0)


def process_seconds(pid: int, *, include_children: bool = True) -> float | None:
    """CPU seconds one process has used so far; None if it is gone."""
    ticks = process_ticks(pid, include_children=include_children)
    return None if ticks is None else ticks / CLOCK_TICKS


def pids_named(comm: str) -> list[int]:
    """Every process whose ``/proc/<pid>/comm`` is exactly ``comm``."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() == comm:
                found.append(int(entry.name))
        except OSError:
            continue
    return sorted(found)


def pid_listening(comm: str, port: int) -> int | None:
    """The process named ``comm`` that listens on TCP ``port``: the one server a run talks
    to, when others of the same name come and go beside it (tests running in parallel).
    None when none is found or its sockets cannot be read."""
    sockets = set()
    for table in ("tcp", "tcp6"):
        try:
            rows = (PROC / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            listening = fields[3] == "0A"
            if listening and int(fields[1].rsplit(":", 1)[1], 16) == port:
                sockets.add(f"socket:[{fields[9]}]")
    for pid in pids_named(comm):
        try:
            links = {os.readlink(fd) for fd in (PROC / str(pid) / "fd").iterdir()}
        except OSError:
            continue
        if links & sockets:
            return pid
    return None


def program_ticks(comm: str) -> tuple[int, int]:
    """(ticks, process count) summed over every process named ``comm``, children included."""
    total, count = 0, 0
    for pid in pids_named(comm):
        ticks = process_ticks(pid, include_children=True)
        if ticks is not None:
            total += ticks
            count += 1
    return total, count


def own_ticks() -> int:
    """This process's own CPU (every thread), without the children it has waited for."""
    ticks = process_ticks(os.getpid(), include_children=False)
    assert ticks is not None
    return ticks


@dataclass(frozen=True)
class MachineTicks:
    """Machine-wide CPU time from the first line of ``/proc/stat``."""

    busy: int
    idle: int
    steal: int

    @classmethod
    def read(cls) -> MachineTicks:
        for line in (PROC / "stat").read_text().splitlines():
            if line.startswith("cpu "):
                values = [int(v) for v in line.split()[1:]]
                values += [0] * (10 - len(values))
                user, nice, system, idle, iowait, irq, softirq, steal = values[:8]
                # guest and guest_nice are already included in user and nice.
                busy = user + nice + system + irq + softirq
                return cls(busy=busy, idle=idle + iowait, steal=steal)
        raise RuntimeError("/proc/stat has no cpu line")


@dataclass(frozen=True)
class Snapshot:
    """CPU ticks of every tracked process and program at one instant."""

    processes: dict[str, int]
    programs: dict[str, int]
    program_counts: dict[str, int]
    extra: dict[str, int]
    own: int
    machine: MachineTicks


@dataclass
class CpuUsage:
    """CPU seconds spent during a window, per tracked name, plus machine-wide figures."""

    seconds: dict[str, float]
    """Server-side CPU seconds per process or program (these are summed into ``server``)."""
    extra: dict[str, float]
    """Informational CPU seconds, not summed (e.g. PostgreSQL backends of this run only)."""
    load_generator: float
    machine_busy: float
    machine_steal: float
    program_counts: dict[str, int] = field(default_factory=dict)

    @property
    def server(self) -> float:
        return sum(self.seconds.values())

    @property
    def unattributed(self) -> float:
        """Busy CPU of the machine that neither the server nor the load generator spent."""
        return self.machine_busy - self.server - self.load_generator

    def as_dict(self) -> dict[str, object]:
        return {
            "server_total_s": round(self.server, 3),
            "per_process_s": {k: round(v, 3) for k, v in self.seconds.items()},
            "informational_s": {k: round(v, 3) for k, v in self.extra.items()},
            "load_generator_s": round(self.load_generator, 3),
            "machine_busy_s": round(self.machine_busy, 3),
            "machine_steal_s": round(self.machine_steal, 3),
            "unattributed_s": round(self.unattributed, 3),
            "program_process_counts": dict(self.program_counts),
        }


class CpuMeter:
    """Samples named processes (by pid) and programs (by comm) at the edges of a window.

    ``extra`` are pid groups looked up at each sample (e.g. the PostgreSQL backends serving
    this benchmark); a pid seen only at the end counts from zero.
    """

    def __init__(
        self,
        processes: Mapping[str, int],
        programs: Iterable[str] = (),
    ) -> None:
        self.processes = dict(processes)
        self.programs = list(programs)

    def snapshot(self, extra: Mapping[str, Iterable[int]] | None = None) -> Snapshot:
        processes = {}
        for name, pid in self.processes.items():
            ticks = process_ticks(pid, include_children=True)
            processes[name] = ticks if ticks is not None else -1
        programs, counts = {}, {}
        for comm in self.programs:
            programs[comm], counts[comm] = program_ticks(comm)
        extra_ticks: dict[str, int] = {}
        for name, pids in (extra or {}).items():
            for pid in pids:
                ticks = process_ticks(pid, include_children=False)
                if ticks is not None:
                    extra_ticks[f"{name}:{pid}"] = ticks
        return Snapshot(processes, programs, counts, extra_ticks, own_ticks(), MachineTicks.read())

    @staticmethod
    def usage(start: Snapshot, end: Snapshot) -> CpuUsage:
        def seconds(ticks: int) -> float:
            return ticks / CLOCK_TICKS

        per_name: dict[str, float] = {}
        for name, before in start.processes.items():
            after = end.processes.get(name, -1)
            if before < 0 or after < 0:
                raise RuntimeError(f"process {name!r} was not running for the whole window")
            per_name[name] = seconds(after - before)
        for comm, before in start.programs.items():
            per_name[comm] = seconds(end.programs.get(comm, before) - before)
        extra: dict[str, float] = {}
        for key, after in end.extra.items():
            group = key.split(":", 1)[0]
            extra[group] = extra.get(group, 0.0) + seconds(after - start.extra.get(key, 0))
        return CpuUsage(
            seconds=per_name,
            extra=extra,
            load_generator=seconds(end.own - start.own),
            machine_busy=seconds(end.machine.busy - start.machine.busy),
            machine_steal=seconds(end.machine.steal - start.machine.steal),
            program_counts=dict(end.program_counts),
        )
