"""A fresh three-node NATS cluster and every barnebro process, started together ten times.

A real deployment (see `deploy/`) starts the NATS nodes and all of barnebro's processes at
the same moment. The processes then meet a JetStream cluster that has no meta leader yet,
and race each other to create the same streams and key-value buckets with three replicas.
`shared.patience` is meant to wait that out; a start that raises instead is a process that
exits (and, in production, a restart loop). One start proves little, since such races are
lost only sometimes; so this test starts a new cluster and every process at once ten times
in a row, each time on fresh store directories, and fails on the first round in which any
start raises, takes too long, or leaves the gateway's `/readyz` short of 200. It names the
process that failed and shows its traceback.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import traceback
from pathlib import Path

import aiohttp
import pytest

from services.cli import SERVICES, Runnable, build_process
from services.stack import free_port, nats_server_binary, wait_for_port
from tests.support import test_settings as make_settings

pytestmark = pytest.mark.services

ROUNDS = 10
START_LIMIT = 60.0
"""Seconds every process of a round has to finish starting (a round takes 5-12 s on two
cores; ten rounds and one that hangs stay within three minutes)."""
STOP_LIMIT = 15.0
"""Seconds one process has to stop."""


def distinct_free_ports(count: int) -> list[int]:
    """`count` different free ports on 127.0.0.1 (one `free_port` may repeat another)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


class NatsCluster:
    """Three nats-server nodes of the test's own with JetStream, routed to one another
    on loopback, each with its own store directory under `directory`."""

    def __init__(self, directory: Path, nodes: int = 3, name: str = "barnebro-test") -> None:
        self.directory = directory
        self.name = name
        ports = distinct_free_ports(2 * nodes)
        self.client_ports = ports[:nodes]
        self.cluster_ports = ports[nodes:]
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        """`NATS_URL` naming every node."""
        return ",".join(f"nats://127.0.0.1:{port}" for port in self.client_ports)

    def log_of(self, index: int) -> Path:
        return self.directory / f"n{index}.log"

    def start(self) -> None:
        """Start every node at once, then wait until each accepts clients."""
        routes = ",".join(f"nats://127.0.0.1:{port}" for port in self.cluster_ports)
        for index, (port, cluster_port) in enumerate(
            zip(self.client_ports, self.cluster_ports, strict=True)
        ):
            store = self.directory / f"n{index}"
            store.mkdir(parents=True)
            command = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port), "-js",
                       "-sd", str(store), "--server_name", f"{self.name}-n{index}",
                       "--cluster_name", self.name, "--routes", routes,
                       "--cluster", f"nats://127.0.0.1:{cluster_port}"]  # fmt: skip
            with self.log_of(index).open("wb") as log:
                process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
            self.processes.append(process)
        for index, port in enumerate(self.client_ports):
            if not wait_for_port(port, 15):
                raise RuntimeError(f"nats-server n{index} did not start; see {self.log_of(index)}")

    def exited(self) -> dict[str, int]:
        """Nodes that are no longer running, with their exit codes."""
        return {
            f"n{index}": code
            for index, process in enumerate(self.processes)
            if (code := process.poll()) is not None
        }

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        self.processes = []


def described(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)).rstrip()


async def started(process: Runnable) -> BaseException | None:
    """Start one process; what it raised, or None."""
    limit = asyncio.timeout(START_LIMIT)
    try:
        async with limit:
            await process.start()
    except Exception as exc:
        if limit.expired():  # the traceback shows where the start was waiting
            exc.add_note(f"the start did not finish within {START_LIMIT:.0f} s")
        return exc
    return None


async def stopped(process: Runnable) -> BaseException | None:
    try:
        async with asyncio.timeout(STOP_LIMIT):
            await process.stop()
    except Exception as exc:
        return exc
    return None


async def readiness(port: int) -> tuple[int, str]:
    """The gateway's answer to `/readyz`: status and body."""
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"http://127.0.0.1:{port}/readyz") as resp,
    ):
        return resp.status, await resp.text()


async def one_round(round_dir: Path) -> list[str]:
    """Start a fresh cluster and every process together, ask `/readyz`, stop everything;
    what went wrong (nothing, if the round passed)."""
    problems: list[str] = []
    cluster = NatsCluster(round_dir / "nats")
    processes: dict[str, Runnable] = {}
    began = time.monotonic()
    try:
        await asyncio.to_thread(cluster.start)
        cluster_up = time.monotonic() - began
        settings = make_settings(round_dir, "sqlite", cluster.url, event_replicas=3)
        processes = {name: build_process(name, settings) for name in SERVICES}
        starting = time.monotonic()
        outcomes = await asyncio.gather(*(started(p) for p in processes.values()))
        start_time = time.monotonic() - starting
        for name, outcome in zip(processes, outcomes, strict=True):
            if outcome is not None:
                problems.append(f"{name} failed to start:\n{described(outcome)}")
        if not problems:
            status, body = await readiness(settings.http_port)
            if status != 200:
                problems.append(f"/readyz answered {status}: {body}")
        for node, code in cluster.exited().items():
            problems.append(f"nats-server {node} exited with {code}; see {cluster.directory}")
        print(
            f"{round_dir.name}: cluster accepting clients after {cluster_up:.1f} s, "
            f"every start ended {start_time:.1f} s later"
        )
    finally:
        stopping = time.monotonic()
        for name, process in reversed(processes.items()):
            if (exc := await stopped(process)) is not None:
                problems.append(f"{name} failed to stop:\n{described(exc)}")
        await asyncio.to_thread(cluster.stop)
        print(f"{round_dir.name}: stopped in {time.monotonic() - stopping:.1f} s")
    return problems


async def test_a_fresh_cluster_and_every_process_start_together_ten_times(
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    for number in range(1, ROUNDS + 1):
        round_dir = tmp_path / f"round{number:02d}"
        problems = await one_round(round_dir)
        if problems:
            logs = f"(the NATS nodes' logs: {round_dir / 'nats'}/n*.log)"
            report = "\n\n".join([*problems, logs])
            print(f"round {number} of {ROUNDS} failed:\n{report}")
            pytest.fail(f"round {number} of {ROUNDS} failed:\n{report}", pytrace=False)
    print(f"{ROUNDS} rounds in {time.monotonic() - began:.1f} s")
