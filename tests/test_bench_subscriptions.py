"""The subscriptions benchmark: it subscribes as the service expects, reads notifications as
the service sends them, times and counts every event, and a short run works.

The smoke run is the whole benchmark — a real local stack (gateway, directory, consent,
referral, subscriptions) with its own nats-server, on PostgreSQL, partners on both
channels — at 20 and 40 events per second for two seconds per phase (skipped only when
PostgreSQL is unreachable outside CI, as everywhere in the suite). It checks that every
event written in the windows reached its partner, with no error of any kind, that the
source's event is the one the referral service raises, that the result has every field
the report and the JSON promise, and that the run stopped its processes and removed its
data directory, its streams and its PostgreSQL schemas.
"""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.__main__ import parser
from bench.consent import run_schemas
from bench.partner import (
    Ledger,
    delivery_summary,
    event_differences,
    read_notification,
)
from bench.subscriptions import (
    CHANNELS,
    STACK_SERVICES,
    SubscriptionsOptions,
    errors_total,
    format_subscriptions_report,
    run,
    subscription_body,
)
from services.subscriptions.domain.notification import (
    NotifiedEvent,
    notification_bundle,
    status_resource,
)
from services.subscriptions.domain.settings import read_settings
from services.subscriptions.domain.topics import TOPIC_BASE
from tests.support import postgres_url

BUP = "910000012"
BASE = "http://127.0.0.1:8080/fhir"
RATES = (20.0, 40.0)
PHASE_FIELDS = {
    "channel", "rate", "window_s", "scheduled", "written", "delivered", "missing", "late",
    "duplicated", "latency", "stages", "write_errors", "errors", "errors_outside_window",
    "delivered_per_second", "notifications", "events_per_notification", "write",
    "schedule_lag", "drain_s", "per_server_cpu_second", "cpu", "cpu_ms_per_event",
    "server_cpu_ms_per_event_above_idle", "vs_raw", "error_samples",
}  # fmt: skip
SERVER_PROCESSES = {
    "gateway", "directory", "consent", "referral", "subscriptions", "nats-server", "postgres",
}  # fmt: skip


def test_the_subscriptions_are_ones_the_service_accepts() -> None:
    hook = subscription_body(
        "rest-hook", BUP, endpoint="http://127.0.0.1:9/notify", secret="s" * 32, max_count=50
    )
    settings, problems = read_settings(hook, allow_http=True)
    assert problems == [] and settings is not None
    assert (settings.channel, settings.content, settings.max_count) == ("rest-hook", "id-only", 50)
    assert settings.topic.url == TOPIC_BASE + "referral-status"
    assert [(c.name, c.values) for c in settings.criteria] == [("performer", frozenset({BUP}))]
    settings, problems = read_settings(subscription_body("nats", BUP), allow_http=False)
    assert problems == [] and settings is not None
    assert (settings.channel, settings.endpoint, settings.max_count) == ("nats", None, 20)


def _notification(numbers: list[int], focus: list[str]) -> bytes:
    events = [
        NotifiedEvent(number, "2026-03-01T10:00:00Z", reference)
        for number, reference in zip(numbers, focus, strict=True)
    ]
    status = status_resource(
        subscription="sub-1",
        topic=TOPIC_BASE + "referral-status",
        status="active",
        kind="event-notification",
        events_since_start=max(numbers),
        events=events,
        content="id-only",
        base_url=BASE,
    )
    return orjson.dumps(notification_bundle(status, events, "id-only", BASE))


