"""Settings of the decision service, read from TRUSTFIRST_DECISION_* variables."""

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

_DAY_SECONDS = 86_400


class DecisionSettings(ServiceSettings):
    """Dependencies, deadlines, model and catalog of the decision service."""

    model_config = SettingsConfigDict(env_prefix="TRUSTFIRST_DECISION_", extra="ignore")

    port: int = Field(default=50053, ge=0, le=65535)
    """TCP port of the gRPC server; 0 picks a free port and logs it."""

    identity_target: str = "127.0.0.1:50051"
    """gRPC target of the identity service (``host:port`` or ``dns:///host:port``)."""

    consent_target: str = "127.0.0.1:50052"
    """gRPC target of the consent service (``host:port`` or ``dns:///host:port``)."""

    identity_deadline_ms: int = Field(default=100, ge=1, le=60_000)
    """Deadline of one identity Lookup, retries included, in milliseconds."""

    consent_deadline_ms: int = Field(default=100, ge=1, le=60_000)
    """Deadline of one CheckConsent, retries included, in milliseconds. A Decide whose
    check misses it returns silence with reason CONSENT_UNAVAILABLE."""

    features_deadline_ms: int = Field(default=50, ge=1, le=60_000)
    """Deadline of the feature read from Redis, in milliseconds. A Decide whose read
    misses it returns silence with reason FEATURES_UNAVAILABLE."""

    record_deadline_ms: int = Field(default=200, ge=1, le=60_000)
    """Deadline of the decision record write to Redis, in milliseconds, capped at what
    remains of the call's deadline. A Decide whose write misses it gets its response
    without the record, as when Redis is down."""

    model_path: Path = Path("models/decision")
    """Model registry folder whose CURRENT file names the bundle version to serve, or one
    bundle folder. With a registry, a newly promoted version is loaded and swapped in
    while serving."""

    catalog_path: Path | None = None
    """Action catalog TOML file for a bundle that carries no catalog.toml; unset means
    the catalog packaged with the service. A bundle's own catalog always wins."""

    reload_interval_seconds: float = Field(default=5.0, ge=0.0, le=3600.0)
    """How often the registry's CURRENT file is checked for a newly promoted bundle, in
    seconds; 0 turns hot reload off."""

    attribution_window_days: int = Field(default=90, ge=1, le=365)
    """An outcome is attributed to the profile's decisions made up to this many days
    before it."""

    decision_record_ttl_seconds: int = Field(default=120 * _DAY_SECONDS, ge=1)
    """How long a decision record, and the profile's outcome log, stay in Redis, in
    seconds. It must cover the attribution window, so that a decision outlives it."""

    event_id_ttl_seconds: int = Field(default=30 * _DAY_SECONDS, ge=1)
    """How long a RecordOutcome event id is remembered, in seconds; a retry within it is
    applied once."""

    @model_validator(mode="after")
    def _records_outlive_window(self) -> "DecisionSettings":
        window_seconds = self.attribution_window_days * _DAY_SECONDS
        if self.decision_record_ttl_seconds < window_seconds:
            raise ValueError(
                f"decision_record_ttl_seconds ({self.decision_record_ttl_seconds}) is "
                f"shorter than the attribution window ({window_seconds} s); records "
                "would expire before their outcomes are attributed"
            )
        return self
