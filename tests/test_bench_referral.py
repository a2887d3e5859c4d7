"""The referral benchmark: what it sends is a valid referral, and a short run works.

The smoke run is the whole benchmark — a real local stack with every service and its own
nats-server, on PostgreSQL — for about a second and a half per phase with one and two
clients (skipped only when PostgreSQL is unreachable outside CI, as everywhere in the
suite). It checks that referrals were submitted and lifecycles completed without a single
failed request, that the result has every field the report and the JSON promise, and that
the run stopped its processes and removed its data directory and PostgreSQL schemas.
"""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import parser
from bench.consent import run_schemas
from bench.load import Reply
from bench.referral import (
    ATTACHMENTS,
    MOVES,
    PHASES,
    REQUEST_KINDS,
    ReferralOptions,
    etag,
    format_referral_report,
    moved,
    referral_bundle,
    run,
    scaling_ratios,
    submitted_referral,
)
from services.cli import SERVICES
from services.referral.domain.vocabulary import FRIST_EXT, OUTPUT_SYSTEM, TaskStatus
from shared.fhir.resources import validate_resource
from tests.support import postgres_url

FNR = "01817512345"
GP, BUP, KOMMUNE = "889640782", "910000012", "910000055"
CLIENTS = (1, 2)


def test_the_bundle_is_a_transaction_of_three_attachments_and_the_referral() -> None:
    bundle = referral_bundle(FNR, GP, BUP)
    assert bundle["type"] == "transaction"
    *documents, last = bundle["entry"]
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert validate_resource(resource, resource["resourceType"]) == resource["resourceType"]
        assert entry["request"] == {"method": "POST", "url": resource["resourceType"]}
    kinds = [d["resource"]["type"]["coding"][0]["code"] for d in documents]
    assert kinds == [kind.value for kind in ATTACHMENTS]
    service_request = last["resource"]
    assert service_request["resourceType"] == "ServiceRequest"
    assert [i["reference"] for i in service_request["supportingInfo"]] == [
        d["fullUrl"] for d in documents
    ]
    assert service_request["requester"]["identifier"]["value"] == GP
    assert service_request["performer"][0]["identifier"]["value"] == BUP
    assert len({entry["fullUrl"] for entry in referral_bundle(FNR, GP, BUP)["entry"]}) == 4


def test_each_move_carries_what_the_state_machine_asks_for() -> None:
    task = {"resourceType": "Task", "id": "t", "status": "requested", "businessStatus": {}}
    accepted = moved(task, TaskStatus.ACCEPTED, KOMMUNE)
    assert accepted["status"] == "accepted" and "businessStatus" not in accepted
    assert [e["url"] for e in accepted["extension"]] == [FRIST_EXT]
    completed = moved(accepted, TaskStatus.COMPLETED, KOMMUNE)
    outputs = {o["type"]["coding"][0]["code"]: o for o in completed["output"]}
    assert {o["type"]["coding"][0]["system"] for o in completed["output"]} == {OUTPUT_SYSTEM}
    assert outputs["oppfolgingsplan"]["valueString"]
    follow_up = outputs["ansvarlig-oppfolging"]["valueReference"]["identifier"]["value"]
    assert follow_up == KOMMUNE
    assert task["status"] == "requested"  # the Task read is not changed
    assert [str(s) for s in MOVES] == ["received", "accepted", "in-progress", "completed"]


def test_answers_are_read_as_a_client_would() -> None:
    assert etag({"meta": {"versionId": "3"}}) == 'W/"3"'
    assert etag({"meta": {"versionId": "3"}}, {"Etag": 'W/"4"'}) == 'W/"4"'
    body = {"entry": [{"resource": {"resourceType": "ServiceRequest", "id": "sr-1"}}]}
    reply = Reply(200, json.dumps(body).encode(), {}, 0.01)
    assert submitted_referral(reply) == body["entry"][0]["resource"]
    assert submitted_referral(Reply(200, b"not json", {}, 0.01)) is None


def test_command_line_accepts_the_referral_options() -> None:
    args = parser().parse_args(["referral", "--clients", "2,8", "--seconds", "3"])
    assert (args.command, args.clients, args.seconds) == ("referral", (2, 8), 3.0)
    assert args.database == "postgresql"
    defaults = parser().parse_args(["referral"])
    assert (defaults.clients, defaults.seconds) == ((16, 64), 15.0)


def _positive(values: dict[str, Any], *keys: str) -> None:
    for key in keys:
        assert isinstance(values[key], int | float) and values[key] > 0, (key, values)


