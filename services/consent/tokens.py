"""Consistency tokens: an opaque string for a position in one subject's ledger.

A token is 15 bytes in unpadded base64url (20 characters): a format version byte (1),
the ledger sequence as an 8-byte big-endian unsigned integer, and the first 6 bytes of
the SHA-256 of the subject id. The subject bytes make a token passed with another
subject's request fail as invalid instead of comparing unrelated sequences.
"""

import base64
import binascii
import hashlib

TOKEN_VERSION = 1
_SUBJECT_TAG_BYTES = 6
_TOKEN_BYTES = 1 + 8 + _SUBJECT_TAG_BYTES
_TOKEN_CHARS = 20


class InvalidToken(ValueError):
    """A token that is malformed or was issued for another subject."""


def _subject_tag(subject_id: str) -> bytes:
    return hashlib.sha256(subject_id.encode("utf-8")).digest()[:_SUBJECT_TAG_BYTES]


def encode_token(subject_id: str, sequence: int) -> str:
    """Return the token for ledger position sequence of subject_id."""
    raw = (
        bytes([TOKEN_VERSION]) + sequence.to_bytes(8, "big") + _subject_tag(subject_id)
    )
    return base64.urlsafe_b64encode(raw).decode("ascii")


def decode_token(subject_id: str, token: str) -> int:
    """Return the ledger sequence in token; raises InvalidToken with the reason."""
    if len(token) != _TOKEN_CHARS:
        raise InvalidToken(f"must be {_TOKEN_CHARS} characters, got {len(token)}")
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
    except (UnicodeEncodeError, binascii.Error, ValueError) as error:
        raise InvalidToken("is not a consistency token from this service") from error
    # The decoder skips characters outside the alphabet, so the token must also be
    # exactly the encoding of the decoded bytes.
    canonical = base64.urlsafe_b64encode(raw).decode("ascii")
    if canonical != token or len(raw) != _TOKEN_BYTES or raw[0] != TOKEN_VERSION:
        raise InvalidToken("is not a consistency token from this service")
    if raw[9:] != _subject_tag(subject_id):
        raise InvalidToken("was issued for a different subject_id")
    return int.from_bytes(raw[1:9], "big")
