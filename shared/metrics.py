"""The metrics every process records, in one place, with their names.

They are OpenTelemetry instruments, exported over OTLP/HTTP every
`OTEL_METRIC_EXPORT_INTERVAL` milliseconds (60 s by default) when
`OTEL_EXPORTER_OTLP_ENDPOINT` is set. Without an endpoint no provider is installed and
the instruments are the API's no-ops: recording costs next to nothing and nothing is
kept. The instruments are created here, before any provider exists, through the API's
global meter, which hands them to the provider once `setup_metrics` installs one.

Attributes are bounded sets (interaction, resource type, status code, service, consumer,
outcome): never an id, a patient or an organisation, so that a metric cannot identify a
child and its cardinality stays small. The deploy guide lists every metric.
"""

from __future__ import annotations

from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource

from shared.config import Settings

meter = metrics.get_meter("barnebro")

http_request_duration = meter.create_histogram(
    "http.server.request.duration",
    unit="s",
    description="Gateway: HTTP requests by method, route and status code, and how long each took",
)
fhir_request_duration = meter.create_histogram(
    "barnebro.fhir.request.duration",
    unit="s",
    description="Service: FHIR interactions by service, interaction, resource type and status code",
)
nats_request_duration = meter.create_histogram(
    "barnebro.nats.request.duration",
    unit="s",
    description="A request to a service over NATS, by outcome (ok, no-responders, timeout,"
    " unavailable), from sending it to its answer",
)
outbox_published = meter.create_counter(
    "barnebro.outbox.published",
    unit="{event}",
    description="Events the outbox relay published to JetStream",
)
outbox_publish_lag = meter.create_histogram(
    "barnebro.outbox.publish.lag",
    unit="s",
    description="From the commit that recorded an event to its publication",
)
outbox_backlog = meter.create_gauge(
    "barnebro.outbox.backlog",
    unit="{event}",
    description="Events committed and not yet published, as the relay last found them",
)
consumer_pending = meter.create_gauge(
    "barnebro.consumer.pending",
    unit="{message}",
    description="Messages of a durable consumer not yet delivered, as of its last message",
)
consumer_redeliveries = meter.create_counter(
    "barnebro.consumer.redeliveries",
    unit="{message}",
    description="Messages a durable consumer received again after a failure or a timeout",
)
consumer_failures = meter.create_counter(
    "barnebro.consumer.failures",
    unit="{message}",
    description="Messages a durable consumer could not handle (each is retried later)",
)
dead_letters = meter.create_counter(
    "barnebro.consumer.dead_letters",
    unit="{message}",
    description="Messages set aside in the dead-letter stream after their last retry",
)
subscription_notifications = meter.create_counter(
    "barnebro.subscription.notifications",
    unit="{event}",
    description="Events delivered to partners, by channel",
)
subscription_failures = meter.create_counter(
    "barnebro.subscription.failures",
    unit="{attempt}",
    description="Notification attempts that failed (each is retried), by channel",
)
subscriptions = meter.create_gauge(
    "barnebro.subscriptions",
    unit="{subscription}",
    description="Subscriptions by status (requested, active, error, off)",
)
audit_publish_duration = meter.create_histogram(
    "barnebro.audit.publish.duration",
    unit="s",
    description="Publishing a batch of audit records until the audit stream has stored it"
    " (the releases the batch records wait for this), by outcome (stored, failed)",
)


def exporting() -> bool:
    """Whether metrics are exported (a provider is installed): a metric that costs I/O to
    measure is measured only then."""
    return isinstance(metrics.get_meter_provider(), MeterProvider)


def setup_metrics(settings: Settings, service_name: str) -> MeterProvider | None:
    """Install a provider that exports over OTLP when an endpoint is configured."""
    if not settings.otlp_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    provider = MeterProvider(
        resource=Resource.create({"service.name": service_name}),
        metric_readers=[PeriodicExportingMetricReader(OTLPMetricExporter())],
    )
    metrics.set_meter_provider(provider)
    return provider
