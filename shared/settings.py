"""Settings shared by every service, read from environment variables."""

import sys
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from shared.authz import DEFAULT_METHOD_ROLES, DEFAULT_ROLE_MEMBERS


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
    """Calls handled at once; the server returns RESOURCE_EXHAUSTED beyond it."""

    log_level: str = "INFO"
    """Level of the service's logs (DEBUG, INFO, WARNING, ERROR)."""

    log_format: str = Field(default="json", pattern="^(json|text)$")
    """json writes one JSON object per line; text is for reading in a terminal."""

    health_port: int | None = Field(default=None, ge=0, le=65535)
    """Plaintext TCP port that serves only grpc.health.v1, for probes that cannot present
    a client certificate (the kubelet's gRPC probes); unset serves no such port."""

    tls_cert_file: Path | None = None
    """PEM certificate chain the service presents, as a server and as a client of the
    other services. Setting it turns mutual TLS on; then tls_ca_file and tls_key_file (or
    tls_key) are required, and plaintext callers are rejected."""

    tls_key_file: Path | None = None
    """PEM private key of tls_cert_file, for keys mounted from a secret volume."""

    tls_key: SecretStr | None = None
    """The PEM private key itself, for keys passed in the environment; set this or
    tls_key_file, not both."""

    tls_ca_file: Path | None = None
    """PEM bundle of the certificate authorities that sign the peers' certificates: the
    server accepts only client certificates they signed, and clients check servers."""

    authorization: Literal["auto", "enforce", "off"] = "auto"
    """Per-method caller authorisation: auto applies it when TLS is on, enforce applies it
    also without TLS (restricted methods then reject every caller as UNAUTHENTICATED),
    off never applies it."""

    authz_roles: dict[str, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_ROLE_MEMBERS.items()}
    )
    """Caller identities of each role, as JSON: role name to the certificate common names
    or subject alternative names (DNS, URI, email) that have it."""

    authz_methods: dict[str, list[str]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_METHOD_ROLES.items()}
    )
    """Roles allowed to call each restricted method, as JSON: a method name (CheckConsent)
    or full name (/trustfirst.consent.v1.ConsentService/CheckConsent) to role names.
    Methods not listed are open to every caller that passed the TLS handshake."""


SettingsType = TypeVar("SettingsType", bound=BaseSettings)

SETTINGS_ERROR_EXIT_CODE = 2
"""Exit code of a service process whose settings are invalid."""


def load_settings(settings_class: type[SettingsType]) -> SettingsType:
    """Return settings_class read from the environment, or exit with code 2.

    An invalid value ends the process with one line on stderr that names each invalid
    variable, instead of a traceback. Logging is not configured yet at this point,
    because its level and format are settings too.
    """
    try:
        return settings_class()
    except ValidationError as error:
        prefix = str(settings_class.model_config.get("env_prefix", ""))
        problems = "; ".join(
            f"{_variable(prefix, item['loc'])}: {item['msg']}"
            for item in error.errors()
        )
        message = problems
    except SettingsError as error:
        message = str(error)
    print(f"invalid settings, the service does not start: {message}", file=sys.stderr)
    raise SystemExit(SETTINGS_ERROR_EXIT_CODE)


def _variable(prefix: str, location: tuple[int | str, ...]) -> str:
    """Return the environment variable of a field location such as ('port',)."""
    if not location:
        return prefix.rstrip("_") or "settings"
    name = str(location[0])
    if name.isupper():
        # A validation alias such as REDIS_URL is the variable itself.
        return name
    return f"{prefix}{name}".upper()
