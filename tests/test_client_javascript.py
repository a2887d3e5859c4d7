"""fhir-kit-client, a JavaScript FHIR client, run with the machine's Node.js against the
real stack (`tests/js/client.mjs`): a child created, read, searched, updated and deleted,
the register paged and counted, a referral's Task moved, and refusals as the client sees
them. The script's dependencies are installed with `npm ci` when they are missing. Without
Node.js or npm these tests are skipped, except in CI, where they fail."""

from __future__ import annotations

import asyncio
import os
import shutil
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.referral_world import BUP, BVT, GP, KINDS, SKOLE, ReferralWorld
from tests.support import IN_CI, fodselsnummer

JS = Path(__file__).parent / "js"
INSTALLED = JS / "node_modules" / "fhir-kit-client" / "package.json"


def tool(name: str) -> str:
    """The path of `name` (node, npm); skips the test without it, fails it in CI."""
    found = shutil.which(name)
    if found is None:
        message = f"{name} is not installed: the JavaScript client tests need Node.js 20 and npm"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return found


async def run(*command: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run a command without blocking the event loop that serves the stack."""
    process = await asyncio.create_subprocess_exec(
        *command,
        cwd=JS,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=240)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def installed() -> None:
    """Install the script's dependencies as its lock file names them, unless they are."""
    if INSTALLED.exists():
        return
    code, out, err = await run(tool("npm"), "ci", "--no-audit", "--no-fund")
    assert code == 0, f"npm ci failed:\n{out}\n{err}"


async def scenario(name: str, world: ReferralWorld, by: str, **env: str) -> dict[str, Any]:
    """Run a scenario of the script as the organisation `by`, with a school (which has no
    relation to anyone's child) as the other organisation; what the script printed."""
    node = tool("node")
    await installed()
    variables = {
        **os.environ,
        "BARNEBRO_FHIR_BASE": world.stack.base,
        "BARNEBRO_TOKEN": world.token(by),
        "BARNEBRO_OTHER_TOKEN": world.token(SKOLE),
        **{f"BARNEBRO_{key.upper()}": value for key, value in env.items()},
    }
    code, out, err = await run(node, "client.mjs", name, env=variables)
    assert code == 0, f"node client.mjs {name} failed:\n{err}"
    result: dict[str, Any] = orjson.loads(out)
    return result


async def test_javascript_client_keeps_a_child_record(referrals: ReferralWorld) -> None:
    fnr = fodselsnummer(date.today() - timedelta(days=5 * 365), 820)
    seen = await scenario("child", referrals, BVT, fnr=fnr, gp=referrals.organisations[GP])
    child = seen["created"]["id"]
    assert seen["created"]["version"] == "1"
    assert seen["read"] == {"id": child, "fnr": fnr}
    assert seen["found"] == [child]
    assert seen["gp"] == {"resourceType": "Organization", "id": referrals.organisations[GP]}
    assert seen["updated"] == {"version": "2", "given": ["Emma", "Sofie"]}
    assert seen["stale"]["status"] == 412
    assert seen["stale"]["resourceType"] == "OperationOutcome"

    # The school may not see the child: exactly as a child that is not there.
    assert seen["hidden"]["status"] == seen["missing"]["status"] == 404
    assert [d.replace(child, "X") for d in seen["hidden"]["diagnostics"]] == [
        d.replace("no-such-child", "X") for d in seen["missing"]["diagnostics"]
    ]
    assert seen["hiddenSearch"] == []
    assert seen["forbidden"]["status"] == 403
    assert seen["forbidden"]["resourceType"] == "OperationOutcome"

    pages = seen["organisationPages"]
    assert [len(page) for page in pages] == [3, 3, 2]
    registered = sorted(referrals.organisations[orgnr] for orgnr in KINDS)
    assert sorted(id_ for page in pages for id_ in page) == registered
    assert seen["organisationCount"] == len(KINDS)
    assert seen["gone"]["status"] == 410


async def test_javascript_client_moves_a_referral_task(referrals: ReferralWorld) -> None:
    referral = await referrals.submit(await referrals.child())
    seen = await scenario("task", referrals, BUP, task_id=referral.task_id)
    assert seen["read"] == {"status": "requested", "version": "1"}
    assert seen["focus"] == {"resourceType": "ServiceRequest", "id": referral.id}
    assert seen["moved"] == {"status": "received", "version": "2", "businessStatus": "mottatt"}
    assert seen["unlocked"]["status"] == 428  # no If-Match
    assert seen["unlocked"]["resourceType"] == "OperationOutcome"
    assert seen["hidden"]["status"] == 404


async def test_javascript_client_patches_a_referral_task(referrals: ReferralWorld) -> None:
    """fhir-kit-client's patch() sends a JSON Patch (application/json-patch+json)."""
    referral = await referrals.submit(await referrals.child())
    seen = await scenario("patch", referrals, BUP, task_id=referral.task_id)
    assert seen["patched"] == {"status": "received", "version": "2", "businessStatus": "mottatt"}