def test_the_partner_reads_what_the_service_sends_and_times_each_event() -> None:
    ledger = Ledger()
    ledger.expect("Task/a/_history/7", "p", started=10.0, measured=True)
    ledger.expect("Task/b/_history/3", "p", started=10.5, measured=True)
    ledger.expect("Task/c/_history/2", "p", started=11.0, measured=True)
    ledger.expect("Task/d/_history/2", "p", started=11.0, measured=False)
    body = _notification([1, 2], ["Task/a/_history/7", "Task/b/_history/3"])
    notification = read_notification(body)
    assert (notification.kind, notification.subscription) == ("event-notification", "sub-1")
    assert notification.focus == ["Task/a/_history/7", "Task/b/_history/3"]
    ledger.received(notification, at=10.75)
    ledger.received(read_notification(_notification([2], ["Task/b/_history/3"])), at=12.0)
    ledger.received(read_notification(_notification([5], ["Task/x/_history/1"])), at=12.0)
    assert ledger.pending["p"] == 2  # c and d
    assert (ledger.replayed, ledger.gaps, ledger.unexpected) == (1, 2, 1)
    assert ledger.problem_samples == ["gap: Subscription/sub-1: 2 then 5"]
    summary = delivery_summary(ledger.of_phase("p"), late_after=1.0)
    assert (summary["written"], summary["delivered"], summary["missing"]) == (3, 2, 1)
    assert (summary["late"], summary["duplicated"]) == (0, 1)
    assert summary["latency"]["p50_ms"] == 250.0 and summary["latency"]["max_ms"] == 750.0
    assert delivery_summary(ledger.of_phase("p"), late_after=0.5)["late"] == 1


def test_events_are_compared_without_who_wrote_them_or_when() -> None:
    ours: dict[str, Any] = {
        "id": "1",
        "type": "referral.Task.on-hold",
        "time": "t1",
        "version_id": "9",
        "data": {"actor": {"orgnr": BUP}, "status": "on-hold"},
        "access": {"author": "x"},
    }
    theirs = {
        **ours,
        "id": "2",
        "time": "t2",
        "version_id": "4",
        "trace_context": {"a": "b"},
        "data": {"actor": {"client_id": "gateway"}, "status": "on-hold"},
    }
    assert event_differences(ours, theirs) == []
    assert event_differences(ours, {**theirs, "data": {"status": "in-progress"}}) == ["data"]


def test_command_line_accepts_the_subscriptions_options() -> None:
    args = parser().parse_args(
        ["subscriptions", "--rates", "50,200", "--channels", "nats", "--source", "task"]
    )
    assert (args.rates, args.channels, args.source) == ((50.0, 200.0), ("nats",), "task")
    defaults = parser().parse_args(["subscriptions"])
    assert (defaults.rates, defaults.channels, defaults.source) == (
        (100.0, 500.0),
        CHANNELS,
        "outbox",
    )
    assert (defaults.seconds, defaults.max_count, defaults.late_after) == (20.0, None, 5.0)


def _positive(values: dict[str, Any], *keys: str) -> None:
    for key in keys:
        assert isinstance(values[key], int | float) and values[key] > 0, (key, values)


def _check_phase(phase: dict[str, Any], window: float) -> None:
    assert set(phase) >= PHASE_FIELDS, PHASE_FIELDS - set(phase)
    assert phase["errors"] == phase["errors_outside_window"] == 0, phase["error_samples"]
    assert phase["error_samples"] == [] and phase["write_errors"] == 0
    expected = phase["rate"] * phase["window_s"]
    assert 0.7 * expected <= phase["written"] <= 1.2 * expected + 1, phase
    assert phase["delivered"] == phase["written"] == phase["scheduled"]
    assert phase["missing"] == phase["late"] == 0
    latency = phase["latency"]
    _positive(latency, "p50_ms", "p99_ms")
    assert latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"] < 5000
    stages = phase["stages"]
    assert stages["seen_on_nats"] == phase["written"]
    for stage in ("write_to_nats", "nats_to_partner"):
        _positive(stages[stage], "p50_ms", "p99_ms")
    assert stages["write_to_nats"]["p50_ms"] < latency["p50_ms"]
    _positive(phase["write"], "count", "p50_ms", "p99_ms")
    _positive(phase, "per_server_cpu_second", "delivered_per_second", "notifications")
    assert phase["events_per_notification"] >= 1
    assert abs(phase["window_s"] - window) < 0.5
    assert set(phase["cpu"]["per_process_s"]) == SERVER_PROCESSES
    _positive(phase["cpu"]["per_process_s"], "subscriptions")
    assert set(phase["cpu_ms_per_event"]) == SERVER_PROCESSES | {"server", "load generator"}
    vs = phase["vs_raw"]
    _positive(vs, "core_p99_ms", "jetstream_p99_ms", "p99_over_core_p99", "p99_over_jetstream_p99")
    assert vs["p99_over_core_p99"] == round(latency["p99_ms"] / vs["core_p99_ms"], 4)


