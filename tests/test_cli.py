"""`barnebro up`, `barnebro token` and `barnebro serve` as a user runs them: real child
processes, the embedded NATS server and SQLite files in the data directory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest
import urllib3

from services.stack import free_port
from shared.codes import ORGANISATION_KINDS
from shared.identifiers import HERID_SYSTEM, ORGNR_SYSTEM

BARNEBRO = [sys.executable, "-m", "services.cli"]


def embedded_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "DATABASE_URL")}
    env["BARNEBRO_LOG_FORMAT"] = "text"
    return env


def start_up(data_dir: Path, port: int, *options: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [*BARNEBRO, "up", "--port", str(port), "--data-dir", str(data_dir), *options],
        env=embedded_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Press Ctrl-C to stop" in line:
            return process
    process.kill()
    pytest.fail("barnebro up did not start:\n" + "".join(lines))


def stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(30)


def token(data_dir: Path, *options: str) -> str:
    """`barnebro token` with `options` (default: the demonstration fastlege, scoped to
    Practitioner)."""
    chosen = options or ("--kind", "fastlege", "--scope", "system/Practitioner.cruds")
    result = subprocess.run(
        [*BARNEBRO, "token", *chosen, "--data-dir", str(data_dir), "--ttl", "600"],
        capture_output=True, text=True, check=True, env=embedded_env(),
    )  # fmt: skip
    return result.stdout.strip().splitlines()[-1]


def request(method: str, url: str, bearer: str, body: object = None) -> tuple[int, object]:
    response = urllib3.request(
        method,
        url,
        body=orjson.dumps(body) if body is not None else None,
        headers={"Authorization": f"Bearer {bearer}", "Content-Type": "application/fhir+json"},
        timeout=10,
    )
    return response.status, orjson.loads(response.data) if response.data else None


def descendants(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.services
def test_up_token_restart_and_port_conflict(tmp_path: Path) -> None:
    data_dir, port = tmp_path / "data", free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    process = start_up(data_dir, port)
    try:
        children = descendants(process.pid)
        assert len(children) == 7, (
            "nats-server, directory, consent, referral, careplan, subscriptions, gateway"
        )
        bearer = token(data_dir)
        status, created = request(
            "POST", f"{base}/Practitioner", bearer, {"resourceType": "Practitioner"}
        )
        assert status == 201
        assert isinstance(created, dict)
        status, _ = request("GET", f"{base}/Patient", bearer)
        assert status == 403, "the token's scope covers Practitioner only"
        # The data (records, keys, the NATS password) is its owner's alone.
        assert data_dir.stat().st_mode & 0o077 == 0
        written = [p for p in data_dir.rglob("*") if p.is_file()]
        assert written and all(p.stat().st_mode & 0o077 == 0 for p in written), [
            (p.name, oct(p.stat().st_mode)) for p in written if p.stat().st_mode & 0o077
        ]

        # Every kind has a demonstration organisation in the register; an organisation
        # that is not registered may do nothing until the operator admits it.
        operator = token(data_dir, "--credential", "operator")
        status, registered = request("GET", f"{base}/Organization?_count=100", operator)
        assert status == 200 and isinstance(registered, dict)
        kinds = {
            coding["code"]
            for entry in registered["entry"]
            for concept in entry["resource"]["type"]
            for coding in concept["coding"]
        }
        assert kinds == set(ORGANISATION_KINDS)
        stranger = token(data_dir, "--org", "910000152")
        status, _ = request("GET", f"{base}/Organization", stranger)
        assert status == 403
        added = subprocess.run(
            [*BARNEBRO, "org", "add", "--orgnr", "910000152", "--name", "Ny BUP", "--kind",
             "bup", "--url", base, "--data-dir", str(data_dir)],
            capture_output=True, text=True, env=embedded_env(),
        )  # fmt: skip
        assert added.returncode == 0, added.stdout + added.stderr
        assert "910000152: created" in added.stdout
        deadline = time.monotonic() + 5  # the gateway learns of the change within a second
        while request("GET", f"{base}/Organization", stranger)[0] != 200:
            assert time.monotonic() < deadline, "the new registration did not take effect"
            time.sleep(0.1)

        # `org add` without --her-id keeps the stored HER-ids; --her-id "" removes them.
        def org_add(*her_id: str) -> list[str]:
            added = subprocess.run(
                [*BARNEBRO, "org", "add", "--orgnr", "910000152", "--name", "Ny BUP",
                 "--kind", "bup", *her_id, "--url", base, "--data-dir", str(data_dir)],
                capture_output=True, text=True, env=embedded_env(),
            )  # fmt: skip
            assert added.returncode == 0, added.stdout + added.stderr
            status, found = request(
                "GET", f"{base}/Organization?identifier={ORGNR_SYSTEM}|910000152", operator
            )
            assert status == 200 and isinstance(found, dict)
            return [
                i["value"]
                for i in found["entry"][0]["resource"]["identifier"]
                if i["system"] == HERID_SYSTEM
            ]

        assert org_add("--her-id", "8142519") == ["8142519"]
        assert org_add() == ["8142519"]
        assert org_add("--her-id", "") == []

        # `import` finds the stack from --data-dir and writes as the token's caller.
        practitioners = tmp_path / "Practitioner.ndjson"
        practitioners.write_bytes(
            b"".join(
                orjson.dumps({"resourceType": "Practitioner", "id": f"p{n}", "identifier": [
                    {"system": "urn:oid:2.16.578.1.12.4.1.4.4", "value": hpr}]}) + b"\n"
                for n, hpr in enumerate(("9144900", "9144889"))
            )
        )  # fmt: skip
        for expected in ("2 created, 0 skipped", "0 created, 2 skipped"):
            imported = subprocess.run(
                [*BARNEBRO, "import", str(practitioners), "--data-dir", str(data_dir),
                 "--state", str(tmp_path / "imported.ndjson")],
                capture_output=True, text=True, env={**embedded_env(), "BARNEBRO_TOKEN": bearer},
            )  # fmt: skip
            assert imported.returncode == 0, imported.stdout + imported.stderr
            assert expected in imported.stdout

        second = subprocess.run(
            [*BARNEBRO, "up", "--port", str(port), "--data-dir", str(tmp_path / "other")],
            capture_output=True, text=True, timeout=60, env=embedded_env(),
        )  # fmt: skip
        assert second.returncode == 1
        assert f"port {port} is already in use" in second.stderr
    finally:
        assert stop(process) == 0
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()]

    restarted = start_up(data_dir, port)
    try:
        status, read = request("GET", f"{base}/Practitioner/{created['id']}", bearer)
        assert status == 200
        assert read == created
    finally:
        assert stop(restarted) == 0


@pytest.mark.services
def test_same_data_directory_twice_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    process = start_up(data_dir, free_port())
    try:
        second = subprocess.run(
            [*BARNEBRO, "up", "--port", str(free_port()), "--data-dir", str(data_dir)],
            capture_output=True, text=True, timeout=60, env=embedded_env(),
        )  # fmt: skip
        assert second.returncode == 1
        assert "already running with data directory" in second.stderr
    finally:
        assert stop(process) == 0


def test_serve_without_jwks_fails_clearly(tmp_path: Path) -> None:
    env = embedded_env()
    env.pop("BARNEBRO_JWKS_FILE", None)
    env.pop("BARNEBRO_JWKS_URL", None)
    env["BARNEBRO_DATA_DIR"] = str(tmp_path)
    result = subprocess.run(
        [*BARNEBRO, "serve", "gateway"], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode != 0
    assert "BARNEBRO_JWKS_URL or BARNEBRO_JWKS_FILE" in result.stderr


def test_token_rejects_unknown_kinds_and_a_kind_beside_an_organisation(tmp_path: Path) -> None:
    result = subprocess.run(
        [*BARNEBRO, "token", "--kind", "hospital", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, env=embedded_env(),
    )  # fmt: skip
    assert result.returncode == 2
    assert "invalid choice: 'hospital'" in result.stderr
    both = subprocess.run(
        [*BARNEBRO, "token", "--org", "974760673", "--kind", "bup", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, env=embedded_env(),
    )  # fmt: skip
    assert both.returncode != 0
    assert "kind is the register's" in both.stderr
