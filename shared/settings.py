"""Settings shared by every service, read from environment variables."""

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Network, Redis and lifecycle settings common to all three services.

    Each service subclasses this with its own environment prefix, for example
    ``TRUSTFIRST_IDENTITY_PORT``.
    """

    model_config = SettingsConfigDict(extra="ignore")

    host: str = "127.0.0.1"
    """Address the gRPC server binds to. Use 0.0.0.0 in a container."""

    port: int = Field(default=50051, ge=0, le=65535)
    """TCP port of the gRPC server; 0 picks a free port and logs it."""

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0", validation_alias="REDIS_URL"
    )
    """Redis server URL (redis:// or rediss://). Read from REDIS_URL, shared by services."""

    redis_timeout_seconds: float = Field(default=1.0, gt=0)
    """Socket connect and read timeout of every Redis call, in seconds."""

    grace_seconds: float = Field(default=5.0, ge=0)
    """On SIGTERM, how long in-flight calls may finish after health turns NOT_SERVING."""

    max_message_bytes: int = Field(default=1 << 20, ge=1024)
    """Largest request or response message accepted, in bytes."""

    max_concurrent_rpcs: int = Field(default=1000, ge=1)
    """Calls handled at once; the server answers RESOURCE_EXHAUSTED beyond it."""

    log_level: str = "INFO"
    """Level of the service's logs (DEBUG, INFO, WARNING, ERROR)."""

    log_format: str = Field(default="json", pattern="^(json|text)$")
    """json writes one JSON object per line; text is for reading in a terminal."""