@pytest.mark.services
def test_short_subscriptions_run(tmp_path: Path) -> None:
    database_url = postgres_url()
    options = SubscriptionsOptions(
        rates=RATES,
        seconds=2.0,
        warmup=0.5,
        limit_seconds=1.0,
        referrals=4,
        idle_seconds=1.0,
        aim_rate=RATES[0],
        database_url=database_url,
        out_dir=tmp_path,
        seed=7,
    )
    result, path = run(options)
    assert path is not None and path.exists()
    assert path.name.startswith("subscriptions-postgresql-")
    assert json.loads(path.read_text())["phases"] == result["phases"]

    phases = result["phases"]
    assert [(p["channel"], p["rate"]) for p in phases] == [
        (channel, rate) for rate in RATES for channel in CHANNELS
    ]
    for phase in phases:
        _check_phase(phase, options.seconds)
    assert [p["aim"]["p99_ms"] for p in phases if "aim" in p] == [50.0, 50.0]
    for limit in result["limits"]:
        for kind in ("core", "jetstream"):
            raw = limit[kind]
            assert raw["errors"] == 0 and raw["received"] == raw["sent"] > 0, raw
            _positive(raw["latency"], "p50_ms", "p99_ms")
            # A second at 20/s may cost nats-server less than one clock tick.
            assert raw["messages_per_nats_cpu_second"] is None or raw["nats_cpu_s"] > 0
    assert [limit["rate"] for limit in result["limits"]] == list(RATES)
    assert result["errors_total"] == errors_total(result) == 0
    partner = result["partner"]
    assert partner["notifications_by_type"]["handshake"] == 2
    assert (partner["number_gaps"], partner["unexpected_events"]) == (0, 0)
    assert partner["problems"] == {} and partner["bad_signatures"] == 0
    sanity = result["setup"]["sanity"]
    assert set(sanity["event_same_as_the_service_raised"]) == set(CHANNELS)
    assert set(result["setup"]["subscriptions"]) == set(CHANNELS)
    _positive(result["idle"], "window_s")
    # An idle stack may use less than one clock tick (10 ms) in a short window: 0 is a
    # reading, a negative or missing one is not.
    assert result["idle"]["server_cpu_s_per_s"] >= 0, result["idle"]

    prefix = result["stack"]["schema_prefix"]
    assert result["cleanup"]["problems"] == []
    assert sorted(result["cleanup"]["dropped_schemas"]) == sorted(
        f"{prefix}_{service}" for service in STACK_SERVICES if service != "gateway"
    )
    assert asyncio.run(run_schemas(database_url, prefix)) == []
    assert result["cleanup"]["data_dir_removed"]
    assert not Path(result["stack"]["data_dir"]).exists()
    # The stack's processes were stopped and waited for (pids are not reused this soon).
    assert [pid for pid in result["stack"]["pids"].values() if Path(f"/proc/{pid}").exists()] == []

    report = format_subscriptions_report(result)
    assert "raw JetStream" in report and "NATS → partner" in report and "aim p99" in report
    assert "ERRORS" not in report
    _check_errors_are_shown(result)


def _check_errors_are_shown(result: dict[str, Any]) -> None:
    failed = copy.deepcopy(result)
    phase = failed["phases"][-1]
    phase["missing"] = phase["errors"] = 3
    failed["partner"]["number_gaps"] = 2
    failed["errors_total"] = errors_total(failed)
    assert failed["errors_total"] == 5
    report = format_subscriptions_report(failed)
    assert "!! 5 ERRORS" in report
    assert f"nats {phase['rate']:g}/s: 0 failed writes, 3 events missing, 0 late" in report
