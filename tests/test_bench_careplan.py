"""The care plan benchmark: what it seeds is what the service stores, and a short run works.

The seeded plans and care teams are valid FHIR, name the coordinator the benchmark later
expects, and go through the service's own storage path (access columns, search index,
history) with no events left in the outbox. The smoke run is the whole benchmark — 300
seeded plans, a real local stack with its own nats-server, on PostgreSQL — for a second
and a half per phase with one and two clients (skipped only when PostgreSQL is
unreachable outside CI, as everywhere in the suite). It checks that updates and
coordinator questions were answered without a single failed or wrong answer, that the
result has every field the report and the JSON promise, and that the run stopped its
processes and removed its data directory and PostgreSQL schemas.
"""

from __future__ import annotations

import asyncio
import copy
import json
import secrets
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bench.__main__ import parser
from bench.careplan import (
    PHASES,
    CareplanOptions,
    Organisations,
    coordinator_path,
    format_careplan_report,
    found_coordinator,
    revised,
    run,
    seed,
    seeded_children,
    seeded_plan,
    seeded_team,
)
from bench.consent import run_schemas
from bench.crud import Identifiers, drop_schemas
from bench.load import Reply
from services.careplan.domain.vocabulary import NEXT_REVISION_EXT
from shared.config import Settings
from shared.fhir.resources import validate_resource
from tests.support import postgres_url

DAY = date(2026, 3, 1)
CLIENTS = (1, 2)
PLANS = 300


def _world(count: int = 4) -> tuple[Organisations, list[Any]]:
    ids = Identifiers(11)
    return Organisations.made(ids), seeded_children(ids, count)


def _searchset(*teams: dict[str, Any]) -> Reply:
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [{"resource": team, "search": {"mode": "match"}} for team in teams],
    }
    return Reply(200, json.dumps(bundle).encode(), {}, 0.01)


def test_seeded_teams_and_plans_are_valid_and_name_todays_coordinator() -> None:
    orgs, children = _world()
    for index, child in enumerate(children):
        team = seeded_team(index, child, orgs, DAY)
        plan = seeded_plan(index, child, orgs, DAY)
        assert validate_resource(team, "CareTeam") == "CareTeam"
        assert validate_resource(plan, "CarePlan") == "CarePlan"
        assert plan["careTeam"] == [{"reference": f"CareTeam/{child.team}"}]
        assert plan["subject"]["reference"] == f"Patient/{child.patient}"
        found = found_coordinator(_searchset(team), DAY)
        assert found == {"team": child.team, "coordinator": orgs.coordinator_of(index)}
        koordinators = [p for p in team["participant"] if "koordinator" in json.dumps(p["role"])]
        # Every second team had a coordinator before, whose period ended the day before.
        assert len(koordinators) == (2 if index % 2 == 0 else 1)
        revision = next(e for e in plan["extension"] if e["url"] == NEXT_REVISION_EXT)
        assert date.fromisoformat(revision["valueDate"]) > DAY  # never due during a run
    assert found_coordinator(_searchset(), DAY) is None
    two = seeded_team(1, children[1], orgs, DAY)
    assert found_coordinator(_searchset(two, two), DAY) is None
    path = coordinator_path("p-1", DAY)
    assert path == (
        "/CareTeam?patient=Patient/p-1&role=koordinator"
        "&coordinator-period=le2026-03-01&coordinator-period=ge2026-03-01"
    )


def test_a_revision_changes_the_description_and_the_next_revision_date() -> None:
    orgs, children = _world(1)
    plan = seeded_plan(0, children[0], orgs, DAY)
    changed = revised(plan, 7, DAY)
    assert changed["activity"][0]["detail"]["description"].endswith("revisjon 7")
    dates = [e["valueDate"] for e in changed["extension"] if e["url"] == NEXT_REVISION_EXT]
    assert dates == [(DAY + timedelta(days=67)).isoformat()]
    assert (
        plan["activity"][0]["detail"]["description"]
        != changed["activity"][0]["detail"]["description"]
    )  # the plan given is not changed


