"""Settings of the consent service, read from TRUSTFIRST_CONSENT_* environment variables."""

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


class ConsentSettings(ServiceSettings):
    """Consent service settings. The Redis URL comes from the shared REDIS_URL variable."""

    model_config = SettingsConfigDict(env_prefix="TRUSTFIRST_CONSENT_", extra="ignore")

    port: int = Field(default=50052, ge=0, le=65535)
    """TCP port of the gRPC server; 0 picks a free port and logs it."""
