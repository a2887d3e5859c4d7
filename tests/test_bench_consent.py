"""The consent benchmark: its generated view is what it claims, and a short run works.

The smoke run is the whole benchmark for a few tenths of a second per phase and five
withdrawals, with 200 patients, against the real NATS (skipped only when NATS is
unreachable outside CI, as everywhere in the suite), on SQLite and on PostgreSQL. It
checks that every metric came out positive, that the checked service wrote one audit
record per checked request (in process and over NATS), and that the run removed its
streams, its buckets, its SQLite files and its PostgreSQL schemas.
"""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import parser
from bench.consent import (
    CATEGORY,
    RECIPIENT_KIND,
    BenchDocument,
    ConsentOptions,
    abba,
    document,
    format_consent_report,
    generate_population,
    nats_objects_left,
    run,
    run_schemas,
)
from bench.crud import DEFAULT_DATABASE_URL
from shared.access.decision import AccessContext, actor_keys, visibility
from shared.fhir.resources import validate_resource
from shared.transport.wire import Caller
from tests.support import nats_url, postgres_url

PHASES = ("decide", "visibility", "read", "search", "checked-parts", "transport", "withdrawal")


def test_windows_alternate_abba() -> None:
    order = abba(10)
    assert order[:4] == ["checked", "unchecked", "unchecked", "checked"]
    assert order.count("checked") == order.count("unchecked") == 5
    for first, second in zip(order[0::2], order[1::2], strict=True):
        assert {first, second} == {"checked", "unchecked"}


def test_generated_view_gives_the_reader_one_percent() -> None:
    population = generate_population(1000, random.Random(3))
    assert len(population.states) == len({s.patient for s in population.states}) == 1000
    assert all(1 <= len(s.grants) <= 4 for s in population.states)
    assert population.target.patient in population.recipient_patients
    assert len(population.recipient_patients) == 10
    caller = Caller(orgnr=population.recipient, org_kind=RECIPIENT_KIND)
    keys = set(actor_keys(caller))
    found = [s for s in population.states if s.recipient_keys() & keys]
    assert sorted(s.patient for s in found) == population.recipient_patients
    access = visibility(found, CATEGORY, AccessContext(caller=caller, day=population.day))
    assert list(access.patients) == population.recipient_patients


def test_bench_document_is_valid_patient_data() -> None:
    resource = document("p-1", "974760673")
    assert validate_resource(resource, "DocumentReference") == "DocumentReference"
    definition = BenchDocument()
    assert definition.patient_of(resource, "d-1") == "p-1"
    assert definition.data_category == CATEGORY
    assert "patient" in definition.params_by_name()


def test_command_line_accepts_the_consent_options() -> None:
    args = parser().parse_args(
        ["consent", "--seconds", "3", "--database", "postgresql", "--patients", "50"]
    )
    assert (args.command, args.seconds, args.database, args.patients) == (
        "consent",
        3.0,
        "postgresql",
        50,
    )


def _positive(values: dict[str, Any], *keys: str) -> None:
    for key in keys:
        assert isinstance(values[key], int | float) and values[key] > 0, (key, values)


def _check_comparison(phase: dict[str, Any]) -> None:
    for variant in ("checked", "unchecked"):
        summary = phase[variant]
        assert summary["errors"] == 0, phase["error_samples"]
        _positive(
            summary,
            "requests",
            "process_cpu_s",
            "per_process_cpu_second",
            "per_wall_second",
            "p50_ms",
            "p99_ms",
        )
    _positive(phase, "ratio_per_process_cpu_second", "ratio_per_wall_second")
    assert all(r is not None and r > 0 for r in phase["pair_ratios"])
    assert phase["audit_records_written"] == phase["checked_requests"] > 0


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
@pytest.mark.services
def test_short_consent_run(tmp_path: Path, database: str) -> None:
    url = nats_url()
    database_url = postgres_url() if database == "postgresql" else ""
    options = ConsentOptions(
        seconds=0.4,
        windows=2,
        warmup=0.2,
        local_seconds=0.2,
        patients=200,
        documents=10,
        database="postgresql" if database_url else "sqlite",
        database_url=database_url or DEFAULT_DATABASE_URL,
        nats_url=url,
        out_dir=tmp_path,
        seed=11,
        withdrawals=5,
        views=2,
    )
    result, path = run(options)
    assert path is not None and path.exists()
    assert json.loads(path.read_text())["phases"] == result["phases"]
    phases = {phase["name"]: phase for phase in result["phases"]}
    assert tuple(phases) == PHASES

    _positive(phases["decide"], "decisions", "cpu_s", "per_cpu_second", "per_wall_second")
    _positive(phases["visibility"], "filters", "cpu_s", "per_cpu_second", "per_wall_second")
    assert phases["visibility"]["states_found"] == 2  # 1 % of 200
    assert result["sanity"]["read_basis"] == "consent"
    assert result["sanity"]["unrelated_read_status"] == 404
    for name in ("read", "search"):
        _check_comparison(phases[name])
    for part in phases["checked-parts"]["parts"]:
        _positive(part, "calls", "per_cpu_second", "cpu_us_each")

    transport = phases["transport"]
    assert transport["sanity"]["unrelated_read_status"] == 404
    assert transport["problems"] == []
    for name in ("read", "search"):
        _check_comparison(transport[name])
        _positive(transport[name], "headline_ratio")
    if "nats-server" in transport["cpu_counted"]:  # the NATS of the tests runs locally
        for name in ("read", "search"):
            _positive(transport[name], "ratio_with_nats")
            for variant in ("checked", "unchecked"):
                _positive(transport[name][variant], "per_cpu_second_with_nats")

    withdrawal = phases["withdrawal"]
    assert withdrawal["withdrawals"] == 5
    assert withdrawal["problems"] == []
    assert withdrawal["views"] == ["consent", "bench", "other-1", "other-2"]
    for key in ("to_last_view", "to_first_view", "withdrawal_request", "consent_create_request"):
        _positive(withdrawal[key], "p50_ms", "p99_ms", "max_ms")
    spread = withdrawal["to_last_view"]
    assert spread["p50_ms"] <= spread["p99_ms"] <= spread["max_ms"]
    assert withdrawal["to_first_view"]["max_ms"] <= spread["max_ms"]
    assert withdrawal["reply_to_last_view"]["max_ms"] <= spread["max_ms"]
    assert withdrawal["outbox_relay"]["poll_interval_s"] > 0
    assert withdrawal["outbox_relay"]["linger_s"] > 0
    assert all(value is None or value > 0 for value in result["ratios"].values())

    cleanup = result["cleanup"]
    assert cleanup["problems"] == [] and cleanup["absent"] == []
    assert cleanup["deleted_streams"] == result["nats"]["streams"]
    assert cleanup["deleted_buckets"] == result["nats"]["buckets"]
    assert len(result["nats"]["buckets"]) == 2  # the consent view and the registry
    assert asyncio.run(nats_objects_left(url, result["nats"])) == []
    assert not Path(result["database"]["data_dir"]).exists()
    if database_url:
        prefix = result["database"]["schema_prefix"]
        assert cleanup["dropped_schemas"] == [
            f"{prefix}_bench",
            f"{prefix}_consent",
            f"{prefix}_directory",
        ]
        assert asyncio.run(run_schemas(database_url, prefix)) == []

    report = format_consent_report(result)
    assert "read: checked/unchecked" in report and "search: checked/unchecked" in report
    assert "transport read: checked/unchecked" in report
    assert "request sent → last view" in report
