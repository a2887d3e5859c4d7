"""Configuration of every barnebro process, read from environment variables.

One settings class serves the gateway and all services so that an operator has a single
list of variables to learn (see the README's configuration table). `barnebro up` fills the
same variables for its child processes, so the embedded stack and production read
configuration the same way.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_MAX_BODY_BYTES = 900_000


class Settings(BaseSettings):
    """All configuration, with the environment variable that sets each field."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    data_dir: Path = Field(
        Path("barnebro-data"), validation_alias=AliasChoices("BARNEBRO_DATA_DIR")
    )
    nats_url: str = Field("nats://127.0.0.1:4222", validation_alias=AliasChoices("NATS_URL"))
    database_url: str = Field("", validation_alias=AliasChoices("DATABASE_URL"))
    db_schema_prefix: str = Field(
        "barnebro", validation_alias=AliasChoices("BARNEBRO_DB_SCHEMA_PREFIX")
    )
    db_pool_size: int = Field(10, ge=1, validation_alias=AliasChoices("BARNEBRO_DB_POOL_SIZE"))
    nats_prefix: str = Field("barnebro", validation_alias=AliasChoices("BARNEBRO_NATS_PREFIX"))
    event_replicas: int = Field(
        1, ge=1, le=5, validation_alias=AliasChoices("BARNEBRO_EVENT_REPLICAS")
    )
    http_host: str = Field("127.0.0.1", validation_alias=AliasChoices("BARNEBRO_HTTP_HOST"))
    http_port: int = Field(8080, validation_alias=AliasChoices("BARNEBRO_HTTP_PORT"))
    public_base_url: str = Field("", validation_alias=AliasChoices("BARNEBRO_PUBLIC_BASE_URL"))
    request_timeout: float = Field(
        10.0, gt=0, validation_alias=AliasChoices("BARNEBRO_REQUEST_TIMEOUT")
    )
    max_body_bytes: int = Field(
        DEFAULT_MAX_BODY_BYTES, gt=0, validation_alias=AliasChoices("BARNEBRO_MAX_BODY_BYTES")
    )
    jwks_url: str = Field("", validation_alias=AliasChoices("BARNEBRO_JWKS_URL"))
    jwks_file: str = Field("", validation_alias=AliasChoices("BARNEBRO_JWKS_FILE"))
    jwt_issuer: str = Field("barnebro-local", validation_alias=AliasChoices("BARNEBRO_JWT_ISSUER"))
    jwt_audience: str = Field("barnebro", validation_alias=AliasChoices("BARNEBRO_JWT_AUDIENCE"))
    operator_jwks_file: str = Field(
        "", validation_alias=AliasChoices("BARNEBRO_OPERATOR_JWKS_FILE")
    )
    operator_issuer: str = Field(
        "barnebro-operator", validation_alias=AliasChoices("BARNEBRO_OPERATOR_ISSUER")
    )
    dpop: Literal["bound", "required"] = Field(
        "bound", validation_alias=AliasChoices("BARNEBRO_DPOP")
    )
    """`bound`: a token bound to a key (`cnf.jkt`) must come with a DPoP proof, one bound to
    none may be a bearer token; `required`: integration tokens must all be DPoP-bound
    (operator credentials follow `bound`). See the README's DPoP section."""
    dpop_max_age: float = Field(
        60.0, gt=0, le=3600, validation_alias=AliasChoices("BARNEBRO_DPOP_MAX_AGE_SECONDS")
    )
    dpop_clock_skew: float = Field(
        5.0, ge=0, le=300, validation_alias=AliasChoices("BARNEBRO_DPOP_CLOCK_SKEW_SECONDS")
    )
    max_bundle_entries: int = Field(
        500, gt=0, validation_alias=AliasChoices("BARNEBRO_MAX_BUNDLE_ENTRIES")
    )
    max_answer_bytes: int = Field(
        8_000_000, gt=0, validation_alias=AliasChoices("BARNEBRO_MAX_ANSWER_BYTES")
    )
    orgnr_check_digit: bool = Field(
        True, validation_alias=AliasChoices("BARNEBRO_ORGNR_CHECK_DIGIT")
    )
    outbox_poll_interval: float = Field(
        1.0, gt=0, validation_alias=AliasChoices("BARNEBRO_OUTBOX_POLL_INTERVAL")
    )
    outbox_max_backoff: float = Field(
        10.0, gt=0, validation_alias=AliasChoices("BARNEBRO_OUTBOX_MAX_BACKOFF")
    )
    outbox_retention_hours: float = Field(
        168.0, gt=0, validation_alias=AliasChoices("BARNEBRO_OUTBOX_RETENTION_HOURS")
    )
    table_upkeep_interval: float = Field(
        15.0, gt=0, validation_alias=AliasChoices("BARNEBRO_TABLE_UPKEEP_SECONDS")
    )
    """Seconds between checks of whether a table needs ANALYZE or VACUUM (only while the
    PostgreSQL server's autovacuum is off; `shared.store.upkeep`)."""
    consent_sweep_interval: float = Field(
        3600.0, gt=0, validation_alias=AliasChoices("BARNEBRO_CONSENT_SWEEP_SECONDS")
    )
    consent_warning_days: int = Field(
        30, ge=0, le=366, validation_alias=AliasChoices("BARNEBRO_CONSENT_WARNING_DAYS")
    )
    """How many days ahead the consent service warns that a consent's authority ends."""
    referral_deadline_interval: float = Field(
        900.0, gt=0, validation_alias=AliasChoices("BARNEBRO_REFERRAL_DEADLINE_SECONDS")
    )
    referral_no_show_closure: int = Field(
        3, ge=3, le=10, validation_alias=AliasChoices("BARNEBRO_REFERRAL_NO_SHOW_CLOSURE")
    )
    """The fewest recorded no-shows before a referral is closed after no-shows: 3 as the
    services' rules have it (DOMAIN §5), up to 10 for a service that waits longer."""
    careplan_revision_interval: float = Field(
        3600.0, gt=0, validation_alias=AliasChoices("BARNEBRO_CAREPLAN_REVISION_SECONDS")
    )
    subscription_retry_hours: float = Field(
        24.0, gt=0, validation_alias=AliasChoices("BARNEBRO_SUBSCRIPTION_RETRY_HOURS")
    )
    subscription_retry_first_seconds: float = Field(
        1.0, gt=0, validation_alias=AliasChoices("BARNEBRO_SUBSCRIPTION_RETRY_FIRST_SECONDS")
    )
    subscription_retry_max_seconds: float = Field(
        600.0, gt=0, validation_alias=AliasChoices("BARNEBRO_SUBSCRIPTION_RETRY_MAX_SECONDS")
    )
    subscription_poll_seconds: float = Field(
        1.0, gt=0, validation_alias=AliasChoices("BARNEBRO_SUBSCRIPTION_POLL_SECONDS")
    )
    subscription_lease_seconds: float = Field(
        3.0, gt=0, validation_alias=AliasChoices("BARNEBRO_SUBSCRIPTION_LEASE_SECONDS")
    )
    subscription_linger_seconds: float = Field(
        0.01, ge=0, le=1, validation_alias=AliasChoices("BARNEBRO_SUBSCRIPTION_LINGER_SECONDS")
    )
    """How long a delivery waits for more events before it reads its first batch: the
    events of those milliseconds go in one notification, numbered, audited and sent once."""
    subscription_hold_seconds: float = Field(
        0.25, ge=0, validation_alias=AliasChoices("BARNEBRO_SUBSCRIPTION_HOLD_SECONDS")
    )
    """How long a delivery with nothing left to send keeps the subscription for the next
    events (at most the poll interval), instead of giving it back and claiming it again; in
    the instance that leads the fan-out, which hears of new events at once."""
    subscription_allow_http: bool = Field(
        False, validation_alias=AliasChoices("BARNEBRO_SUBSCRIPTION_ALLOW_HTTP")
    )
    subscription_allowed_hosts: str = Field(
        "", validation_alias=AliasChoices("BARNEBRO_SUBSCRIPTION_ALLOWED_HOSTS")
    )
    """Comma-separated host names, addresses or CIDR networks a rest-hook may name though
    they are not public (`shared.transport.egress`)."""
    partner_retention_hours: float = Field(
        168.0, gt=0, validation_alias=AliasChoices("BARNEBRO_PARTNER_RETENTION_HOURS")
    )
    test_clock: bool = Field(False, validation_alias=AliasChoices("BARNEBRO_TEST_CLOCK"))
    """Follow the stack's test clock (`shared.stack_clock`); set only by `barnebro up
    --clock` and the tests, never in production."""
    log_level: str = Field("INFO", validation_alias=AliasChoices("BARNEBRO_LOG_LEVEL"))
    log_format: str = Field("json", validation_alias=AliasChoices("BARNEBRO_LOG_FORMAT"))
    otlp_endpoint: str = Field("", validation_alias=AliasChoices("OTEL_EXPORTER_OTLP_ENDPOINT"))

    def database_url_for(self, service: str) -> str:
        """The database of one service: its own SQLite file unless DATABASE_URL is set."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / f'{service}.sqlite3').resolve()}"

    def db_schema_for(self, service: str) -> str:
        """The PostgreSQL schema that holds one service's tables."""
        return f"{self.db_schema_prefix}_{service}".lower()

    @property
    def stream_name(self) -> str:
        """The JetStream stream of domain events (stream names allow no dots)."""
        return re.sub(r"[^A-Za-z0-9_-]", "_", self.nats_prefix).upper() + "_EVENTS"

    @property
    def registry_bucket(self) -> str:
        """The JetStream key-value bucket where services register their capabilities."""
        return re.sub(r"[^A-Za-z0-9_-]", "_", self.nats_prefix) + "_registry"

    @property
    def audit_stream_name(self) -> str:
        """The JetStream stream of audit records (disclosures of patient information)."""
        return re.sub(r"[^A-Za-z0-9_-]", "_", self.nats_prefix).upper() + "_AUDIT"

    @property
    def dead_letter_stream_name(self) -> str:
        """The JetStream stream of messages a consumer could not handle."""
        return re.sub(r"[^A-Za-z0-9_-]", "_", self.nats_prefix).upper() + "_DEAD"

    @property
    def partner_stream_name(self) -> str:
        """The JetStream stream of notifications to partners on the `nats` channel."""
        return re.sub(r"[^A-Za-z0-9_-]", "_", self.nats_prefix).upper() + "_PARTNER"

    @property
    def consent_view_bucket(self) -> str:
        """The key-value bucket of per-patient access state that every service mirrors."""
        return re.sub(r"[^A-Za-z0-9_-]", "_", self.nats_prefix) + "_consent_view"

    @property
    def dpop_replay_bucket(self) -> str:
        """The key-value bucket of DPoP proofs already used, shared by gateway instances."""
        return re.sub(r"[^A-Za-z0-9_-]", "_", self.nats_prefix) + "_dpop_jti"

    @property
    def base_url(self) -> str:
        """The FHIR base URL written into Location headers and Bundle links."""
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        return f"http://{self.http_host}:{self.http_port}/fhir"


ENVIRONMENT_VARIABLES: tuple[str, ...] = tuple(
    str(alias)
    for field in Settings.model_fields.values()
    if isinstance(field.validation_alias, AliasChoices)
    for alias in field.validation_alias.choices
)
"""Every variable the settings read; the deploy files are checked against this list."""
