"""Settings of the decision service, read from TRUSTFIRST_DECISION_* variables."""

from pathlib import Path

from pydantic import Field
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

    model_path: Path = Path("models/decision")
    """Model artifact folder, or a folder whose CURRENT file names the version to load."""

    catalog_path: Path | None = None
    """Action catalog TOML file; unset means the catalog packaged with the service."""

    decision_record_ttl_seconds: int = Field(default=30 * _DAY_SECONDS, ge=1)
    """How long a decision record stays in Redis, in seconds."""

    event_id_ttl_seconds: int = Field(default=30 * _DAY_SECONDS, ge=1)
    """How long a RecordOutcome event id is remembered, in seconds; a retry within it is
    applied once."""
