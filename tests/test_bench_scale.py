"""The scale benchmark: what it would import is valid and in order, its verdict is right,
and a short run works.

The mix is checked without a server: every identifier valid and unique, every resource
valid FHIR, every reference to another resource of the import pointing to one of an
earlier file (so `barnebro import`, file after file, always finds it), and every file
written by a party the permission table lets create its type. The comparison's ratio and
verdict are checked on made-up numbers. The smoke run is the whole benchmark on a real
local stack with its own nats-server and PostgreSQL schemas, at a few dozen resources
(skipped only when PostgreSQL is unreachable outside CI, as everywhere in the suite).
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import parser
from bench.actors import credential_caller, organisation_caller
from bench.consent import run_schemas
from bench.cpu import CpuUsage
from bench.crud import BACKENDS, Identifiers
from bench.scale import (
    IMPORT_ORDER,
    QUERIES,
    Child,
    Organisations,
    Part,
    ScaleOptions,
    aim,
    children_for,
    compare,
    family,
    format_scale_report,
    make_child,
    resources_for,
    resources_of,
    run,
)
from bench.scale.mix import REGISTER, referred
from bench.scale.world import others_cpu_s
from services.operator.ndjson import Line, in_dependency_order, references
from shared.access.permissions import permits
from shared.auth.scopes import ALL_SYSTEM_SCOPES
from shared.fhir.resources import validate_resource
from shared.identifiers import FNR_SYSTEM, ORGNR_SYSTEM, check_orgnr, parse_person_number
from tests.support import postgres_url

DAY = date(2026, 3, 1)
CHILDREN = 64


def _mix(count: int = CHILDREN) -> tuple[Organisations, list[Child], list[tuple[Part, Any]]]:
    ids = Identifiers(7)
    orgs = Organisations.made(ids, gps=3, bups=2, kommuner=2)
    gp_ids = {orgnr: f"gp-{number}" for number, orgnr in enumerate(orgs.gps)}
    children = [make_child(index, ids, orgs) for index in range(count)]
    lines = [line for child in children for line in family(child, ids, gp_ids, DAY)]
    return orgs, children, lines


def _key(resource: dict[str, Any]) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def _identifiers(node: Any) -> Iterator[dict[str, Any]]:
    """Every Identifier (a dict with a system and a value) anywhere in a resource."""
    if isinstance(node, dict):
        if isinstance(node.get("system"), str) and isinstance(node.get("value"), str):
            yield node
        for value in node.values():
            yield from _identifiers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _identifiers(item)


def test_the_mix_is_valid_fhir_with_valid_unique_identifiers() -> None:
    orgs, children, lines = _mix()
    assert len(lines) == resources_for(CHILDREN)
    assert len({_key(resource) for _, resource in lines}) == len(lines)
    people: list[str] = []
    for part, resource in lines:
        assert part.resource_type == resource["resourceType"]
        assert validate_resource(resource, part.resource_type) == part.resource_type
        for identifier in _identifiers(resource):
            if identifier["system"] == ORGNR_SYSTEM:
                check_orgnr(identifier["value"])
        own = resource.get("identifier") or []
        if part.resource_type in ("Patient", "RelatedPerson"):
            [person] = own
            assert person["system"] == FNR_SYSTEM
            assert parse_person_number(person["value"]).is_synthetic
            people.append(person["value"])
    assert len(people) == len(set(people)) == CHILDREN + sum(c.parents for c in children)
    assert [c.fnr for c in children] == [
        r["identifier"][0]["value"] for p, r in lines if p.resource_type == "Patient"
    ]
    for orgnr in (*orgs.gps, *orgs.bups, *orgs.kommuner):
        check_orgnr(orgnr)


def test_references_point_to_earlier_files_and_need_no_cycle() -> None:
    _, children, lines = _mix()
    order = {resource_type: rank for rank, resource_type in enumerate(IMPORT_ORDER)}
    written = {_key(resource): order[part.resource_type] for part, resource in lines}
    for part, resource in lines:
        for target in references(resource):
            if target.startswith("Organization/"):
                assert target.startswith("Organization/gp-")  # registered at set-up
                continue
            assert target in written, (part, target)
            assert written[target] < order[part.resource_type], (part, target)
    chunk = [Line(f"mix:{n}", resource) for n, (_, resource) in enumerate(lines)]
    ordered = in_dependency_order(chunk)
    assert ordered.refused == [] and sum(len(level) for level in ordered.levels) == len(lines)
    plans = [r for p, r in lines if p.resource_type == "CarePlan"]
    assert len(plans) == sum(c.planned for c in children) > 0
    for plan in plans:
        assert plan["careTeam"] == [{"reference": f"CareTeam/t{plan['id'][1:]}"}]


def test_each_file_is_written_by_a_party_that_may_create_its_type() -> None:
    orgs, children, lines = _mix()
    kinds = {**dict.fromkeys(orgs.gps, "fastlege"), **dict.fromkeys(orgs.bups, "bup")}
    parts = {part for part, _ in lines}
    for part in parts:
        if part.writer == REGISTER:
            caller = credential_caller("register")
        else:
            caller = organisation_caller(part.writer, kinds[part.writer], [ALL_SYSTEM_SCOPES])
        assert permits(caller, part.resource_type, "create"), part
    assert {p.resource_type for p in parts} == set(IMPORT_ORDER)
    # every GP refers and every BUP coordinates: each organisation has every share
    assert {p.writer for p in parts if p.resource_type == "ServiceRequest"} == set(orgs.gps)
    assert {p.writer for p in parts if p.resource_type == "CareTeam"} == set(orgs.bups)
    for child in children:
        referral = [r for p, r in lines if r["id"] == f"s{child.index}"]
        assert bool(referral) == (child.bup is not None)
        if referral:
            assert referral[0]["requester"]["identifier"]["value"] == child.gp
            assert referral[0]["performer"][0]["identifier"]["value"] == child.bup


def test_the_number_of_children_is_the_fewest_that_bring_the_resources() -> None:
    for target in (20, 1_000, 10_001, 123_456):
        children = children_for(target)
        assert resources_for(children) >= target > resources_for(children - 1)
    assert resources_of(0) == 1 + 1 + 1 + 2  # one parent, a referral, a team and a plan
    assert resources_of(1) == 1 + 2
    assert 3.5 < resources_for(28_000) / 28_000 < 4.0


def _query(
    p50: float, p95: float, p99: float, errors: int = 0, control: float | None = 1.0
) -> dict[str, Any]:
    return {
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
        "errors": errors,
        "control_cpu_ms_per_request": control,
    }


def test_the_comparison_is_p95_large_over_baseline_within_the_limit() -> None:
    baseline = {
        "read": _query(5, 10, 12),
        "parents": _query(5, 10, 12),
        "coordinator": _query(5, 10, 12),
        "include": _query(0, 0, 0),
        "referrals": _query(5, 10, 12, errors=1),
        "only-before": _query(5, 10, 12),
    }
    large = {
        "read": _query(6, 20, 30, control=1.5),
        "parents": _query(6, 20.1, 30),
        "coordinator": _query(4, 8, 9),
        "include": _query(3, 4, 5),
        "referrals": _query(5, 10, 12),
    }
    found = compare(baseline, large)
    assert set(found) == {"read", "parents", "coordinator", "include", "referrals"}
    assert found["read"] == {
        "p95_baseline_ms": 10,
        "p95_large_ms": 20,
        "p95_ratio": 2.0,
        "p50_ratio": 1.2,
        "p99_ratio": 2.5,
        "within": True,
        "control_cpu_ratio": 1.5,
    }
    assert (found["parents"]["p95_ratio"], found["parents"]["within"]) == (2.01, False)
    assert (found["coordinator"]["p95_ratio"], found["coordinator"]["within"]) == (0.8, True)
    assert (found["include"]["p95_ratio"], found["include"]["within"]) == (None, False)
    assert found["include"]["control_cpu_ratio"] == 1.0
    assert found["referrals"]["within"] is False  # an error at either size
    verdict = aim(found)
    assert verdict["met"] is False
    assert sorted(verdict["not_within"]) == ["include", "parents", "referrals"]
    assert aim({"read": found["read"], "coordinator": found["coordinator"]})["met"] is True
    assert aim({})["met"] is False
    assert compare(baseline, large, limit=3.0)["parents"]["within"] is True


def test_others_cpu_is_what_no_process_of_the_run_spent() -> None:
    usage = CpuUsage(
        seconds={"gateway": 1.0, "postgres": 3.0},
        extra={BACKENDS: 2.5},
        load_generator=0.5,
        machine_busy=6.0,
        machine_steal=0.0,
    )
    assert others_cpu_s(usage) == 1.5 + 0.5  # unattributed, and postgres beyond this run's
    quiet = CpuUsage({"postgres": 1.0}, {}, load_generator=0.0, machine_busy=0.5, machine_steal=0)
    assert others_cpu_s(quiet) == 1.0


def test_the_options_are_checked_and_the_command_has_the_brief_defaults() -> None:
    with pytest.raises(ValueError, match="more than --baseline"):
        ScaleOptions(baseline=1_000, resources=1_000)
    with pytest.raises(ValueError, match="at least"):
        ScaleOptions(baseline=5)
    with pytest.raises(ValueError, match="between 1 and 500"):
        ScaleOptions(batch=501)
    args = parser().parse_args(["scale"])
    assert (args.baseline, args.resources, args.batch, args.parallel) == (10_000, 1_000_000, 100, 4)


def _positive(values: dict[str, Any], *keys: str) -> None:
    for key in keys:
        assert isinstance(values[key], int | float) and values[key] > 0, (key, values)


@pytest.mark.services
def test_short_scale_run(tmp_path: Path) -> None:
    database_url = postgres_url()
    options = ScaleOptions(
        baseline=60,
        resources=160,
        requests=20,
        warmup_requests=4,
        concurrency=2,
        gps=2,
        bups=2,
        kommuner=2,
        database_url=database_url,
        out_dir=tmp_path,
        seed=5,
    )
    result, path = run(options)
    assert path is not None and path.name.startswith("scale-")
    assert json.loads(path.read_text())["comparison"] == result["comparison"]
    assert result["errors_total"] == 0 and "stopped" not in result

    baseline, large = result["sizes"]
    assert (baseline["children"], large["children"]) == (children_for(60), children_for(160))
    for size in (baseline, large):
        assert size["resources"] == resources_for(size["children"]) >= size["resources_asked"]
        assert list(size["import"]) == list(IMPORT_ORDER)
        for imported in size["import"].values():
            assert imported["failed"] == 0, imported["failure_samples"]
            _positive(imported, "imported", "per_second", "server_cpu_s", "per_server_cpu_second")
        added = sum(t["imported"] for t in size["import"].values())
        assert added == resources_for(size["children"]) - resources_for(
            size["children"] - size["children_added"]
        )
        stored = size["database"]
        assert stored["directory"]["resources_by_type"]["Patient"] == size["children"]
        referrals = sum(referred(index) for index in range(size["children"]))
        assert stored["referral"]["resources_by_type"] == {
            "ServiceRequest": referrals,
            "Task": referrals,  # made by the server, one per referral
        }
        assert list(size["queries"]) == [query.name for query in QUERIES]
        for query in size["queries"].values():
            assert query["count"] == 20 and query["errors"] == query["errors_in_warmup"] == 0
            _positive(query, "p50_ms", "p95_ms", "p99_ms", "per_server_cpu_second")
            _positive(query, "control_cpu_ms_per_request")
            assert query["others_cpu_s"] >= 0
    assert large["import"]["Patient"]["created"] == large["children_added"]
    assert set(result["comparison"]) == {query.name for query in QUERIES}
    for compared in result["comparison"].values():
        _positive(compared, "p95_ratio", "control_cpu_ratio")
    assert result["aim"]["p95_ratio_limit"] == 2.0

    prefix = result["stack"]["schema_prefix"]
    assert result["cleanup"]["problems"] == []
    assert sorted(result["cleanup"]["dropped_schemas"]) == [
        f"{prefix}_{service}" for service in ("careplan", "consent", "directory", "referral")
    ]
    assert asyncio.run(run_schemas(database_url, prefix)) == []
    assert result["cleanup"]["data_dir_removed"]
    assert [pid for pid in result["stack"]["pids"].values() if Path(f"/proc/{pid}").exists()] == []

    report = format_scale_report(result)
    assert "large ÷ baseline" in report and "ERRORS" not in report
    failed = copy.deepcopy(result)
    failed["errors_total"] = 1
    failed["sizes"][0]["import"]["CarePlan"]["failure_samples"] = [
        {"where": "CarePlan-x.ndjson:3", "reason": "HTTP 422: nope"}
    ]
    report = format_scale_report(failed)
    assert "1 ERRORS" in report and "CarePlan-x.ndjson:3: HTTP 422: nope" in report
