"""Keyed hashing of identifiers: values are stored only as HMAC-SHA256 digests."""

import hashlib
import hmac
from pathlib import Path

from services.identity.models import HashedIdentifier, Kind
from services.identity.settings import IdentitySettings

MIN_KEY_BYTES = 32
"""Minimum length of the HMAC key, in bytes (the SHA-256 output size)."""

KEY_ENV = "TRUSTFIRST_IDENTITY_HASH_KEY"
KEY_FILE_ENV = "TRUSTFIRST_IDENTITY_HASH_KEY_FILE"


class HashKeyError(RuntimeError):
    """The HMAC key is missing or unusable, so the service must not start."""


def load_hash_key(settings: IdentitySettings) -> bytes:
    """Return the HMAC key from ``hash_key`` or ``hash_key_file``, or raise HashKeyError.

    The error messages name the settings and the length, never the key.
    """
    if settings.hash_key is not None and settings.hash_key_file is not None:
        raise HashKeyError(f"set only one of {KEY_ENV} and {KEY_FILE_ENV}, not both")

    if settings.hash_key is not None:
        key = settings.hash_key.get_secret_value().encode()
        origin = KEY_ENV
    elif settings.hash_key_file is not None:
        key = _read_key_file(settings.hash_key_file)
        origin = f"the file named by {KEY_FILE_ENV}"
    else:
        raise HashKeyError(
            f"no identifier hash key: set {KEY_ENV} to a secret of at least "
            f"{MIN_KEY_BYTES} bytes, or {KEY_FILE_ENV} to a file that contains one"
        )

    if len(key) < MIN_KEY_BYTES:
        raise HashKeyError(
            f"the identifier hash key from {origin} is {len(key)} bytes; "
            f"it must be at least {MIN_KEY_BYTES}"
        )
    return key


def _read_key_file(path: Path) -> bytes:
    try:
        content = path.read_bytes()
    except OSError as error:
        raise HashKeyError(
            f"cannot read the identifier hash key file {path} ({KEY_FILE_ENV}): "
            f"{error.strerror}"
        ) from None

    if content.endswith(b"\r\n"):
        return content[:-2]
    if content.endswith(b"\n"):
        return content[:-1]
    return content


class IdentifierHasher:
    """Computes the hex HMAC-SHA256 of ``<kind>:<normalised value>`` under the secret key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise HashKeyError(
                f"the identifier hash key must be at least {MIN_KEY_BYTES} bytes"
            )
        self._key = key

    def __repr__(self) -> str:
        return "IdentifierHasher(key=<hidden>)"

    def hash(self, kind: Kind, normalised_value: str) -> HashedIdentifier:
        """Return the stored form of a normalised identifier value."""
        message = f"{kind}:{normalised_value}".encode()
        digest = hmac.new(self._key, message, hashlib.sha256).hexdigest()
        return HashedIdentifier(kind, digest)
