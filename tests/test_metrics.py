"""The metrics reach an OTLP receiver with the names the deploy guide lists.

The process installs the OTLP provider as `barnebro serve` does (`setup_metrics` with
`OTEL_EXPORTER_OTLP_ENDPOINT` set) against a receiver of the test's own on loopback, runs
the referral and subscriptions services with a partner, and reads what was exported: the
real exporter, the real protocol, no in-memory shortcut.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.sdk.metrics import MeterProvider

from shared.config import Settings
from shared.metrics import setup_metrics
from tests.referral_world import BUP
from tests.subscription_world import SubscriptionWorld, subscription
from tests.support import wait_for

ROOT = Path(__file__).resolve().parent.parent

Points = dict[str, list[tuple[dict[str, Any], float]]]
"""Metric name → (attributes, value) of each data point (a histogram's value: its count)."""


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP metrics endpoint that keeps every export it is sent."""

    def __init__(self) -> None:
        self.exports: list[bytes] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def points(self) -> Points:
        found: Points = {}
        for body in self.exports:
            request = ExportMetricsServiceRequest()
            request.ParseFromString(body)
            for resource in request.resource_metrics:
                for scope in resource.scope_metrics:
                    for metric in scope.metrics:
                        kind = metric.WhichOneof("data")
                        for point in getattr(metric, kind).data_points:
                            attributes = {a.key: _value(a.value) for a in point.attributes}
                            value = (
                                float(point.count)
                                if kind == "histogram"
                                else float(getattr(point, point.WhichOneof("value")))
                            )
                            found.setdefault(metric.name, []).append((attributes, value))
        return found


def _value(any_value: Any) -> Any:
    return getattr(any_value, any_value.WhichOneof("value"))


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        if self.path == "/v1/metrics":
            self.server.exports.append(self.rfile.read(length))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def exported() -> Iterator[tuple[MeterProvider, Receiver]]:
    """The process's metrics provider, exporting to a receiver on loopback. A process has
    one provider: this module installs it and shuts it down after its tests."""
    receiver = Receiver()
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
        provider = setup_metrics(Settings(), "barnebro-test")
        assert provider is not None
        try:
            yield provider, receiver
        finally:
            provider.shutdown()
            receiver.shutdown()


def sum_of(points: Points, name: str, **attributes: Any) -> float:
    """The latest value of each matching series, added up (the export is cumulative)."""
    latest: dict[tuple[tuple[str, Any], ...], float] = {}
    for found, value in points.get(name, []):
        if all(found.get(key) == wanted for key, wanted in attributes.items()):
            latest[tuple(sorted(found.items()))] = value
    return sum(latest.values())


@pytest.mark.services
@pytest.mark.parametrize("backend", ["postgresql"])
async def test_every_documented_metric_is_exported(
    exported: tuple[MeterProvider, Receiver], subscriptions: SubscriptionWorld
) -> None:
    provider, receiver = exported
    world = subscriptions.referrals
    partner = await subscriptions.partner()
    body = subscription("referral-status", endpoint=partner.url, filters=(f"performer={BUP}",))
    await subscriptions.active(body, BUP)
    partner.answer = 503
    referral = await world.submit(await world.child())

    async def refused() -> bool:
        return partner.refused >= 1

    await wait_for(refused)
    partner.answer = 200
    await partner.wait_for_numbers(1)
    assert (await world.fhir("GET", f"ServiceRequest/{referral.id}", by=BUP)).status == 200
    assert (await world.fhir("GET", "ServiceRequest/no-such-referral", by=BUP)).status == 404
    await subscriptions.restart()  # counts the subscriptions by status as it starts

    async def counted() -> bool:
        await asyncio.to_thread(provider.force_flush)
        return sum_of(receiver.points(), "barnebro.subscriptions", status="active") == 1

    await wait_for(counted)
    points = receiver.points()

    http = "http.server.request.duration"
    assert sum_of(points, http, **{"http.response.status_code": 200}) >= 1
    assert sum_of(points, http, **{"http.response.status_code": 404}) >= 1
    assert sum_of(points, http, **{"http.route": "/fhir/{type}/{id}"}) >= 2, points[http]
    fhir = "barnebro.fhir.request.duration"
    read = {"fhir.interaction": "read", "fhir.resource_type": "ServiceRequest"}
    assert sum_of(points, fhir, **read, **{"http.response.status_code": 404}) >= 1
    assert sum_of(points, fhir, **{"barnebro.service": "referral"}) >= 2
    assert sum_of(points, "barnebro.nats.request.duration", outcome="ok") >= 2
    assert sum_of(points, "barnebro.outbox.published") >= 1
    assert sum_of(points, "barnebro.outbox.publish.lag") >= 1
    assert "barnebro.outbox.backlog" in points
    consumers = {a.get("barnebro.consumer") for a, _ in points["barnebro.consumer.pending"]}
    assert "consent-relation-watch" in consumers, consumers
    assert sum_of(points, "barnebro.audit.publish.duration", outcome="stored") >= 1
    notified = "barnebro.subscription.notifications"
    assert sum_of(points, notified, channel="rest-hook") >= 1
    assert sum_of(points, "barnebro.subscription.failures", channel="rest-hook") >= 1
    assert sum_of(points, "barnebro.subscriptions", status="error") == 0


@pytest.mark.unit
def test_the_deploy_guide_lists_every_metric() -> None:
    source = (ROOT / "shared" / "metrics.py").read_text()
    declared = set(re.findall(r'meter\.create_\w+\(\s*"([^"]+)"', source))
    guide = (ROOT / "deploy" / "README.md").read_text()
    listed = set(re.findall(r"^\| `([a-z_.]+)`", guide, re.MULTILINE))
    assert len(declared) == 14
    assert declared <= listed, declared - listed