def _check_phase(phase: dict[str, Any]) -> None:
    assert phase["errors"] == 0 and phase["errors_outside_window"] == 0, phase["error_samples"]
    assert phase["error_samples"] == []
    headline = phase["headline"]
    assert headline["errors"] == 0
    _positive(headline, "count", "per_second", "per_server_cpu_second", "p50_ms", "p99_ms")
    assert headline["p50_ms"] <= headline["p99_ms"] <= headline["max_ms"]
    _positive(phase, "requests_per_server_cpu_second", "window_s")
    assert tuple(phase["operations"]) == REQUEST_KINDS[phase["name"]]
    for kind, stats in phase["operations"].items():
        _positive(stats, "count", "p50_ms", "p99_ms")
        assert stats["errors"] == 0, kind
    cpu = phase["cpu"]
    assert set(cpu["per_process_s"]) == {
        "gateway", "directory", "consent", "referral", "nats-server", "postgres",
    }  # fmt: skip
    _positive(cpu["per_process_s"], "referral")
    _positive(cpu, "server_total_s")


@pytest.mark.services
def test_short_referral_run(tmp_path: Path) -> None:
    database_url = postgres_url()
    options = ReferralOptions(
        clients=CLIENTS,
        seconds=1.5,
        warmup=0.5,
        patients=8,
        database="postgresql",
        database_url=database_url,
        out_dir=tmp_path,
        seed=5,
    )
    result, path = run(options)
    assert path is not None and path.exists()
    assert path.name.startswith("referral-postgresql-")
    assert json.loads(path.read_text())["phases"] == result["phases"]

    phases = result["phases"]
    assert [(p["name"], p["clients"]) for p in phases] == [
        (name, clients) for clients in CLIENTS for name in PHASES
    ]
    for phase in phases:
        _check_phase(phase)
    lifecycles = [p for p in phases if p["name"] == "lifecycle"]
    for phase in lifecycles:
        # Six requests per lifecycle; a window cuts a few lifecycles at each edge.
        assert phase["successful_requests"] >= 6 * phase["headline"]["count"] - 6 * 2
    assert result["errors_total"] == 0
    assert result["setup"]["sanity"]["business_status"] == "utskrevet"
    assert result["setup"]["patients"] == 8
    units = ("server CPU-s", "wall s")
    expected = {f"{name} 2 vs 1 clients, per {unit}" for name in PHASES for unit in units}
    assert set(result["ratios"]) == expected
    assert all(value is not None and value > 0 for value in result["ratios"].values())

    prefix = result["stack"]["schema_prefix"]
    assert result["cleanup"]["problems"] == []
    assert sorted(result["cleanup"]["dropped_schemas"]) == sorted(
        f"{prefix}_{service}" for service in SERVICES if service != "gateway"
    )
    assert asyncio.run(run_schemas(database_url, prefix)) == []
    assert result["cleanup"]["data_dir_removed"]
    assert not Path(result["stack"]["data_dir"]).exists()
    # The stack's processes were stopped and waited for (pids are not reused this soon).
    assert [pid for pid in result["stack"]["pids"].values() if Path(f"/proc/{pid}").exists()] == []

    report = format_referral_report(result)
    assert "lifecycle: completed" in report and "FAILED" not in report
    _check_errors_are_shown(result)


def _check_errors_are_shown(result: dict[str, Any]) -> None:
    failed = copy.deepcopy(result)
    phase = failed["phases"][-1]
    phase["errors"] = phase["headline"]["errors"] = 1
    phase["error_samples"] = [
        {
            "operation": "completed",
            "method": "PUT",
            "path": "/Task/t-1",
            "status": 500,
            "body": "deadlock detected",
            "in_measured_window": True,
        }
    ]
    failed["errors_total"] = 1
    report = format_referral_report(failed)
    assert "1 FAILED REQUESTS" in report
    assert "completed PUT /Task/t-1 -> 500: deadlock detected" in report


def test_scaling_compares_each_count_with_the_first() -> None:
    def phase(name: str, clients: int, per_cpu: float, per_s: float) -> dict[str, Any]:
        headline = {"per_server_cpu_second": per_cpu, "per_second": per_s}
        return {"name": name, "clients": clients, "headline": headline}

    ratios = scaling_ratios([phase("submit", 16, 40.0, 80.0), phase("submit", 64, 30.0, 100.0)])
    assert ratios == {
        "submit 64 vs 16 clients, per server CPU-s": 0.75,
        "submit 64 vs 16 clients, per wall s": 1.25,
    }
