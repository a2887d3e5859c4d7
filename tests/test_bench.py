"""The benchmark itself: its generated identifiers are valid, each type of its chain is
handled with a credential the permission table lets write it, and a short run works.

The smoke run starts a real local stack (its own nats-server, the directory on SQLite, the
gateway) for about two seconds of CRUD with two clients, so a broken benchmark — or a
server change that makes the workload fail — shows up in the ordinary test run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.actors import credential_caller, organisation_caller
from bench.crud import CHAIN, CLIENT_KIND, CLIENT_ORGNR, WRITERS, CrudOptions, Identifiers, run
from bench.report import OPERATIONS, format_report, percentile
from services.operator.demo import DEMO_ORGANISATIONS
from shared.access.permissions import permits
from shared.identifiers import check_orgnr, parse_person_number


def test_generated_identifiers_are_valid_and_unique() -> None:
    ids = Identifiers(seed=7)
    orgnrs = [ids.orgnr() for _ in range(500)]
    fnrs = [ids.fnr() for _ in range(500)]
    hprs = [ids.hpr() for _ in range(500)]
    for orgnr in orgnrs:
        check_orgnr(orgnr)
    for fnr in fnrs:
        assert parse_person_number(fnr).is_synthetic
    assert len(set(orgnrs)) == len(set(fnrs)) == len(set(hprs)) == 500


def test_each_type_of_the_chain_is_handled_by_a_credential_that_may_write_it() -> None:
    callers = {
        "operator": credential_caller("operator"),
        "register": credential_caller("register"),
        "client": organisation_caller(CLIENT_ORGNR, CLIENT_KIND, ["system/*.cruds"]),
    }
    for resource_type in CHAIN:
        for writer, caller in callers.items():
            for action in ("create", "read", "update", "delete"):
                allowed = permits(caller, resource_type, action)
                if writer == WRITERS[resource_type]:
                    assert allowed, (resource_type, action, writer)
                elif action == "create" and resource_type in ("Organization", "RelatedPerson"):
                    assert not allowed, (resource_type, action, writer)
    check_orgnr(CLIENT_ORGNR)
    assert CLIENT_ORGNR not in {row.orgnr for row in DEMO_ORGANISATIONS.values()}


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([], 0.5) == 0.0


@pytest.mark.services
def test_short_crud_run_on_sqlite(tmp_path: Path) -> None:
    options = CrudOptions(
        clients=2,
        seconds=2.0,
        warmup=0.5,
        limit_seconds=0.5,
        limit_warmup=0.2,
        database="sqlite",
        out_dir=tmp_path,
    )
    result, path = run(options)
    assert path is not None and path.exists()
    crud = result["crud"]
    assert crud["errors"] == 0, result["error_samples"]
    for op in OPERATIONS:
        assert crud["operations"][op]["count"] > 0, op
    assert set(crud["by_type"]) == set(CHAIN)
    for resource_type, by_op in crud["by_type"].items():
        assert set(by_op) == set(OPERATIONS), resource_type
    assert crud["cpu"]["server_total_s"] > 0
    assert result["read_by_id"]["errors"] == 0
    assert result["limits"]["http"]["successful_requests"] > 0
    assert result["limits"]["storage"]["pairs"] > 0
    assert "CRUD mix / HTTP limit, per server CPU-s" in result["ratios"]
    assert "create" in format_report(result)