def test_command_line_and_options() -> None:
    args = parser().parse_args(["careplan", "--clients", "2,8", "--plans", "300"])
    assert (args.command, args.clients, args.plans) == ("careplan", (2, 8), 300)
    defaults = parser().parse_args(["careplan"])
    assert (defaults.clients, defaults.plans, defaults.seconds) == ((16,), 100_000, 15.0)
    assert defaults.database == "postgresql"
    with pytest.raises(SystemExit):
        parser().parse_args(["careplan", "--database", "sqlite"])
    with pytest.raises(ValueError, match="updated-plans"):
        CareplanOptions(clients=(64,), updated_plans=16)


async def _stored(url: str, schema: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch(
            f'SELECT res_type, patient, category, author, parties FROM "{schema}".resources'
        )
        params = await conn.fetch(f'SELECT DISTINCT res_type, param FROM "{schema}".search_index')
        history = await conn.fetchval(f'SELECT count(*) FROM "{schema}".resource_history')
        outbox = await conn.fetchval(f'SELECT count(*) FROM "{schema}".outbox')
    finally:
        await conn.close()
    return {
        "rows": [dict(row) for row in rows],
        "params": {(row["res_type"], row["param"]) for row in params},
        "history": history,
        "outbox": outbox,
    }


@pytest.mark.services
def test_seeding_stores_what_the_service_stores(monkeypatch: pytest.MonkeyPatch) -> None:
    url = postgres_url()
    tag = f"bench{secrets.token_hex(4)}"
    monkeypatch.setenv("BARNEBRO_DB_SCHEMA_PREFIX", tag)
    orgs, children = _world(5)
    options = CareplanOptions(clients=(1,), plans=5, updated_plans=1, batch=2, database_url=url)
    try:
        seeding = asyncio.run(seed(options, Settings(), children, orgs, DAY, tag))
        stored = asyncio.run(_stored(url, f"{tag}_careplan"))
    finally:
        asyncio.run(drop_schemas(url, tag))
    assert seeding["plans"] == 5 and seeding["plans_per_second"] > 0
    assert seeding["tables"]["resources"]["rows"] == 10
    assert seeding["tables"]["outbox"]["rows"] == 0
    assert stored["history"] == 10 and stored["outbox"] == 0
    by_patient = {child.patient: index for index, child in enumerate(children)}
    for row in stored["rows"]:
        index = by_patient[row["patient"]]
        assert row["author"] == orgs.bup_of(index)
        parties = set(row["parties"].split())
        if row["res_type"] == "CareTeam":
            assert row["category"] == "careteam"
            assert {orgs.bup_of(index), orgs.coordinator_of(index)} <= parties
        else:
            assert row["category"] == "careplan"
            assert parties == {orgs.coordinator_of(index), orgs.school_of(index)}
    for param in ("patient", "role", "coordinator-period", "participant-org"):
        assert ("CareTeam", param) in stored["params"]
    for param in ("patient", "category", "next-revision", "care-team"):
        assert ("CarePlan", param) in stored["params"]


def _positive(values: dict[str, Any], *keys: str) -> None:
    for key in keys:
        assert isinstance(values[key], int | float) and values[key] > 0, (key, values)


def _check_phase(phase: dict[str, Any]) -> None:
    assert phase["errors"] == 0 and phase["errors_outside_window"] == 0, phase["error_samples"]
    assert phase["error_samples"] == []
    headline = phase["headline"]
    assert headline["operation"] == phase["name"] and headline["errors"] == 0
    _positive(headline, "count", "per_second", "per_server_cpu_second", "p50_ms", "p99_ms")
    assert headline["p50_ms"] <= headline["p99_ms"] <= headline["max_ms"]
    assert phase["successful_requests"] == headline["count"]
    _positive(phase, "requests_per_server_cpu_second", "window_s")
    cpu = phase["cpu"]
    assert set(cpu["per_process_s"]) == {
        "gateway", "directory", "consent", "careplan", "nats-server", "postgres",
    }  # fmt: skip
    _positive(cpu["per_process_s"], "careplan")
    _positive(cpu, "server_total_s")


@pytest.mark.services
def test_short_careplan_run(tmp_path: Path) -> None:
    database_url = postgres_url()
    options = CareplanOptions(
        clients=CLIENTS,
        seconds=1.5,
        warmup=0.5,
        plans=PLANS,
        updated_plans=8,
        batch=100,
        database_url=database_url,
        out_dir=tmp_path,
        seed=5,
    )
    result, path = run(options)
    assert path is not None and path.exists()
    assert path.name.startswith("careplan-postgresql-")
    assert json.loads(path.read_text())["phases"] == result["phases"]

    seeding = result["seeding"]
    _positive(seeding, "seconds", "plans_per_second", "resources_per_second")
    assert seeding["plans"] == seeding["care_teams"] == PLANS
    assert seeding["tables"]["resources"]["rows"] == 2 * PLANS
    assert seeding["tables"]["resource_history"]["rows"] == 2 * PLANS
    assert seeding["tables"]["outbox"]["rows"] == 0
    assert seeding["tables"]["search_index"]["rows"] > 10 * PLANS

    phases = result["phases"]
    assert [(p["name"], p["clients"]) for p in phases] == [
        (name, clients) for clients in CLIENTS for name in PHASES
    ]
    for phase in phases:
        _check_phase(phase)
    assert result["errors_total"] == 0
    sanity = result["setup"]["sanity"]
    assert sanity["updated_version"] == "2" and sanity["stranger_status"] == 200
    assert sanity["coordinator"]["coordinator"] and sanity["seeded_plan_read_status"] == 200
    assert result["setup"]["updated_plans"] == 8
    explain = result["explain"]["coordinator"]
    assert "search_index" in explain["sql"]
    for name in ("custom", "generic"):
        assert len(explain[name]["execution_ms"]) == explain["children"] == 5
        assert all(ms is not None and ms > 0 for ms in explain[name]["execution_ms"])
        assert any("resources" in line for line in explain[name]["plan"])
    units = ("server CPU-s", "wall s")
    expected = {f"{name} 2 vs 1 clients, per {unit}" for name in PHASES for unit in units}
    assert set(result["ratios"]) == expected

    prefix = result["stack"]["schema_prefix"]
    assert result["cleanup"]["problems"] == []
    assert sorted(result["cleanup"]["dropped_schemas"]) == [
        f"{prefix}_{service}" for service in ("careplan", "consent", "directory")
    ]
    assert asyncio.run(run_schemas(database_url, prefix)) == []
    assert result["cleanup"]["data_dir_removed"]
    assert not Path(result["stack"]["data_dir"]).exists()
    # The stack's processes were stopped and waited for (pids are not reused this soon).
    assert [pid for pid in result["stack"]["pids"].values() if Path(f"/proc/{pid}").exists()] == []

    report = format_careplan_report(result)
    assert "plans per second" in report and "generic plan" in report and "FAILED" not in report
    _check_errors_are_shown(result)


def _check_errors_are_shown(result: dict[str, Any]) -> None:
    failed = copy.deepcopy(result)
    phase = failed["phases"][-1]
    phase["errors"] = phase["headline"]["errors"] = 1
    phase["error_samples"] = [
        {
            "operation": "coordinator",
            "method": "GET",
            "path": "/CareTeam?patient=Patient/p-1",
            "status": 200,
            "body": "unexpected answer: {}",
            "in_measured_window": True,
        }
    ]
    failed["errors_total"] = 1
    report = format_careplan_report(failed)
    assert "1 FAILED REQUESTS" in report
    assert "coordinator GET /CareTeam?patient=Patient/p-1 -> 200: unexpected answer" in report
