"""Settings of the identity service, read from ``TRUSTFIRST_IDENTITY_*`` environment variables."""

from pathlib import Path

import phonenumbers
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from services.identity.rules import RuleSettings
from shared.settings import ServiceSettings


class IdentitySettings(ServiceSettings, RuleSettings):
    """Identity service settings; ``REDIS_URL`` and the network settings come from the base.

    The linking rules (``max_values_per_kind`` and the others) are fields of
    ``RuleSettings``; lists and maps are read from the environment as JSON.
    """

    model_config = SettingsConfigDict(env_prefix="TRUSTFIRST_IDENTITY_", extra="ignore")

    port: int = Field(default=50051, ge=0, le=65535)
    """TCP port of the gRPC server; 0 picks a free port and logs it."""

    hash_key: SecretStr | None = None
    """Secret key of the HMAC-SHA256 over identifier values, at least 32 bytes in UTF-8.
    Set this or ``hash_key_file``, not both. Changing it orphans every stored identifier."""

    hash_key_file: Path | None = None
    """File that contains the HMAC key (at least 32 bytes; one trailing line break is
    ignored), for keys mounted as a secret volume. Set this or ``hash_key``, not both."""

    phone_default_region: str = ""
    """ISO 3166-1 alpha-2 region (for example GB or US) of phone numbers written without a
    + and country code. Empty: such numbers are rejected."""

    events_max_length: int = Field(default=1_000_000, ge=1000)
    """Approximate maximum number of entries kept in the ``tf:identity:events`` stream, in
    entries; older entries are trimmed, read by consumers or not."""

    redis_cluster: bool = False
    """Connect with the Redis Cluster protocol even though ``REDIS_URL`` is a plain
    ``redis://`` URL of one node. A ``redis+cluster://`` URL selects the cluster protocol
    without this setting. Every identity key shares one hash tag, so the graph lives in
    one slot."""

    rules_file: Path | None = None
    """TOML file with the linking rules, keyed by the rule settings' names in lower case.
    A rule may be set in the file or in the environment, not both."""

    @field_validator("phone_default_region")
    @classmethod
    def _check_region(cls, value: str) -> str:
        region = value.strip().upper()
        if region and region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(
                f"unknown phone region {value!r}: use an ISO 3166-1 alpha-2 code such as GB"
            )
        return region
