"""Mutual TLS credentials of the servers and of the channels between services.

TLS is off unless ``tls_cert_file`` is set. With it on, every service presents one
certificate, as a server and as a client, and accepts only peers whose certificate a
CA in ``tls_ca_file`` signed. Key material is read from files or the environment and is
never logged; errors name the setting and the file, not the content.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import grpc

if TYPE_CHECKING:
    from shared.settings import ServiceSettings

logger = logging.getLogger(__name__)

_PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
_PEM_PRIVATE_KEY = b"PRIVATE KEY-----"


class TlsConfigError(ValueError):
    """The TLS settings are incomplete, or a file is missing or not PEM."""


@dataclass(frozen=True, repr=False)
class TlsMaterial:
    """The PEM bytes of one service's certificate chain, private key and trusted CAs.

    ``repr`` leaves the key out, so the object is safe in a log line or a traceback.
    """

    cert_chain: bytes
    private_key: bytes
    ca_bundle: bytes

    def __repr__(self) -> str:
        return f"TlsMaterial(cert_chain={len(self.cert_chain)} bytes, private_key=***)"


def tls_enabled(settings: ServiceSettings) -> bool:
    """Return whether settings turn mutual TLS on (``tls_cert_file`` is set)."""
    return settings.tls_cert_file is not None


def load_tls(settings: ServiceSettings) -> TlsMaterial | None:
    """Read the certificate, key and CA bundle that settings name, or None when TLS is off.

    Raises TlsConfigError when a required setting is missing, both key settings are set,
    or a file is unreadable or not PEM.
    """
    if settings.tls_cert_file is None:
        if settings.tls_key_file or settings.tls_key or settings.tls_ca_file:
            raise TlsConfigError(
                "tls_key_file, tls_key or tls_ca_file is set without tls_cert_file; "
                "set tls_cert_file to turn TLS on, or unset the others"
            )
        return None

    if settings.tls_ca_file is None:
        raise TlsConfigError("tls_ca_file is required when tls_cert_file is set")
    if (settings.tls_key_file is None) == (settings.tls_key is None):
        raise TlsConfigError(
            "set exactly one of tls_key_file and tls_key when tls_cert_file is set"
        )

    cert_chain = _read_pem(settings.tls_cert_file, "tls_cert_file", _PEM_CERTIFICATE)
    ca_bundle = _read_pem(settings.tls_ca_file, "tls_ca_file", _PEM_CERTIFICATE)
    if settings.tls_key is not None:
        private_key = settings.tls_key.get_secret_value().encode()
        if _PEM_PRIVATE_KEY not in private_key:
            raise TlsConfigError("tls_key is not a PEM private key")
    else:
        assert settings.tls_key_file is not None
        private_key = _read_pem(settings.tls_key_file, "tls_key_file", _PEM_PRIVATE_KEY)
    return TlsMaterial(cert_chain, private_key, ca_bundle)


def server_credentials(settings: ServiceSettings) -> grpc.ServerCredentials | None:
    """Return credentials that require a client certificate, or None when TLS is off."""
    # NOTE: the files are read once, at start. A renewed certificate takes effect when
    # the service restarts.
    material = load_tls(settings)
    if material is None:
        return None
    return grpc.ssl_server_credentials(
        [(material.private_key, material.cert_chain)],
        root_certificates=material.ca_bundle,
        require_client_auth=True,
    )


def channel_credentials(settings: ServiceSettings) -> grpc.ChannelCredentials | None:
    """Return credentials that present the service's certificate and check the server's
    against the CA bundle, or None when TLS is off."""
    material = load_tls(settings)
    if material is None:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=material.ca_bundle,
        private_key=material.private_key,
        certificate_chain=material.cert_chain,
    )


def _read_pem(path: Path, setting: str, marker: bytes) -> bytes:
    try:
        content = path.read_bytes()
    except OSError as error:
        raise TlsConfigError(
            f"{setting} {path} cannot be read: {error.strerror}"
        ) from None
    if marker not in content:
        raise TlsConfigError(f"{setting} {path} is not a PEM file of the expected kind")
    return content
