"""Settings of the consent service, read from TRUSTFIRST_CONSENT_* environment variables."""

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from services.identity import keys as identity_keys
from shared.settings import ServiceSettings

MIN_SUBJECT_HASH_KEY_BYTES = 32
"""Shortest accepted subject_hash_key: the output size of SHA-256."""


class ConsentSettings(ServiceSettings):
    """Consent service settings. The Redis URL comes from the shared REDIS_URL variable."""

    model_config = SettingsConfigDict(env_prefix="TRUSTFIRST_CONSENT_", extra="ignore")

    port: int = Field(default=50052, ge=0, le=65535)
    """TCP port of the gRPC server; 0 picks a free port and logs it."""

    jurisdictions_file: Path | None = None
    """TOML file of jurisdictions and their never-asked defaults; unset uses the file
    shipped in services/consent/jurisdictions.toml."""

    default_jurisdiction: str = "EU"
    """Jurisdiction code applied to subjects with none recorded; must be in the file.
    The shipped default, EU, refuses every never-asked pair."""

    durability: Literal["require", "warn"] = "require"
    """Policy when Redis would lose acknowledged writes in a crash (no AOF with
    appendfsync always and no replica to WAIT on): require rejects consent writes with
    UNAVAILABLE, warn logs an error at startup and accepts them."""

    durability_wait_replicas: int = Field(default=0, ge=0)
    """Replicas that must confirm every write (WAIT) before it is acknowledged. 0 waits
    for one replica only when appendfsync is not always and a replica is connected."""

    durability_wait_timeout_ms: int = Field(default=500, ge=1)
    """How long a write waits for replicas, in milliseconds, before it fails."""

    durability_recheck_seconds: float = Field(default=10.0, gt=0)
    """Interval in seconds after which a write reads the Redis AOF settings and
    replicas again."""

    subject_hash_key: SecretStr | None = None
    """Secret key (at least 32 bytes in UTF-8) of the HMAC-SHA256 that names erasure
    records. Unset uses a plain SHA-256 and logs a warning. Changing it hides the
    erasure records made before."""

    identity_events: bool = True
    """Consume identity's merge, split and erase events in a background task."""

    identity_events_stream: str = identity_keys.EVENTS_STREAM
    """Redis Stream that identity publishes its events on."""

    identity_events_consumer: str = ""
    """Consumer name in the ``consent`` group; empty uses host name and process id."""

    identity_events_batch: int = Field(default=100, ge=1, le=10_000)
    """Stream entries read per XREADGROUP or XAUTOCLAIM."""

    identity_events_block_ms: int = Field(default=1000, ge=1, le=60_000)
    """How long one XREADGROUP waits for new events, in milliseconds."""

    identity_events_claim_idle_ms: int = Field(default=60_000, ge=1000)
    """Idle time in milliseconds after which another consumer's pending event is
    claimed (XAUTOCLAIM); longer than any event takes to apply."""

    @field_validator("subject_hash_key")
    @classmethod
    def _check_key_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            length = len(value.get_secret_value().encode("utf-8"))
            if length < MIN_SUBJECT_HASH_KEY_BYTES:
                raise ValueError(
                    f"subject_hash_key has {length} bytes; use at least "
                    f"{MIN_SUBJECT_HASH_KEY_BYTES}"
                )
        return value
